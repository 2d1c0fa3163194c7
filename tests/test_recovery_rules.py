"""Recovery's rules about the person's own files (library/staging.py), each pinned by a
test that fails if the rule is dropped (issue 25's mutations):
- a moved file goes back to its source path only if nothing is there now: a file the person
  re-created there is never renamed over;
- after the commit of a cross-filesystem move, a source is deleted only if it is exactly as
  it was read (size and mtime, as rsync decides) and its bytes are in the library.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli import library_files, run_cli
from test_crash_recovery import _big_model, _kill_at, _sha256


def test_recovery_never_renames_over_a_file_recreated_at_the_source_path(tmp_path: Path):
    source = _big_model(tmp_path / "big.safetensors", size=8 << 20)
    digest = _sha256(source)
    lib = tmp_path / "lib"
    _kill_at(
        "move.after_rename:hang", tmp_path / "marker",
        "--library", lib, "import", source, "--move", "--yes",
    )  # fmt: skip
    assert not source.exists()  # in staging when the process died
    source.write_text("the person's new work, saved under the old name")

    status = run_cli("--library", lib, "status")
    assert status.code == 0
    assert "exists again" in status.stderr  # said, in one sentence
    assert source.read_text() == "the person's new work, saved under the old name"
    [kept] = [p for p in (lib / ".modelimport" / "staging").rglob("big.safetensors")]
    assert _sha256(kept) == digest  # the moved bytes are kept, not lost
    assert library_files(lib) == []


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm as a second filesystem")
@pytest.mark.parametrize("change", ["none", "mtime", "bytes"])
def test_recovery_deletes_a_source_after_a_committed_move_only_if_unchanged(
    tmp_path: Path, change: str
):
    shm = Path(f"/dev/shm/modelimport-test-{os.getpid()}-{change}")
    shm.mkdir(exist_ok=True)
    try:
        source = _big_model(shm / "x.safetensors", size=4 << 20)
        lib = tmp_path / "lib"
        _kill_at(
            "move.before_delete:hang", tmp_path / "marker",
            "--library", lib, "import", source, "--move", "--yes",
        )  # fmt: skip
        if change == "mtime":  # saved again with the same bytes: changed, as rsync sees it
            st = source.stat()
            os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        elif change == "bytes":
            with open(source, "r+b") as fh:
                fh.seek(1 << 20)
                fh.write(b"edited")
        content = _sha256(source)

        status = run_cli("--library", lib, "status", "--json")
        assert status.code == 0, status.stderr
        assert status.json["models"] == 1  # the committed model is completed
        if change == "none":
            assert not source.exists()  # the move is finished: the library holds its bytes
        else:
            assert source.exists() and _sha256(source) == content
    finally:
        subprocess.run(["rm", "-rf", str(shm)], check=False)
