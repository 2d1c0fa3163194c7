"""Where the filesystem can clone, the import clones instead of copying, and still hashes
every byte once: nothing is written, no space is used twice, the digests are exact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
from cli import kill_at_fault, library_files, run_cli
from factories import make_safetensors

SIZE = 64 << 20


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def _model(path: Path) -> Path:
    return make_safetensors(path, {"w": ("U8", [SIZE])}, fill=os.urandom(1 << 20))


def test_import_on_a_cloning_filesystem_shares_blocks_and_hashes_exactly(reflink_dir: Path):
    work = reflink_dir / "import"
    work.mkdir()
    source = _model(work / "big.safetensors")
    data = source.read_bytes()
    lib = work / "lib"
    run_cli("--library", lib, "status")  # the library's own files exist before measuring
    os.sync()
    free_before = _free_bytes(reflink_dir)

    run = run_cli("--library", lib, "import", source, "--yes", "--json")

    assert run.code == 0, run.stderr
    [entry] = run.json["results"][0]["files"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["blake3"] == blake3.blake3(data).hexdigest()
    [copy] = [p for p in library_files(lib) if p.name == "big.safetensors"]
    assert copy.read_bytes() == data
    os.sync()
    # A copy would have taken SIZE bytes; the clone takes metadata only.
    assert free_before - _free_bytes(reflink_dir) < SIZE // 4
    # Copy-on-write: changing the source later leaves the library's bytes as they were.
    with open(source, "r+b") as fh:
        fh.seek(-4096, os.SEEK_END)
        fh.write(b"\xff" * 4096)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == entry["sha256"]


def test_sigkill_while_hashing_a_clone_leaves_nothing(reflink_dir: Path):
    work = reflink_dir / "kill"
    work.mkdir()
    source = _model(work / "big.safetensors")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    lib = work / "lib"
    kill_at_fault("--library", lib, "import", source, "--yes",
                  fault=f"copy.bytes>={16 << 20}:hang", marker=work / "marker")  # fmt: skip

    status = run_cli("--library", lib, "status", "--json")
    assert status.json["models"] == 0
    assert library_files(lib) == []
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
