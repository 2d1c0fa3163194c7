"""`retry-pending` asks the Hub what the import would have asked (`identify.enrich`,
`lookup_request_for`): the same weight files, under the same folder name, with the same names
the model gives itself (a bundle's config `_name_or_path`). A model imported offline and
enriched later ends where the same model imported online ends.

Real folders (the real all-MiniLM-L6-v2 as `hf download` leaves it, a diffusers SDXL pipeline
as `save_pretrained` writes it), the real CLI, the real huggingface_hub client against the
fake Hub on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_diffusers_sdxl
from fakehub import FakeHub
from test_bundles import hf_download_folder

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


def mi(lib: Path, *args: str | Path, env: dict[str, str] | None = None, codes=(0,)):
    run = run_cli("--library", lib, *args, env=env)
    assert run.code in codes, (args, run.code, run.stdout, run.stderr)
    return run


def repo_files(folder: Path, skip: tuple[str, ...] = (".cache",)) -> dict[str, bytes]:
    """Every file of a local folder as the repo it was downloaded from holds it."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] not in skip
    }


def lookup_calls(fake_hub: FakeHub) -> list[tuple[str, str]]:
    """The lookup requests the fake Hub saw, in order (not huggingface_hub's own daily fetch,
    which only the first run of a fresh HF_HOME makes)."""
    return [(endpoint, path) for endpoint, path in fake_hub.log if endpoint != "agent_harnesses"]


def meta(lib: Path, model_id: str) -> dict:
    return json.loads((lib / model_id / "metadata.json").read_text())


def import_online(
    tmp_path: Path, fake_hub: FakeHub, env: dict[str, str], source: Path, name: str
) -> tuple[dict, list[tuple[str, str]]]:
    """Import `source` online into a library of its own, with a Hub cache of its own:
    (its result, the Hub requests it made)."""
    fake_hub.reset_counts()
    lib = tmp_path / f"lib-online-{name}"
    env = {**env, "MODELIMPORT_CACHE_DIR": str(tmp_path / f"cache-online-{name}")}
    [result] = mi(lib, "import", source, "--yes", "--json", env=env).json["results"]
    return result, lookup_calls(fake_hub)


def import_offline_then_retry(
    tmp_path: Path, fake_hub: FakeHub, env: dict[str, str], source: Path, name: str
) -> tuple[dict, dict, list[tuple[str, str]]]:
    """Import `source` with --offline, then `retry-pending` against the fake Hub, with a Hub
    cache of its own: (the import's result, retry-pending's result, the Hub requests)."""
    lib = tmp_path / f"lib-offline-{name}"
    env = {**env, "MODELIMPORT_CACHE_DIR": str(tmp_path / f"cache-retry-{name}")}
    [imported] = mi(lib, "import", source, "--yes", "--json", "--offline").json["results"]
    assert imported["pending_online_lookup"] is True and imported["trust_level"] is None
    fake_hub.reset_counts()
    [retried] = mi(lib, "retry-pending", "--json", env=env).json["results"]
    return imported, retried, lookup_calls(fake_hub)


def test_a_transformers_folder_imported_offline_is_verified_by_retry_pending(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    source = hf_download_folder(tmp_path / "dl")
    # As the Hub describes it: an embedding model (what its config.json proves stays).
    fake_hub.add_repo(
        MINILM,
        repo_files(source),
        downloads=1000,
        pipeline_tag="sentence-similarity",
        tags=["sentence-transformers", "bert"],
    )

    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, source, "minilm")
    assert (online["trust_level"], online["repo_id"]) == ("verified", MINILM)

    imported, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, source, "minilm"
    )
    assert retried["status"] == "enriched"
    assert (retried["trust_level"], retried["repo_id"], retried["match_method"]) == (
        "verified", MINILM, "hash",
    )
    # The same questions, in the same order, as the import asked.
    assert retry_calls == online_calls
    lib = tmp_path / "lib-offline-minilm"
    record = meta(lib, retried["model_id"])
    assert record["pending_online_lookup"] is False and record["repo_id"] == MINILM
    # The Hub calls it an embedding; its config.json says a BERT text encoder, and that stays.
    assert (record["model_type"], record["family"]) == ("text_encoder", "bert")
    assert record["field_sources"]["model_type"] == record["field_sources"]["family"] == "config"
    assert retried["model_id"] == online["model_id"] == imported["model_id"] == (
        "text_encoder/bert/all-minilm-l6-v2"
    )
    # Answered: not asked again.
    assert mi(lib, "retry-pending", "--json", env=fake_hub_env).json["results"] == []


def test_a_transformers_folder_is_found_by_its_config_name_or_path(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    """A folder renamed by its owner (`my-embedder`) still names its repo in config.json."""
    downloaded = hf_download_folder(tmp_path / "hf")
    fake_hub.add_repo(MINILM, repo_files(downloaded), downloads=1000)
    (tmp_path / "dl").mkdir()
    source = Path(shutil.move(downloaded, tmp_path / "dl" / "my-embedder"))
    config = json.loads((source / "config.json").read_text())
    config["_name_or_path"] = MINILM  # as transformers writes it after from_pretrained(MINILM)
    (source / "config.json").write_text(json.dumps(config, indent=2))

    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, source, "mine")
    assert (online["trust_level"], online["repo_id"]) == ("verified", MINILM)
    _, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, source, "mine"
    )
    assert (retried["status"], retried["trust_level"], retried["repo_id"]) == (
        "enriched", "verified", MINILM,
    )
    assert retry_calls == online_calls


def test_a_diffusers_pipeline_imported_offline_is_verified_by_retry_pending(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    source = tmp_path / "dl" / "stable-diffusion-xl-base-1.0"
    make_diffusers_sdxl(source)
    fake_hub.add_repo(SDXL, repo_files(source), downloads=500, pipeline_tag="text-to-image")

    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, source, "sdxl")
    assert (online["trust_level"], online["repo_id"]) == ("verified", SDXL)
    _, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, source, "sdxl"
    )
    assert (retried["status"], retried["trust_level"], retried["repo_id"]) == (
        "enriched", "verified", SDXL,
    )
    assert retried["model_id"] == online["model_id"] == f"checkpoint/sdxl/{source.name}"
    assert retry_calls == online_calls


def test_a_diffusers_pipeline_is_found_by_the_name_or_path_in_model_index(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    """A pipeline saved after `from_pretrained(SDXL)` into a folder named otherwise: its
    model_index.json names the repo (`_name_or_path`), for the import and retry-pending alike."""
    source = tmp_path / "dl" / "my-renders"
    make_diffusers_sdxl(source)
    index = json.loads((source / "model_index.json").read_text())
    (source / "model_index.json").write_text(json.dumps({**index, "_name_or_path": SDXL}))
    fake_hub.add_repo(SDXL, repo_files(source), downloads=500, pipeline_tag="text-to-image")

    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, source, "renders")
    assert (online["trust_level"], online["repo_id"]) == ("verified", SDXL)
    imported, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, source, "renders"
    )
    record = meta(tmp_path / "lib-offline-renders", imported["model_id"])
    assert record["file_says"]["config"]["_name_or_path"] == SDXL
    assert (retried["status"], retried["trust_level"], retried["repo_id"]) == (
        "enriched", "verified", SDXL,
    )
    assert retry_calls == online_calls


def _without_sha256(request):
    """A request as the import makes it before the copy: the SHA256s are not known yet."""
    from dataclasses import replace

    return replace(request, files=tuple(replace(f, sha256=None) for f in request.files))


def test_the_request_rebuilt_from_a_record_is_the_one_the_import_made(tmp_path: Path) -> None:
    """For every kind of model, `lookup_request_for(record)` asks what the import asked
    (`importer.pipeline._lookup_request` of the planned model), but for the SHA256s the copy
    computed since; also after an identity source filled the family."""
    from factories import (
        make_gguf,
        make_lora_with_sidecars,
        make_sharded_safetensors,
        make_torch_zip,
    )

    from modelimport.identify.enrich import lookup_request_for
    from modelimport.importer.pipeline import (
        ImportOptions,
        _lookup_request,
        execute_plan,
        plan_import,
    )
    from modelimport.library.maintenance import open_library
    from modelimport.library.metadata import resolve_fields

    dl = tmp_path / "dl"
    make_lora_with_sidecars(dl / "loras")  # a single file with its sidecars
    make_sharded_safetensors(dl / "tiny-llama-5b", stem="tiny-llama-5b")  # a set + index
    minilm = hf_download_folder(dl)  # a transformers folder, with weights no reader knows
    (minilm / "onnx").mkdir()
    (minilm / "onnx" / "model.onnx").write_bytes(b"\x08\x07" * 512)
    make_torch_zip(minilm / "pytorch_model.bin", {"w": ("F32", [2])})
    make_diffusers_sdxl(dl / "my-renders")  # a pipeline naming its repo in model_index.json
    index = json.loads((dl / "my-renders" / "model_index.json").read_text())
    index["_name_or_path"] = SDXL
    (dl / "my-renders" / "model_index.json").write_text(json.dumps(index))
    # A GGUF folder whose projector sorts before its model: the model names the lookup.
    make_gguf(dl / "qwen-vl" / "qwen2-vl-7b-q4_k_m.gguf", arch="qwen2vl", name="Qwen2 VL 7B")
    make_gguf(dl / "qwen-vl" / "mmproj-qwen2-vl-7b-f16.gguf", arch="clip", name="projector")
    # A lone VAE whose family only its name tells (field_sources: filename).
    vae_dir = tmp_path / "pipe"
    make_diffusers_sdxl(vae_dir)
    (dl / "vaes").mkdir()
    vae = vae_dir / "vae" / "diffusion_pytorch_model.safetensors"
    shutil.copyfile(vae, dl / "vaes" / "sdxl_vae.safetensors")

    opened = open_library(tmp_path / "lib")
    options = ImportOptions(offline=True)
    plan = plan_import([dl], opened.library, opened.db, options)
    asked = {planned.key: _lookup_request(planned) for planned in plan.models}
    assert len(asked) == 6, [r.to_json() for r in plan.settled]
    results = execute_plan(plan, opened.library, opened.db, options)
    imported = [r for r in results if r.status == "imported"]
    assert len(imported) == 6
    for result in imported:
        record = opened.library.read_metadata(result.model_id)
        rebuilt = lookup_request_for(record)
        assert [f.sha256 for f in rebuilt.files] == [
            next(e["sha256"] for e in record["files"] if e["original_name"] == f.name)
            for f in rebuilt.files
        ]
        assert _without_sha256(rebuilt) == asked[result.sources[0]], result.model_id
        # CivitAI (or the Hub) filled the type and family since: still the import's question.
        for field in ("model_type", "family"):
            record["field_candidates"].setdefault(field, {})["civitai"] = "sd3"
        resolve_fields(record)
        assert _without_sha256(lookup_request_for(record)) == asked[result.sources[0]]
    by_folder = {asked[r.sources[0]].folder_name: asked[r.sources[0]] for r in imported}
    # What the import asks, for the record (the cases above would pass on any shared mistake).
    assert [f.name for f in by_folder["my-renders"].files] == [
        "text_encoder/model.safetensors", "text_encoder_2/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
    ]
    assert SDXL in by_folder["my-renders"].embedded_repos
    assert [f.name for f in by_folder["all-MiniLM-L6-v2"].files] == [
        "model.safetensors", "pytorch_model.bin"]
    assert [f.name for f in by_folder["qwen-vl"].files] == [
        "qwen2-vl-7b-q4_k_m.gguf", "mmproj-qwen2-vl-7b-f16.gguf"]
    assert [f.name for f in by_folder["loras"].files] == ["add_detail.safetensors"]
    assert len(by_folder["tiny-llama-5b"].files) == 3
    assert by_folder["vaes"].family == "sdxl"


TINY_LLAMA = "example-org/Tiny-Llama-5B"


def tiny_llama(tmp_path: Path, fake_hub: FakeHub, stem: str = "Tiny-Llama-5B") -> Path:
    """A sharded set whose tensors tell neither type nor family, and the Hub repo holding it
    (a text-generation llama)."""
    from factories import make_sharded_safetensors

    folder = tmp_path / "dl" / "Tiny-Llama-5B"
    make_sharded_safetensors(folder, total=3, stem=stem)
    fake_hub.add_repo(
        TINY_LLAMA,
        repo_files(folder),
        downloads=100,
        pipeline_tag="text-generation",
        tags=["llama", "safetensors"],
    )
    return folder


@pytest.mark.parametrize(
    ("stem", "offline_id"),
    [
        # Shards named after the model: its name says llama (field_sources: filename).
        ("Tiny-Llama-5B", "unknown/llama/tiny-llama-5b"),
        # `hf download` shard names: the folder names the model, nothing tells its family.
        ("model", "unknown/unknown/tiny-llama-5b"),
    ],
)
def test_a_set_imported_offline_is_filed_by_retry_pending_where_an_online_import_files_it(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str], stem: str, offline_id: str
) -> None:
    source = tiny_llama(tmp_path, fake_hub, stem)
    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, source, "llama")
    assert (online["model_id"], online["trust_level"]) == ("llm/llama/tiny-llama-5b", "verified")

    imported, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, source, "llama"
    )
    assert imported["model_id"] == offline_id
    assert retry_calls == online_calls
    assert (retried["status"], retried["trust_level"], retried["repo_id"]) == (
        "enriched", "verified", TINY_LLAMA,
    )
    # The Hub's verified answer filled what the tensors left open: the set moves, whole.
    assert retried["model_id"] == online["model_id"]
    lib = tmp_path / "lib-offline-llama"
    record = meta(lib, online["model_id"])
    assert record["model_id"] == online["model_id"]
    assert record["field_sources"]["model_type"] == record["field_sources"]["family"] == (
        "hub_verified"
    )
    assert sorted(p.name for p in (lib / online["model_id"]).iterdir()) == sorted(
        [*repo_files(source), "metadata.json"]
    )
    assert not (lib / "unknown").exists()
    listed = mi(lib, "list", "--json").json
    assert [m["model_id"] for m in listed["models"]] == [online["model_id"]]
    assert mi(lib, "check", "--json").json["problems"] == []


def test_retry_pending_never_moves_a_manual_set(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    source = tiny_llama(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    [imported] = mi(lib, "import", source, "--yes", "--offline", "--json").json["results"]
    model_id = imported["model_id"]
    mi(lib, "mark-manual", model_id)
    before = (lib / model_id / "metadata.json").read_bytes()
    fake_hub.reset_counts()
    run = mi(lib, "retry-pending", "--json", env=fake_hub_env)
    assert [r["status"] for r in run.json["results"]] in ([], ["manual"])
    assert (lib / model_id / "metadata.json").read_bytes() == before
    assert lookup_calls(fake_hub) == []


def test_a_gguf_folder_filed_by_retry_pending_keeps_its_quantisation_in_its_id(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    """A GGUF folder (model, projector, README) whose architecture tells no family: the Hub's
    answer files it, and its id keeps the quantisation as the import's does (a GGUF's
    precision joins its slug; the README, the record's first file, is no GGUF)."""
    from factories import make_gguf

    source = tmp_path / "dl" / "Foo-VL-7B-GGUF"
    make_gguf(source / "foo-vl-7b.gguf", arch="foovl", name="Foo VL 7B", quant="Q8_0",
              tensors={"token_embd.weight": [64, 64]})
    make_gguf(source / "mmproj-foo-vl-7b-f16.gguf", arch="clip", name="projector")
    (source / "README.md").write_text("# Foo VL 7B\n")
    fake_hub.add_repo(
        "example-org/Foo-VL-7B-GGUF",
        repo_files(source),
        downloads=10,
        pipeline_tag="image-text-to-text",
        tags=["gguf", "qwen2_vl"],
    )
    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, source, "gguf")
    assert (online["model_id"], online["trust_level"]) == ("llm/qwen/foo-vl-7b-q8_0", "verified")
    imported, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, source, "gguf"
    )
    assert imported["model_id"] == "llm/unknown/foo-vl-7b-q8_0"
    assert retry_calls == online_calls
    assert (retried["status"], retried["trust_level"]) == ("enriched", "verified")
    assert retried["model_id"] == online["model_id"]
    lib = tmp_path / "lib-offline-gguf"
    assert sorted(p.name for p in (lib / online["model_id"]).iterdir()) == sorted(
        [*repo_files(source), "metadata.json"]
    )


def test_a_hugging_face_cache_snapshot_is_looked_up_by_its_repo_folder(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    """`models--org--name/snapshots/<commit>/`: the commit hash names nothing, the repo
    folder names the repo; the import and retry-pending ask by the repo folder (here the
    config.json names no repo, so nothing else could find it)."""
    downloaded = hf_download_folder(tmp_path / "hf")
    fake_hub.add_repo(MINILM, repo_files(downloaded), downloads=1000)
    cache = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = cache / "snapshots" / "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    shutil.copytree(downloaded, snapshot, ignore=shutil.ignore_patterns(".cache"))
    config = json.loads((snapshot / "config.json").read_text())
    config.pop("_name_or_path", None)
    (snapshot / "config.json").write_text(json.dumps(config))

    online, online_calls = import_online(tmp_path, fake_hub, fake_hub_env, snapshot, "cache")
    assert (online["trust_level"], online["repo_id"]) == ("verified", MINILM)
    _, retried, retry_calls = import_offline_then_retry(
        tmp_path, fake_hub, fake_hub_env, snapshot, "cache"
    )
    assert (retried["trust_level"], retried["repo_id"]) == ("verified", MINILM)
    assert retry_calls == online_calls
