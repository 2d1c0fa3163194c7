"""Planted links and hand-written files in the library never reach outside it.

Everything under the library can be edited by whoever can write it: `.modelimport/staging`
and its journals, each model's metadata.json. Recovery (which runs before every command),
`remove`, `verify`, `sync` and `check` never follow a link or `..` out of the library; what
is not as modelimport wrote it is reported in one sentence and left alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli import run_cli
from factories import make_safetensors


def _library(tmp_path: Path) -> tuple[Path, str]:
    """A library holding one imported model; its root and the model id."""
    lib = tmp_path / "lib"
    source = make_safetensors(tmp_path / "src" / "kept.safetensors")
    run = run_cli("--library", lib, "import", source, "--yes", "--json")
    assert run.code == 0, run.stderr
    return lib, run.json["results"][0]["model_id"]


def _victim(tmp_path: Path) -> Path:
    """A folder outside the library with a file and a subfolder that must survive."""
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "id_rsa").write_text("private key")
    (victim / "sub" / "notes.txt").write_text("notes")
    return victim


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _transaction(lib: Path, journal: dict, name: str = "0123456789abcdef") -> Path:
    """A transaction folder as `staging.begin` lays it out, with a hand-written journal."""
    txn = lib / ".modelimport" / "staging" / name
    (txn / "model").mkdir(parents=True)
    (txn / "lock").touch()
    (txn / "journal.json").write_text(json.dumps({"txn": name, **journal}))
    return txn


def _said(text: str) -> str:
    """What was said, with the terminal's line wrapping undone."""
    return " ".join(text.split())


def _one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.strip(), "the problem is reported"


def test_a_staging_folder_replaced_by_a_link_is_never_followed(tmp_path: Path):
    lib, _ = _library(tmp_path)
    victim = _victim(tmp_path)
    before = _tree(victim)
    staging = lib / ".modelimport" / "staging"
    staging.rmdir()
    staging.symlink_to(victim)

    listed = run_cli("--library", lib, "list")
    assert listed.code == 0
    _one_sentence(listed.stderr)
    assert "not a folder modelimport made" in _said(listed.stderr)
    assert _tree(victim) == before  # recovery used to delete victim/sub whole

    new = make_safetensors(tmp_path / "src" / "new.safetensors", {"x": ("F32", [2, 2])})
    imported = run_cli("--library", lib, "import", new, "--yes", "--json")
    assert imported.code == 1
    [result] = imported.json["results"]
    assert result["status"] == "failed"
    assert "not a folder modelimport made" in result["error"]
    assert _tree(victim) == before  # nothing was staged through the link

    check = run_cli("--library", lib, "check", "--json")
    assert "Traceback" not in check.stderr
    [left] = [p for p in check.json["problems"] if p["kind"] == "staging_left"]
    assert "not a folder modelimport made" in left["message"]
    assert _tree(victim) == before
    assert staging.is_symlink()  # left as it is


def test_a_journal_naming_a_file_outside_its_transaction_moves_nothing(tmp_path: Path):
    lib, _ = _library(tmp_path)
    victim = _victim(tmp_path)
    before = _tree(victim)
    gone_to = tmp_path / "elsewhere" / "id_rsa"
    # staging/<txn>/model/ + five `..` is the library's parent folder, where victim/ is.
    txn = _transaction(
        lib,
        {
            "mode": "move",
            "state": "staging",
            "entries": [
                {"source": str(gone_to), "staged": "../../../../../victim/id_rsa", "moved": True}
            ],
        },
    )
    run = run_cli("--library", lib, "status")
    assert run.code == 0
    _one_sentence(run.stderr)
    assert "is not a plain relative path inside the library" in _said(run.stderr)
    assert _tree(victim) == before
    assert not gone_to.exists()
    assert (txn / "journal.json").is_file()  # left for a person to look at


@pytest.mark.parametrize("planted", ["transaction", "model", "lock", "journal"])
def test_a_link_planted_in_a_transaction_is_not_followed(tmp_path: Path, planted: str):
    lib, _ = _library(tmp_path)
    victim = _victim(tmp_path)
    before = _tree(victim)
    staging = lib / ".modelimport" / "staging"
    if planted == "transaction":
        (staging / "0123456789abcdef").symlink_to(victim, target_is_directory=True)
    else:
        txn = _transaction(lib, {"mode": "remove", "state": "staging", "removing": None})
        name = {"model": "model", "lock": "lock", "journal": "journal.json"}[planted]
        target = victim if planted == "model" else victim / "id_rsa"
        path = txn / name
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
        path.symlink_to(target)
    run = run_cli("--library", lib, "status")
    assert run.code == 0
    _one_sentence(run.stderr)
    assert "it is left as it is" in _said(run.stderr)
    assert _tree(victim) == before


def test_a_removal_journal_never_moves_files_over_others(tmp_path: Path):
    """A planted removal whose `keep_to` is a folder that already holds a file of that name:
    recovery does not replace it (os.rename would)."""
    lib, _ = _library(tmp_path)
    victim = _victim(tmp_path)
    before = _tree(victim)
    txn = _transaction(
        lib, {"mode": "remove", "state": "staging", "removing": None, "keep_to": str(victim)}
    )
    (txn / "model" / "id_rsa").write_text("attacker's key")
    run = run_cli("--library", lib, "status")
    assert run.code == 0
    assert "Traceback" not in run.stderr
    assert _tree(victim) == before


def test_an_add_files_journal_never_unlinks_outside_its_model(tmp_path: Path):
    lib, model_id = _library(tmp_path)
    victim = _victim(tmp_path)
    before = _tree(victim)
    _transaction(
        lib,
        {
            "mode": "add-files",
            "state": "committing",
            "target": model_id,
            "placements": [{"staged": "x", "dest": "../../../../victim/id_rsa"}],
            "created_dirs": ["../../../../victim/sub"],
        },
    )
    run = run_cli("--library", lib, "status")
    assert run.code == 0
    assert "Traceback" not in run.stderr
    assert _tree(victim) == before


def test_a_committed_move_journal_deletes_no_file_it_did_not_copy(tmp_path: Path):
    """A hand-written record and journal of a move that 'died after its commit', naming a
    file outside with its true size and mtime (anyone can stat it) and a library file of the
    same size: recovery deletes a source only when the library holds its very bytes."""
    lib, model_id = _library(tmp_path)
    victim = _victim(tmp_path)
    target = victim / "id_rsa"
    meta_path = lib / model_id / "metadata.json"
    record = json.loads(meta_path.read_text())
    st = target.stat()
    (lib / model_id / "planted.bin").write_text("x" * st.st_size)
    record["files"].append({"name": "planted.bin", "size": st.st_size, "blake3": "0" * 64})
    record["sources"] = [{"path": str(target), "size": st.st_size, "mtime_ns": st.st_mtime_ns}]
    record["import_txn"] = "0123456789abcdef"
    meta_path.write_text(json.dumps(record))
    txn = _transaction(
        lib,
        {
            "mode": "move",
            "state": "committing",
            "dest": model_id,
            "entries": [{"source": str(target), "staged": "planted.bin", "moved": False}],
        },
    )
    (txn / "model").rmdir()  # committed: the model folder was renamed into the library
    run = run_cli("--library", lib, "status")
    assert run.code == 0, run.stderr
    assert target.read_text() == "private key"


def test_a_link_in_place_of_the_library_meta_folder_is_refused(tmp_path: Path):
    lib, _ = _library(tmp_path)
    victim = _victim(tmp_path)
    (victim / "staging" / "0123456789abcdef").mkdir(parents=True)  # no lock: looks crashed
    (victim / "staging" / "0123456789abcdef" / "keep").write_text("k")
    os.rename(lib / ".modelimport", tmp_path / "meta-moved")
    (lib / ".modelimport").symlink_to(victim)
    before = _tree(victim)
    for command in (["status"], ["list"], ["import", tmp_path / "src", "--yes"]):
        run = run_cli("--library", lib, *command)
        assert "Traceback" not in run.stderr
        assert run.code != 0 and "not a folder modelimport made" in _said(run.stderr)
    assert _tree(victim) == before  # no index, lock or staged file was written there


# --- files[].name in a hand-edited metadata.json


def _plant_name(tmp_path: Path, lib: Path, model_id: str, how: str) -> Path:
    """Add to the model's metadata.json a file entry that names `secret.txt` outside the
    library (with its true size and hashes, so only containment can refuse it)."""
    import hashlib

    import blake3

    secret = tmp_path / "secret.txt"
    secret.write_text("the private bytes")
    model_dir = lib / model_id
    if how == "dotdot":
        name = "../../../../secret.txt"  # <lib>/<type>/<family>/<slug>/ + 4 x ..
    elif how == "absolute":
        name = str(secret)
    else:  # a folder of the model that is a link to a folder outside
        (model_dir / "sub").symlink_to(tmp_path, target_is_directory=True)
        name = "sub/secret.txt"
    data = secret.read_bytes()
    meta_path = model_dir / "metadata.json"
    record = json.loads(meta_path.read_text())
    record["files"].append(
        {
            "name": name,
            "role": "weights",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "blake3": blake3.blake3(data).hexdigest(),
            "format": "safetensors",
        }
    )
    meta_path.write_text(json.dumps(record))
    return secret


NAMES = ["dotdot", "absolute", "linked_folder"]


@pytest.mark.parametrize("how", NAMES)
def test_verify_never_reads_a_file_named_outside_the_library(tmp_path: Path, how: str):
    lib, model_id = _library(tmp_path)
    _plant_name(tmp_path, lib, model_id, how)
    run = run_cli("--library", lib, "verify", "--json")
    assert "Traceback" not in run.stderr
    assert run.code == 1
    [result] = run.json["results"]
    assert result["status"] == "corrupted"
    [bad] = result["files"]
    assert "not followed" in bad["problem"]
    assert run.json["summary"]["files"] == 1  # only the real model file was read


@pytest.mark.parametrize("how", NAMES)
def test_check_reports_a_file_named_outside_the_library(tmp_path: Path, how: str):
    lib, model_id = _library(tmp_path)
    _plant_name(tmp_path, lib, model_id, how)
    run_cli("--library", lib, "rescan")  # the index agrees with the edited record
    run = run_cli("--library", lib, "check", "--json")
    assert "Traceback" not in run.stderr
    kinds = {p["kind"] for p in run.json["problems"]}
    assert "outside_library" in kinds
    [problem] = [p for p in run.json["problems"] if p["kind"] == "outside_library"]
    assert "not followed" in problem["message"]


@pytest.mark.parametrize("how", NAMES)
def test_sync_never_links_an_app_to_a_file_named_outside_the_library(tmp_path: Path, how: str):
    from app_models import sdxl_lora

    lib = tmp_path / "lib"
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    assert run_cli("--library", lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    run = run_cli(
        "--library", lib, "import", sdxl_lora(tmp_path / "src" / "lora.safetensors"), "--yes",
        "--json",
    )  # fmt: skip
    model_id = run.json["results"][0]["model_id"]
    secret = _plant_name(tmp_path, lib, model_id, how)
    synced = run_cli("--library", lib, "sync", "--json")
    assert "Traceback" not in synced.stderr
    linked = [p for p in (comfy / "models" / "loras").iterdir()]
    assert [p.name for p in linked] == ["lora.safetensors"]
    assert all(os.path.realpath(p) != str(secret) for p in linked)
    failed = [c for c in synced.json["changes"] if c["action"] == "failed"]
    assert len(failed) == 1 and "not followed" in failed[0]["reason"]


@pytest.mark.parametrize("how", NAMES)
def test_remove_and_show_never_touch_a_file_named_outside_the_library(
    tmp_path: Path, how: str
):
    lib, model_id = _library(tmp_path)
    secret = _plant_name(tmp_path, lib, model_id, how)
    shown = run_cli("--library", lib, "show", model_id, "--json")
    assert shown.code == 0, shown.stderr
    [outside] = [f for f in shown.json["files"] if f["path"] is None]
    assert outside["present"] is False
    removed = run_cli("--library", lib, "remove", model_id, "--yes", "--json")
    assert removed.code == 0, removed.stderr
    assert secret.read_text() == "the private bytes"
    assert not (lib / model_id).exists()


def test_a_model_whose_type_folder_is_a_link_is_not_removed_through_it(tmp_path: Path):
    lib, model_id = _library(tmp_path)
    type_dir = lib / model_id.split("/")[0]
    elsewhere = tmp_path / "elsewhere"
    os.rename(type_dir, elsewhere)
    type_dir.symlink_to(elsewhere, target_is_directory=True)
    removed = run_cli("--library", lib, "remove", model_id, "--yes", "--json")
    assert "Traceback" not in removed.stderr
    assert removed.code != 0
    assert (elsewhere / model_id.split("/", 1)[1] / "metadata.json").is_file()
    for command in (["show", model_id], ["mark-manual", model_id]):
        run = run_cli("--library", lib, *command)
        assert "Traceback" not in run.stderr
        assert run.code != 0 and "symbolic link" in _said(run.stderr), run.stderr


def test_a_link_planted_as_the_verify_record_is_not_read(tmp_path: Path):
    lib, _ = _library(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"at": "a private value", "problems": 0}))
    (lib / ".modelimport" / "verified.json").symlink_to(other)
    status = run_cli("--library", lib, "status", "--json")
    assert status.code == 0, status.stderr
    assert "a private value" not in status.stdout


def test_a_lock_file_planted_as_a_link_creates_nothing_outside(tmp_path: Path):
    lib, _ = _library(tmp_path)
    created = tmp_path / "created-by-the-lock"
    lock = lib / ".modelimport" / "commit.lock"
    lock.unlink()
    lock.symlink_to(created)  # dangling: opening it with O_CREAT would create the target
    new = make_safetensors(tmp_path / "src" / "new.safetensors", {"x": ("F32", [2, 2])})
    run = run_cli("--library", lib, "import", new, "--yes", "--json")
    assert "Traceback" not in run.stderr
    [result] = run.json["results"]
    assert result["status"] == "failed" and "not followed" in result["error"]
    assert not os.path.lexists(created)
