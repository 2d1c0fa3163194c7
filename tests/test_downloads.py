"""Completing library models from their matched repo: the real CLI, the real huggingface_hub
client and its `hf_hub_download`, against the fake Hub; real safetensors shards and index.

- A 5-shard set imported with shards 2 and 4 missing is completed by `--download-missing`:
  every hash verified, complete in metadata.json, in the index and in `shards`.
- A download whose bytes are not the ones the Hub lists leaves the model exactly as it was.
- Offline, downloading says it needs the Hub; a crash while adding files rolls back.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from cli import trust_fields
from factories import make_sharded_safetensors
from fakehub import FakeHub

REPO = "org/Tiny-Llama-5B"
MISSING = ("model-00002-of-00005.safetensors", "model-00004-of-00005.safetensors")
RELATED = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}',
    "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
    "README.md": b"# Tiny Llama 5B\n",
}


def _set_on_hub(tmp_path: Path, fake_hub: FakeHub) -> tuple[Path, dict[str, bytes]]:
    """The whole set (5 shards + index) on the Hub with its config, tokenizer and card; the
    local folder lacks shards 2 and 4."""
    files = make_sharded_safetensors(tmp_path / "dl" / "Tiny-Llama-5B", total=5)
    hub_files = {p.name: p.read_bytes() for p in files} | RELATED
    fake_hub.add_repo(REPO, hub_files, downloads=100, pipeline_tag="text-generation")
    for name in MISSING:
        (files[0].parent / name).unlink()
    return files[0].parent, hub_files


def _import(lib: Path, folder: Path, env: dict[str, str], *flags: str) -> tuple[str, dict]:
    run = run_cli("--library", lib, "import", folder, "--yes", "--json", *flags, env=env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] in ("imported", "duplicate"), result
    return result["model_id"], result


def _meta(lib: Path, model_id: str) -> dict:
    return json.loads((lib / model_id / "metadata.json").read_text())


def _index_rows(lib: Path, model_id: str) -> tuple[tuple, list[tuple]]:
    db = sqlite3.connect(lib / ".modelimport" / "index.sqlite")
    try:
        model = db.execute(
            "SELECT incomplete, trust, file_count, total_size FROM models WHERE model_id = ?",
            (model_id,),
        ).fetchone()
        files = db.execute(
            "SELECT name, size, sha256 FROM files WHERE model_id = ? ORDER BY name", (model_id,)
        ).fetchall()
    finally:
        db.close()
    return model, files


def _snapshot(lib: Path, model_id: str) -> dict[str, bytes]:
    """Every file of the model folder, byte for byte."""
    folder = lib / model_id
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def _staging_is_empty(lib: Path) -> bool:
    return not any((lib / ".modelimport" / "staging").iterdir())


def test_download_missing_completes_a_five_shard_set(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, hub_files = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    before = _meta(lib, model_id)
    assert before["incomplete_set"] is True
    assert sorted(before["missing_shards"]) == list(MISSING)
    assert before["repo_id"] == REPO and before["trust_level"] == "high_confidence"

    run = run_cli(
        "--library", lib, "shards", "--download-missing", model_id, "--json", env=fake_hub_env
    )
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "completed" and result["complete"] is True
    assert sorted(f["name"] for f in result["downloaded"]) == list(MISSING)
    assert {f["verified_by"] for f in result["downloaded"]} == {"sha256"}
    # One progress bar per file: download events name each file.
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    downloading = {e["item"] for e in events if e["stage"] == "downloading"}
    assert {item.rsplit(": ", 1)[-1] for item in downloading} == set(MISSING)

    meta = _meta(lib, model_id)
    assert meta["incomplete_set"] is False and meta["missing_shards"] == []
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)
    shards = [f for f in meta["files"] if f["shard_index"] is not None]
    assert [f["shard_index"] for f in shards] == [1, 2, 3, 4, 5]
    for f in shards:  # all five hashes are the Hub's, and the bytes on disk are those
        expected = hashlib.sha256(hub_files[f["name"]]).hexdigest()
        assert f["sha256"] == expected
        assert (lib / model_id / f["name"]).read_bytes() == hub_files[f["name"]]
    added = [f for f in shards if f["name"] in MISSING]
    assert all(f["role"] == "weights" and f["format"] == "safetensors" for f in added)
    assert all(f["downloaded_from"]["repo_id"] == REPO for f in added)

    model_row, file_rows = _index_rows(lib, model_id)
    assert model_row == (0, "verified", 6, sum(f["size"] for f in meta["files"]))
    assert {r[0] for r in file_rows} == {f["name"] for f in meta["files"]}
    listed = run_cli("--library", lib, "list", "--json").json["models"]
    assert [(m["model_id"], m["incomplete"]) for m in listed] == [(model_id, False)]

    grouped = run_cli("shards", lib / model_id, "--json")
    assert grouped.code == 0, grouped.stdout
    [group] = grouped.json["sets"]
    assert group["complete"] is True and group["shards_present"] == 5
    assert group["name"] == "model.safetensors"
    assert _staging_is_empty(lib)

    # Nothing is missing any more: a second run downloads nothing and says so.
    again = run_cli("--library", lib, "shards", "--download-missing", model_id, env=fake_hub_env)
    assert again.code == 0, again.stderr
    assert "nothing to download; the set is complete" in again.stdout


def test_a_corrupted_download_leaves_the_model_as_it_was(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, hub_files = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    original = hub_files[MISSING[1]]
    # Same size, other bytes: only the SHA256 can tell (huggingface_hub checks the size).
    fake_hub.serve_other_bytes(REPO, MISSING[1], bytes(b ^ 0x5A for b in original))
    files_before, index_before = _snapshot(lib, model_id), _index_rows(lib, model_id)

    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=fake_hub_env)
    assert run.code == 1
    assert "Traceback" not in run.stderr + run.stdout
    errors = [line for line in run.stdout.splitlines() if "failed" in line]
    assert len(errors) == 1
    assert f"{MISSING[1]} from {REPO} does not have the SHA256 the Hub lists" in errors[0]
    assert "discarded" in errors[0] and f"{model_id} is unchanged" in errors[0]

    assert _snapshot(lib, model_id) == files_before  # shard 2 (good) was not added either
    assert _index_rows(lib, model_id) == index_before
    assert _staging_is_empty(lib)
    assert _meta(lib, model_id)["incomplete_set"] is True


def test_import_download_missing_imports_and_completes_in_one_go(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, hub_files = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, result = _import(lib, folder, fake_hub_env, "--download-missing", "--with-related")
    assert result["downloads"]["status"] == "completed", result
    meta = _meta(lib, model_id)
    assert meta["incomplete_set"] is False
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)
    roles = {f["name"]: f.get("role") for f in meta["files"]}
    assert roles["config.json"] == "config" and roles["tokenizer.json"] == "tokenizer"
    assert roles["README.md"] == "companion"
    for name, data in RELATED.items():
        assert (lib / model_id / name).read_bytes() == data
    # The set's own index json was there already; it is not downloaded again.
    assert [f["name"] for f in meta["files"]].count("model.safetensors.index.json") == 1

    # Running it again finds the model (a duplicate) complete: nothing more to fetch.
    _, again = _import(lib, folder, fake_hub_env, "--download-missing")
    assert again["status"] == "duplicate" and "downloads" not in again


def test_with_related_fetches_what_the_model_lacks_by_path_of_its_sources(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    # Named by the folder it was imported from, not by its id.
    run = run_cli(
        "--library", lib, "shards", "--with-related", folder, "--json", env=fake_hub_env
    )
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["model_id"] == model_id
    assert sorted(f["name"] for f in result["downloaded"]) == sorted(RELATED)
    assert {f["verified_by"] for f in result["downloaded"]} == {"size"}  # small git files
    assert _meta(lib, model_id)["incomplete_set"] is True  # shards were not asked for


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_says_downloading_needs_the_hub(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str], how: str
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    env = fake_hub_env | ({"HF_HUB_OFFLINE": "1"} if how == "env" else {})
    flags = ["--offline"] if how == "flag" else []
    fake_hub.reset_counts()
    for args in (
        ["shards", "--download-missing", model_id],
        ["import", folder, "--yes", "--download-missing"],
    ):
        run = run_cli("--library", lib, *flags, *args, env=env)
        assert run.code == 2, (args, run.stderr)
        assert "Traceback" not in run.stderr
        assert "Downloading files needs the Hugging Face Hub" in run.stderr
    assert fake_hub.total == 0
    assert _meta(lib, model_id)["incomplete_set"] is True


def test_a_crash_while_adding_files_rolls_back(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    files_before, index_before = _snapshot(lib, model_id), _index_rows(lib, model_id)
    crash = fake_hub_env | {"MODELIMPORT_FAULTS": "download.after_place:crash"}
    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=crash)
    assert run.code == 70
    assert (lib / model_id / MISSING[0]).exists()  # one shard was placed when it died

    status = run_cli("--library", lib, "status", "--json")  # any command recovers first
    assert status.code == 0, status.stderr
    assert status.json["recovered"]["rolled_back"] == 1
    assert _snapshot(lib, model_id) == files_before
    assert _index_rows(lib, model_id) == index_before
    assert _staging_is_empty(lib)


def test_a_crash_after_the_commit_point_is_finished(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    crash = fake_hub_env | {"MODELIMPORT_FAULTS": "download.after_commit:crash"}
    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=crash)
    assert run.code == 70
    status = run_cli("--library", lib, "status", "--json")
    assert status.json["recovered"]["completed"] == 1
    assert _index_rows(lib, model_id)[0][:3] == (0, "verified", 6)
    assert _meta(lib, model_id)["incomplete_set"] is False


def test_a_hostile_index_naming_dotdot_never_becomes_a_path(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    index = folder / "model.safetensors.index.json"
    body = json.loads(index.read_text())
    body["weight_map"]["evil"] = "../../.."
    index.write_text(json.dumps(body))
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    before = _snapshot(lib, model_id)
    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=fake_hub_env)
    assert run.code == 1 and "Traceback" not in run.stderr
    assert "is not a safe file name" in run.stdout
    assert _snapshot(lib, model_id) == before
    # Nothing written beside them (huggingface_hub's own folder is there when run in a process).
    assert {p.name for p in tmp_path.iterdir()} - {"hf-home"} == {"dl", "hub-cache", "lib"}


def test_a_model_without_a_trusted_match_downloads_nothing(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, {"HF_HUB_OFFLINE": "1"}, "--allow-incomplete")
    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=fake_hub_env)
    assert run.code == 1
    assert "has not been looked up on the Hub yet" in run.stdout
    unknown = run_cli("--library", lib, "shards", "--download-missing", "llm/x/y", env=fake_hub_env)
    assert unknown.code == 1 and "neither a model id in the library" in unknown.stdout


def test_import_download_missing_completes_a_set_already_in_the_library(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    _, again = _import(lib, folder, fake_hub_env, "--download-missing")
    assert again["status"] == "duplicate" and again["model_id"] == model_id
    assert again["downloads"]["status"] == "completed"
    assert sorted(f["name"] for f in again["downloads"]["downloaded"]) == list(MISSING)
    assert _meta(lib, model_id)["incomplete_set"] is False


def test_the_hub_down_while_completing_is_one_sentence_and_changes_nothing(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    before = _snapshot(lib, model_id)
    fake_hub.fail(500, endpoint="resolve")
    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=fake_hub_env)
    assert run.code == 1 and "Traceback" not in run.stderr + run.stdout
    [line] = [line for line in run.stdout.splitlines() if "failed" in line]
    assert f"Downloading {MISSING[0]} from {REPO} failed" in line
    assert _snapshot(lib, model_id) == before and _staging_is_empty(lib)


def test_an_index_failure_after_the_commit_point_is_finished_by_the_next_command(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder, _ = _set_on_hub(tmp_path, fake_hub)
    lib = tmp_path / "lib"
    model_id, _ = _import(lib, folder, fake_hub_env, "--allow-incomplete")
    full = fake_hub_env | {"MODELIMPORT_FAULTS": "download.after_commit:dbfull"}
    run = run_cli("--library", lib, "shards", "--download-missing", model_id, env=full)
    assert run.code == 1 and "Traceback" not in run.stderr + run.stdout
    assert "was completed, but the index could not be updated" in run.stdout
    assert _meta(lib, model_id)["incomplete_set"] is False
    status = run_cli("--library", lib, "status", "--json")
    assert status.json["recovered"]["completed"] == 1
    assert _index_rows(lib, model_id)[0][:3] == (0, "verified", 6)


def test_a_transformers_folder_is_identified_by_its_name_or_path_and_verified_by_its_weights(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    from factories import make_safetensors

    folder = tmp_path / "dl" / "my-copy"  # a folder name the Hub search finds nothing for
    weights = make_safetensors(folder / "model.safetensors", {"w": ("F16", [16, 16])}, fill=b"\x07")
    config = {"_name_or_path": "org/Real-Model-1B", "architectures": ["LlamaForCausalLM"],
              "model_type": "llama"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    # The Hub's config differs (another _name_or_path): only the weights decide `verified`.
    fake_hub.add_repo(
        "org/Real-Model-1B",
        {"model.safetensors": weights.read_bytes(), "config.json": b'{"model_type": "llama"}'},
        downloads=10,
    )
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", folder, "--yes", "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    meta = _meta(lib, result["model_id"])
    assert meta["repo_id"] == "org/Real-Model-1B"
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)
