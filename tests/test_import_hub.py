"""Identification wired into `import`, end to end: the real CLI against the fake Hub.

Each of the five trust levels is produced by `import --yes --json` and checked in
metadata.json; offline imports are enriched later by `retry-pending`; manual records are
left alone by `retry-pending` and `rescan`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from cli import trust_fields
from factories import make_safetensors
from fakehub import FakeHub


def _model(folder: Path, name: str, fill: bytes = b"\x01") -> tuple[Path, bytes]:
    path = make_safetensors(folder / name, {"w": ("F16", [32, 32])}, fill=fill)
    return path, path.read_bytes()


def _import_one(lib: Path, path: Path, env: dict[str, str]) -> dict:
    run = run_cli("--library", lib, "import", path, "--yes", "--json", env=env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "imported"
    return json.loads((lib / result["model_id"] / "metadata.json").read_text())


def test_verified_when_the_copy_stream_hash_equals_the_hub(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "dl", "Qwen2-7B-Instruct.safetensors")
    fake_hub.add_repo(
        "Qwen/Qwen2-7B-Instruct",
        {path.name: data, "config.json": b"{}"},
        downloads=50,
        tags=["qwen2", "text-generation"],
        license="apache-2.0",
        pipeline_tag="text-generation",
        library_name="transformers",
    )
    meta = _import_one(tmp_path / "lib", path, fake_hub_env)
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)
    assert meta["repo_id"] == "Qwen/Qwen2-7B-Instruct"
    assert meta["license"] == "apache-2.0"
    assert meta["pending_online_lookup"] is False
    assert meta["pending_verification"] is False
    assert {f["path"] for f in meta["hub"]["repo_files"]} == {path.name, "config.json"}


def test_high_confidence_when_the_hub_lists_no_hash(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "dl", "tiny-vae.safetensors")
    repo = fake_hub.add_repo("someone/tiny-vae", {path.name: data}, downloads=5)
    repo.files[path.name].lfs = False  # a small file kept in git: size, but no LFS sha256
    meta = _import_one(tmp_path / "lib", path, fake_hub_env)
    assert trust_fields(meta) == ("high_confidence", "filename_exact", 0.95, False)
    assert meta["repo_id"] == "someone/tiny-vae"


def test_low_confidence_fuzzy_match_is_recorded_as_needing_confirmation(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    _, other = _model(tmp_path / "hub", "x.safetensors", fill=b"\x09")
    fake_hub.add_repo(
        "meta-llama/Meta-Llama-3-8B-Instruct",
        {"Meta-Llama-3-8B-Instruct.safetensors": other},
        downloads=1000,
    )
    path, _ = _model(tmp_path / "dl", "Meta-Llama-3-8B-Instruct-finetune.safetensors")
    meta = _import_one(tmp_path / "lib", path, fake_hub_env)
    assert meta["trust_level"] == "low_confidence"
    assert meta["match_method"] == "filename_fuzzy"
    assert 0.5 <= meta["match_confidence"] < 0.9
    assert meta["needs_confirmation"] is True and meta["match_confirmed"] is False

    # The same guess reached later by retry-pending is marked the same way.
    lib = tmp_path / "offline-lib"
    offline = run_cli("--library", lib, "import", path, "--yes", "--json", "--offline")
    model_id = offline.json["results"][0]["model_id"]
    retried = run_cli("--library", lib, "retry-pending", "--json", env=fake_hub_env)
    assert retried.json["results"][0]["trust_level"] == "low_confidence"
    meta = json.loads((lib / model_id / "metadata.json").read_text())
    assert meta["needs_confirmation"] is True


def test_modified_version_when_name_and_size_match_but_hash_differs(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    _, original = _model(tmp_path / "hub", "x.safetensors", fill=b"\x05")
    path, data = _model(tmp_path / "dl", "Mistral-7B-v0.1.safetensors", fill=b"\x06")
    assert len(original) == len(data) and original != data
    fake_hub.add_repo("mistralai/Mistral-7B-v0.1", {path.name: original}, downloads=10)
    meta = _import_one(tmp_path / "lib", path, fake_hub_env)
    assert trust_fields(meta) == ("modified", "hash_mismatch", 0.7, True)
    assert meta["repo_id"] == "mistralai/Mistral-7B-v0.1"


def test_no_match(tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]):
    path, _ = _model(tmp_path / "dl", "my-own-private-merge.safetensors")
    meta = _import_one(tmp_path / "lib", path, fake_hub_env)
    assert trust_fields(meta) == ("no_match", None, 0.0, False)
    assert meta["repo_id"] is None
    assert meta["pending_online_lookup"] is False  # the Hub answered: nothing to retry


def test_hub_down_imports_offline_then_retry_pending_enriches(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "dl", "Qwen2-7B-Instruct.safetensors")
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: data}, downloads=50)
    lib = tmp_path / "lib"
    fake_hub.fail(500)
    run = run_cli("--library", lib, "import", path, "--yes", "--json", env=fake_hub_env, timeout=60)
    assert run.code == 0, run.stderr
    model_id = run.json["results"][0]["model_id"]
    meta = json.loads((lib / model_id / "metadata.json").read_text())
    assert meta["pending_online_lookup"] is True and meta["repo_id"] is None
    assert meta["trust_level"] is None  # not "no_match": the Hub never answered
    assert run_cli("--library", lib, "status", "--json").json["pending_lookups"] == 1

    still_down = run_cli("--library", lib, "retry-pending", "--json", env=fake_hub_env)
    assert still_down.code == 1
    meta = json.loads((lib / model_id / "metadata.json").read_text())
    assert meta["pending_online_lookup"] is True and meta["trust_level"] is None
    assert meta["lookup_attempts"] == 2 and meta["last_lookup_attempt"]

    fake_hub.heal()
    back = run_cli("--library", lib, "retry-pending", "--json", env=fake_hub_env)
    assert back.code == 0, back.stderr
    assert back.json["results"][0]["status"] == "enriched"
    meta = json.loads((lib / model_id / "metadata.json").read_text())
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)
    assert meta["pending_online_lookup"] is False
    assert meta["lookup_attempts"] == 3
    assert run_cli("--library", lib, "status", "--json").json["pending_lookups"] == 0


def test_manual_record_is_untouched_by_retry_pending_and_rescan(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "dl", "Qwen2-7B-Instruct.safetensors")
    lib = tmp_path / "lib"
    offline = run_cli("--library", lib, "import", path, "--yes", "--json", "--offline")
    model_id = offline.json["results"][0]["model_id"]
    assert run_cli("--library", lib, "mark-manual", model_id).code == 0
    meta_path = lib / model_id / "metadata.json"
    before = meta_path.read_bytes()

    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: data}, downloads=50)
    run = run_cli("--library", lib, "retry-pending", "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    assert run.json["results"] == []  # a manual record is not pending: nothing to look up
    assert fake_hub.total == 0
    assert meta_path.read_bytes() == before

    assert run_cli("--library", lib, "rescan").code == 0
    assert meta_path.read_bytes() == before
    status = run_cli("--library", lib, "status", "--json").json
    assert status["manual_records"] == 1


@pytest.mark.parametrize("flag", ["--offline", None])
def test_offline_import_makes_no_hub_calls(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str], flag: str | None
):
    path, data = _model(tmp_path / "dl", "Qwen2-7B-Instruct.safetensors")
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: data})
    env = dict(fake_hub_env)
    args = ["--library", tmp_path / "lib", "import", path, "--yes", "--json"]
    if flag:
        args.append(flag)
    else:
        env["HF_HUB_OFFLINE"] = "1"
    run = run_cli(*args, env=env)
    assert run.code == 0, run.stderr
    assert run.json["results"][0]["pending_online_lookup"] is True
    assert fake_hub.total == 0


def test_lookup_after_import_knows_the_file_without_reading_it(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "dl", "Qwen2-7B-Instruct.safetensors")
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: data}, downloads=50)
    _import_one(tmp_path / "lib", path, fake_hub_env)
    run = run_cli("lookup", path, "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    [report] = run.json["results"]
    assert (report["trust"], report["match_method"]) == ("verified", "hash")


def test_hf_token_reaches_the_hub_on_every_lookup_call(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "dl", "private-model.safetensors")
    fake_hub.add_repo("me/private-model", {path.name: data})
    env = {**fake_hub_env, "HF_TOKEN": "hf_testtoken123"}
    run = run_cli("--library", tmp_path / "lib", "import", path, "--yes", "--json", env=env)
    assert run.code == 0, run.stderr
    assert run.json["results"][0]["trust_level"] == "verified"
    lookups = [
        a
        for (kind, _), a in zip(fake_hub.log, fake_hub.authorizations, strict=True)
        if kind in ("search", "model_info")
    ]
    assert lookups and all(a == "Bearer hf_testtoken123" for a in lookups)


def test_a_generic_file_name_keeps_the_model_name_after_a_hub_match(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path, data = _model(tmp_path / "Tiny-Repo-Model", "model.safetensors")
    fake_hub.add_repo("someone/Tiny-Repo-Model", {"model.safetensors": data}, downloads=7)
    meta = _import_one(tmp_path / "lib", path, fake_hub_env)
    assert meta["trust_level"] == "verified"
    assert meta["cleaned_name"] == "Tiny-Repo-Model"  # not "model"
    assert meta["model_id"].endswith("/tiny-repo-model")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_hub_and_civitai_are_named_once_with_why_and_what_it_cost(
    tmp_path: Path,
):
    """Issue 20, point 7: each model only showed "Lookup pending"; the sources that could
    not be reached are now named once per batch, with the reason and the time they cost."""
    port = _closed_port()
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "MODELIMPORT_CACHE_DIR": str(tmp_path / "cache"),
        "CIVITAI_ENDPOINT": f"http://127.0.0.1:{port}",
        "MODELIMPORT_CIVITAI": "1",
    }
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4])}
    for n in range(3):  # LoRAs: CivitAI is asked about them
        make_safetensors(tmp_path / "dl" / f"thing-{n}.safetensors", lora, fill=bytes([n + 1]))
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes",
                  env=env, timeout=120)
    assert run.code == 0, run.stderr
    said = run.stdout + run.stderr
    for source in ("The Hugging Face Hub", "CivitAI"):
        lines = [line for line in said.splitlines() if line.startswith(source)]
        assert len(lines) == 1, said  # once per batch, not once per model
        assert "could not be reached (connection refused)" in lines[0], lines[0]
        assert re.search(r"Gave up after \d+\.\d s of asking", lines[0]), lines[0]
