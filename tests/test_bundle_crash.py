"""A SIGKILL during the --move of a bundle leaves it whole at its source or whole in the
library, never split, and the next command finishes the job (recovery in library.staging).

The bundle is the real all-MiniLM-L6-v2 folder (see test_bundles.py), moved on the same
filesystem (files renamed one by one into staging) and across filesystems (/dev/shm: copied,
sources deleted after the commit). Fault points (modelimport.faults) stop the import at
each stage; the test kills it there, the way a power cut or the OOM killer would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli import run_cli
from test_bundles import hf_download_folder, tree
from test_crash_recovery import _kill_at

LEFT_OUT = ".cache"


def _state(lib: Path, source: Path, original: dict[str, str]) -> str:
    """'source' if the bundle is whole where it was and the library holds nothing,
    'library' if it is whole in the library and gone from its source; fails otherwise."""
    status = run_cli("--library", lib, "status", "--json")  # runs recovery first
    assert status.code == 0, status.stderr
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    metadata = list(lib.glob("*/*/*/metadata.json"))
    if status.json["models"] == 0:
        assert metadata == []
        assert tree(source) == original
        return "source"
    [meta] = metadata
    record = json.loads(meta.read_text())
    assert status.json["models"] == 1
    assert tree(meta.parent, skip=("metadata.json",)) == {
        k: v for k, v in original.items() if not k.startswith(LEFT_OUT + "/")
    }
    assert {f["name"]: f["sha256"] for f in record["files"]} == tree(
        meta.parent, skip=("metadata.json",)
    )
    # Nothing of the model is left at the source: only what was left out, and no empty folder.
    assert sorted(tree(source)) == sorted(k for k in original if k.startswith(LEFT_OUT + "/"))
    assert not (source / "1_Pooling").exists()
    return "library"


# fault point -> where the bundle must be after the kill and the next command
POINTS = [
    ("move.after_rename>=1:hang", "source"),  # the first file renamed into staging
    ("move.after_rename>=7:hang", "source"),  # half the tree moved
    (f"read.bytes>={32 << 20}:hang", "source"),  # hashing the weights, configs already moved
    ("commit.after_rename:hang", "library"),  # in the library, not yet indexed
    ("move.before_prune:hang", "library"),  # indexed, emptied folders not yet removed
]


@pytest.mark.parametrize(("fault", "expected"), POINTS, ids=[p[0] for p in POINTS])
def test_sigkill_during_a_bundle_move_leaves_it_whole(tmp_path: Path, fault: str, expected: str):
    source = hf_download_folder(tmp_path / "dl")
    original = tree(source)
    lib = tmp_path / "lib"

    _kill_at(fault, tmp_path / "marker", "--library", lib, "import", source, "--move", "--yes")

    assert _state(lib, source, original) == expected
    if expected == "source":  # the next import moves it whole
        again = run_cli("--library", lib, "import", source, "--move", "--yes", "--json")
        assert again.code == 0, again.stderr
        assert _state(lib, source, original) == "library"


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm as a second filesystem")
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (f"copy.bytes>={32 << 20}:hang", "source"),  # copying the weights
        ("move.before_delete:hang", "library"),  # committed; no source deleted yet
    ],
)
def test_sigkill_during_a_cross_filesystem_bundle_move(tmp_path: Path, fault: str, expected: str):
    shm = Path(f"/dev/shm/modelimport-bundle-{os.getpid()}")
    shm.mkdir(exist_ok=True)
    try:
        source = hf_download_folder(shm)
        original = tree(source)
        lib = tmp_path / "lib"
        _kill_at(fault, tmp_path / "marker", "--library", lib, "import", source, "--move", "--yes")
        assert _state(lib, source, original) == expected
    finally:
        subprocess.run(["rm", "-rf", str(shm)], check=False)
