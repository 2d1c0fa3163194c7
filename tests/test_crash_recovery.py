"""A SIGKILL at any moment leaves no partial model and never loses a source file.

Fault points (modelimport.faults) make the process hang at a chosen moment; the test then
kills it with SIGKILL, the way a power cut or the OOM killer would, and runs the next command.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli import library_files, run_cli, start_cli
from factories import make_big_safetensors, make_safetensors

BIG = 256 * 1024 * 1024


def _big_model(path: Path, size: int = BIG) -> Path:
    """A valid safetensors file of `size` bytes (mostly sparse, so cheap to create)."""
    return make_big_safetensors(path, size)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _kill_at(fault: str, marker: Path, *args: str | Path) -> None:
    """Run the CLI until it hangs at `fault`, then SIGKILL it."""
    proc = start_cli(
        *args, env={"MODELIMPORT_FAULTS": fault, "MODELIMPORT_FAULT_MARKER": str(marker)}
    )
    try:
        _wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _wait_for(marker: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until the CLI reaches its fault point (it writes `marker` there)."""
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended before the fault point: {proc.returncode} {err}")
        if time.monotonic() > deadline:
            pytest.fail("fault point never reached")
        time.sleep(0.02)


def _assert_library_empty(lib: Path) -> None:
    status = run_cli("--library", lib, "status", "--json")
    assert status.code == 0, status.stderr
    assert status.json["models"] == 0
    assert library_files(lib) == []
    assert list((lib / ".modelimport" / "staging").iterdir()) == []


def test_sigkill_during_copy_leaves_nothing_and_source_intact(tmp_path: Path):
    source = _big_model(tmp_path / "big.safetensors")
    digest = _sha256(source)
    lib = tmp_path / "lib"
    _kill_at(
        f"copy.bytes>={BIG // 4}:hang",
        tmp_path / "marker",
        "--library",
        lib,
        "import",
        source,
        "--yes",
        "--json",
    )
    staged = list((lib / ".modelimport" / "staging").rglob("big.safetensors"))
    assert staged and staged[0].stat().st_size < BIG  # it really died mid-copy

    _assert_library_empty(lib)
    assert _sha256(source) == digest

    again = run_cli("--library", lib, "import", source, "--yes", "--json")
    assert again.code == 0, again.stderr
    [result] = again.json["results"]
    assert result["status"] == "imported"
    assert result["files"][0]["sha256"] == digest


def test_sigkill_during_same_filesystem_move_hashing_keeps_source(tmp_path: Path):
    source = _big_model(tmp_path / "big.safetensors")
    digest = _sha256(source)
    lib = tmp_path / "lib"
    _kill_at(
        f"read.bytes>={BIG // 4}:hang",
        tmp_path / "marker",
        "--library",
        lib,
        "import",
        source,
        "--move",
        "--yes",
    )
    assert source.exists()
    _assert_library_empty(lib)
    assert _sha256(source) == digest


def test_sigkill_after_move_rename_puts_source_back(tmp_path: Path):
    source = _big_model(tmp_path / "big.safetensors", size=8 << 20)
    digest = _sha256(source)
    lib = tmp_path / "lib"
    _kill_at(
        "move.after_rename:hang",
        tmp_path / "marker",
        "--library",
        lib,
        "import",
        source,
        "--move",
        "--yes",
    )
    assert not source.exists()  # it was in staging when the process died

    _assert_library_empty(lib)  # any command recovers first
    assert source.exists()
    assert _sha256(source) == digest

    again = run_cli("--library", lib, "import", source, "--move", "--yes", "--json")
    assert again.code == 0, again.stderr
    assert not source.exists()
    model_id = again.json["results"][0]["model_id"]
    assert _sha256(lib / model_id / "big.safetensors") == digest


def test_sigkill_after_commit_rename_completes_the_model(tmp_path: Path):
    source = make_safetensors(tmp_path / "small.safetensors")
    lib = tmp_path / "lib"
    _kill_at(
        "commit.after_rename:hang",
        tmp_path / "marker",
        "--library",
        lib,
        "import",
        source,
        "--move",
        "--yes",
    )
    [meta_path] = [p for p in library_files(lib) if p.name == "metadata.json"]

    status = run_cli("--library", lib, "status", "--json")
    assert status.json["models"] == 1  # recovery indexed the committed model
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    meta = json.loads(meta_path.read_text())
    assert (meta_path.parent / "small.safetensors").stat().st_size == meta["files"][0]["size"]
    assert not source.exists()  # the model is complete, so the move stands


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm as a second filesystem")
def test_cross_filesystem_move_deletes_source_only_after_commit(tmp_path: Path):
    shm = Path(f"/dev/shm/modelimport-test-{os.getpid()}")
    shm.mkdir(exist_ok=True)
    try:
        source = _big_model(shm / "x.safetensors", size=32 << 20)
        digest = _sha256(source)
        lib = tmp_path / "lib"
        _kill_at(
            f"copy.bytes>={16 << 20}:hang",
            tmp_path / "marker",
            "--library",
            lib,
            "import",
            source,
            "--move",
            "--yes",
        )
        assert _sha256(source) == digest
        _assert_library_empty(lib)

        run = run_cli("--library", lib, "import", source, "--move", "--yes", "--json")
        assert run.code == 0, run.stderr
        assert not source.exists()
        assert run.json["results"][0]["files"][0]["sha256"] == digest
    finally:
        subprocess.run(["rm", "-rf", str(shm)], check=False)


def test_processes_importing_the_same_file_at_once_add_it_once(tmp_path: Path):
    source = _big_model(tmp_path / "same.safetensors", size=64 << 20)
    lib = tmp_path / "lib"
    run_cli("--library", lib, "status")  # create the library first
    # Three at once: opening the index while another process closes it (and checkpoints its
    # WAL) used to fail at once with "database is locked", reported as a damaged index.
    procs = [start_cli("--library", lib, "import", source, "--yes", "--json") for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(out.strip() for out, _ in outputs), [err for _, err in outputs]
    statuses = sorted(json.loads(out)["results"][0]["status"] for out, _ in outputs)
    assert statuses == ["duplicate", "duplicate", "imported"], [err for _, err in outputs]
    assert run_cli("--library", lib, "status", "--json").json["models"] == 1
    assert len([p for p in library_files(lib) if p.name == "same.safetensors"]) == 1


def test_index_failure_after_the_commit_keeps_the_model_and_indexes_it_next_time(
    tmp_path: Path,
):
    source = make_safetensors(tmp_path / "m.safetensors")
    lib = tmp_path / "lib"
    env = {"MODELIMPORT_FAULTS": "commit.index:dbfull"}
    run = run_cli("--library", lib, "import", source, "--move", "--yes", "--json", env=env)

    assert run.code == 1, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "imported"
    assert "the index could not be updated (database or disk is full)" in result["error"]
    assert "Traceback" not in run.stderr
    model_dir = lib / result["model_id"]
    assert (model_dir / "m.safetensors").is_file()  # the moved file is whole in the library
    assert not source.exists()

    status = run_cli("--library", lib, "status", "--json")
    assert status.json["models"] == 1  # the next command indexed it
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    again = run_cli("--library", lib, "import", model_dir / "m.safetensors", "--yes", "--json")
    assert again.json["results"][0]["status"] == "duplicate"


@pytest.mark.parametrize(
    ("fault", "models"),
    # read.bytes fires in the main thread, where Python delivers Ctrl-C (copy.bytes fires in
    # the writer thread, which a real write would leave but a test hang never does).
    [(f"read.bytes>={8 << 20}:hang", 0), ("commit.after_rename:hang", 1)],
    ids=["during-copy", "after-commit-rename"],
)
@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_ctrl_c_rolls_back_or_keeps_a_whole_model(
    tmp_path: Path, fault: str, models: int, move: bool
):
    source = _big_model(tmp_path / "m.safetensors", size=32 << 20)
    digest = _sha256(source)
    lib, marker = tmp_path / "lib", tmp_path / "marker"
    env = {"MODELIMPORT_FAULTS": fault, "MODELIMPORT_FAULT_MARKER": str(marker)}
    args = ["--library", lib, "import", source, "--yes", *(["--move"] if move else [])]
    proc = start_cli(*args, env=env)
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("Interrupted; nothing half-imported is left")
    assert "Traceback" not in err
    status = run_cli("--library", lib, "status", "--json")
    assert status.json["models"] == models
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    if models:
        [copy] = [p for p in library_files(lib) if p.name == "m.safetensors"]
        assert _sha256(copy) == digest
        assert source.exists() != move
    else:
        assert library_files(lib) == []
        assert _sha256(source) == digest


@pytest.mark.parametrize(
    ("fault", "size", "message"),
    [
        # a large file goes through the threaded pipeline, a small one is copied inline
        (f"copy.bytes>={8 << 20}:enospc", 32 << 20, "The disk is full"),
        ("copy.bytes>=1:eacces", 64 << 10, "Permission denied while importing big.safetensors"),
    ],
    ids=["disk-full", "permission-denied"],
)
def test_write_errors_during_copy_fail_cleanly(tmp_path: Path, fault: str, size: int, message: str):
    source = _big_model(tmp_path / "big.safetensors", size=size)
    lib = tmp_path / "lib"
    env = {"MODELIMPORT_FAULTS": fault}
    run = run_cli("--library", lib, "import", source, "--yes", "--json", env=env)
    assert run.code == 1
    [result] = run.json["results"]
    assert result["status"] == "failed"
    assert result["error"].startswith(message), result["error"]
    assert "Traceback" not in run.stderr
    _assert_library_empty(lib)
    assert source.stat().st_size == size


def _append(path: Path) -> None:
    with open(path, "ab") as fh:
        fh.write(b"more bytes of a download still running")


def _overwrite_in_place(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(-4096, os.SEEK_END)
        fh.write(os.urandom(4096))
    stat = path.stat()  # same size; the mtime must differ even on a coarse clock
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("change", [_append, _overwrite_in_place], ids=["grows", "rewritten"])
@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_source_changed_while_read_is_refused(tmp_path: Path, change, move: bool):
    source = _big_model(tmp_path / "dl.safetensors", size=32 << 20)
    lib, marker = tmp_path / "lib", tmp_path / "marker"
    env = {
        "MODELIMPORT_FAULTS": f"read.bytes>={8 << 20}:pause",
        "MODELIMPORT_FAULT_MARKER": str(marker),
    }
    args = ["--library", lib, "import", source, "--yes", "--json", *(["--move"] if move else [])]
    proc = start_cli(*args, env=env)
    _wait_for(marker, proc)
    change(source)  # while the import holds its first 8 MiB
    marker.unlink()
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 1, err
    [result] = json.loads(out)["results"]
    assert result["status"] == "failed"
    assert result["error"].startswith("dl.safetensors changed while it was being imported")
    _assert_library_empty(lib)
    assert source.exists()  # a moved source is back where it was, with its new content


def test_progress_is_json_lines_on_stderr_with_json(tmp_path: Path):
    source = make_safetensors(tmp_path / "m.safetensors")
    run = run_cli("--library", tmp_path / "lib", "import", source, "--yes", "--json")
    events = [json.loads(line) for line in run.stderr.splitlines()]
    stages = [e["stage"] for e in events if e["item"] == "m.safetensors"]
    assert stages == ["identifying", "copying", "writing metadata", "indexing", "complete"]
    assert json.loads(run.stdout)["summary"]["imported"] == 1
