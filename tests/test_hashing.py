"""hashing: the single-pass copy+SHA256+BLAKE3 gives the digests of exactly the bytes read.

Digests are checked against hashlib and the blake3 package over the same bytes (and against
the independent `b3sum` when it is installed), at the sizes where chunking can go wrong,
through every write path (O_DIRECT, its fallbacks, buffered), and a failure in any stage
must surface as the original error with no thread left behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import blake3
import pytest

from modelimport import fastpaths, faults, hashing

SMALL_CHUNK = 64 * 1024


def _expected(data: bytes) -> hashing.FileDigests:
    return hashing.FileDigests(
        len(data), hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest()
    )


def _write(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """64 KiB chunks and a 3-chunk pool, so multi-chunk cases stay small and fast."""
    monkeypatch.setattr(hashing, "CHUNK_SIZE", SMALL_CHUNK)
    monkeypatch.setattr(hashing, "SMALL_FILE", SMALL_CHUNK)
    monkeypatch.setattr(hashing, "POOL_SIZE", 3)
    return SMALL_CHUNK


@pytest.fixture
def fault_env(monkeypatch: pytest.MonkeyPatch):
    """Set MODELIMPORT_FAULTS for this test (the plan is cached per process)."""

    def set_faults(spec: str) -> None:
        monkeypatch.setenv(faults.ENV, spec)
        faults._plan.cache_clear()

    yield set_faults
    monkeypatch.delenv(faults.ENV, raising=False)
    faults._plan.cache_clear()


def _threads_settle(before: int) -> int:
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


EDGE_SIZES = [
    0,
    1,
    4095,
    4096,
    SMALL_CHUNK - 1,
    SMALL_CHUNK,
    SMALL_CHUNK + 1,
    3 * SMALL_CHUNK,
    5 * SMALL_CHUNK + 4097,
]


@pytest.mark.parametrize("size", EDGE_SIZES)
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_copy_and_hash_edge_sizes(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch, size: int, direct: bool
):
    monkeypatch.setattr(hashing, "DIRECT_IO", direct)
    data = _write(tmp_path / "src", size)
    seen: list[int] = []
    digests = hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst", seen.append)
    assert digests == _expected(data)
    assert (tmp_path / "dst").read_bytes() == data
    assert seen == sorted(seen)
    assert seen[-1:] == ([size] if size else [])


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_hash_file_edge_sizes(tmp_path: Path, small_chunks: int, size: int):
    data = _write(tmp_path / "src", size)
    assert hashing.hash_file(tmp_path / "src") == _expected(data)


@pytest.mark.parametrize(
    "size",
    [hashing.CHUNK_SIZE, hashing.CHUNK_SIZE + 1, 3 * hashing.CHUNK_SIZE + 12345],
    ids=["one-chunk", "chunk+1", "several-chunks"],
)
def test_real_chunk_size(tmp_path: Path, size: int):
    """The shipped chunk and pool sizes, with O_DIRECT where this filesystem allows it."""
    data = _write(tmp_path / "src", size)
    digests = hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    assert digests == _expected(data)
    assert (tmp_path / "dst").read_bytes() == data
    assert hashing.hash_file(tmp_path / "dst") == digests


@pytest.mark.skipif(shutil.which("b3sum") is None, reason="b3sum not installed")
def test_blake3_matches_b3sum(tmp_path: Path):
    size = 2 * hashing.CHUNK_SIZE + 777
    _write(tmp_path / "src", size)
    digests = hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    out = subprocess.run(
        ["b3sum", "--no-names", str(tmp_path / "dst")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digests.blake3


def test_destination_must_not_exist(tmp_path: Path):
    _write(tmp_path / "src", 10)
    (tmp_path / "dst").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_bytes() == b"keep"


def test_misaligned_chunks_fall_back_to_buffered_writes(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch
):
    """A device wanting a bigger alignment than our chunks: buffered writes, same bytes."""
    monkeypatch.setattr(hashing, "_DIRECT_ALIGN", 3 * SMALL_CHUNK)
    data = _write(tmp_path / "src", 4 * SMALL_CHUNK + 5)
    assert hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst") == _expected(data)
    assert (tmp_path / "dst").read_bytes() == data


def test_einval_on_direct_write_falls_back(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch
):
    """A filesystem that accepts O_DIRECT but refuses the write: rewritten buffered."""
    fcntl = pytest.importorskip("fcntl", reason="O_DIRECT is a Linux flag")
    real_write = os.write
    refused: list[int] = []

    def write(fd: int, data) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(hashing.os, "write", write)
    data = _write(tmp_path / "src", 3 * SMALL_CHUNK + 1)
    assert hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst") == _expected(data)
    assert (tmp_path / "dst").read_bytes() == data
    assert len(refused) <= 1  # refused once, then buffered for the rest of the file


def test_no_sync_file_range_still_copies(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(hashing, "DIRECT_IO", False)
    monkeypatch.setattr(hashing, "_load_sync_file_range", lambda: None)
    data = _write(tmp_path / "src", 4 * SMALL_CHUNK + 3)
    assert hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst") == _expected(data)


def test_writeback_window_smaller_than_a_chunk(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(hashing, "DIRECT_IO", False)
    monkeypatch.setattr(hashing, "WRITEBACK_WINDOW", 1)
    data = _write(tmp_path / "src", 6 * SMALL_CHUNK + 3)
    assert hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst") == _expected(data)


@pytest.mark.parametrize("size", [SMALL_CHUNK // 2, 6 * SMALL_CHUNK], ids=["inline", "threaded"])
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_destination_write_error_propagates_without_hung_threads(
    tmp_path: Path,
    small_chunks: int,
    fault_env,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    direct: bool,
):
    monkeypatch.setattr(hashing, "DIRECT_IO", direct)
    _write(tmp_path / "src", size)
    fault_env(f"copy.bytes>={min(size, 2 * SMALL_CHUNK)}:enospc")
    before = threading.active_count()
    with pytest.raises(OSError) as info:
        hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    assert info.value.errno == errno.ENOSPC
    assert _threads_settle(before) == before


def test_read_error_propagates_without_hung_threads(tmp_path: Path, small_chunks: int, fault_env):
    _write(tmp_path / "src", 8 * SMALL_CHUNK)
    fault_env(f"read.bytes>={3 * SMALL_CHUNK}:eacces")
    before = threading.active_count()
    with pytest.raises(PermissionError):
        hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    with pytest.raises(PermissionError):
        hashing.hash_file(tmp_path / "src")
    assert _threads_settle(before) == before


def test_failing_progress_callback_stops_the_pipeline(tmp_path: Path, small_chunks: int):
    _write(tmp_path / "src", 8 * SMALL_CHUNK)
    before = threading.active_count()

    def on_bytes(done: int) -> None:
        if done >= 2 * SMALL_CHUNK:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst", on_bytes)
    assert _threads_settle(before) == before


def test_failing_hash_sink_propagates(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch
):
    """A sink raising mid-stream (here BLAKE3) is re-raised by the caller; threads end."""

    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def update(self, data) -> None:
            self.calls += 1
            if self.calls == 2:
                raise MemoryError("boom")

        def hexdigest(self) -> str:
            return ""

    monkeypatch.setattr(hashing.blake3, "blake3", Broken)
    _write(tmp_path / "src", 8 * SMALL_CHUNK)
    before = threading.active_count()
    with pytest.raises(MemoryError, match="boom"):
        hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    assert _threads_settle(before) == before


def test_fast_hash(tmp_path: Path):
    span = hashing.FAST_HASH_SPAN
    data = bytearray(os.urandom(3 * span))
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data)
    assert hashing.fast_hash(tmp_path / "a") == hashing.fast_hash(tmp_path / "b")
    data[-1] ^= 1
    (tmp_path / "b").write_bytes(data)
    assert hashing.fast_hash(tmp_path / "a") != hashing.fast_hash(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"")
    assert hashing.fast_hash(tmp_path / "c") == hashlib.sha256(b"0").hexdigest()


@pytest.mark.parametrize("spans", [0.5, 1.5, 2.5, 3.5])
def test_fast_hash_is_the_first_and_last_8_mib_and_the_size(tmp_path: Path, spans: float):
    """The index keeps fast hashes: what one is must not change between versions, or a
    library's duplicates are no longer found (the middle of a big file is never read)."""
    span = hashing.FAST_HASH_SPAN
    data = os.urandom(int(spans * span))
    (tmp_path / "f").write_bytes(data)
    read = data if len(data) <= 2 * span else data[:span] + data[-span:]
    expected = hashlib.sha256(read + str(len(data)).encode()).hexdigest()
    assert hashing.fast_hash(tmp_path / "f") == expected


def test_hash_file_reports_every_byte_it_reads(tmp_path: Path):
    size = 2 * hashing.CHUNK_SIZE + 12345
    _write(tmp_path / "f", size)
    seen: list[int] = []
    digests = hashing.hash_file(tmp_path / "f", on_bytes=seen.append)
    assert digests == hashing.hash_file(tmp_path / "f")
    # Bytes done so far, growing, up to the whole file: the progress bar reaches the end.
    assert seen == sorted(seen) and seen[-1] == size


def test_memory_is_bounded_by_the_pool(
    tmp_path: Path, small_chunks: int, monkeypatch: pytest.MonkeyPatch
):
    """However many chunks the file has, only POOL_SIZE buffers are ever allocated."""
    created: list[int] = []
    real_chunk = hashing._Chunk

    def counting_chunk(size: int) -> hashing._Chunk:
        created.append(size)
        return real_chunk(size)

    monkeypatch.setattr(hashing, "_Chunk", counting_chunk)
    data = _write(tmp_path / "src", 40 * SMALL_CHUNK + 1)
    assert hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst") == _expected(data)
    assert hashing.hash_file(tmp_path / "src") == _expected(data)
    assert len(created) == 2 * hashing.POOL_SIZE
    assert set(created) == {SMALL_CHUNK}


def test_direct_io_stays_on_for_aligned_chunks(tmp_path: Path):
    """Where the filesystem takes O_DIRECT, whole chunks never fall back to buffered."""
    fd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        writer = hashing._Writer(fd)
        if not writer.direct:
            pytest.skip("this filesystem or platform refuses O_DIRECT")
        chunk = hashing._Chunk(hashing._DIRECT_ALIGN * 4)
        chunk.buf.write(os.urandom(len(chunk.buf)))
        writer(memoryview(chunk.buf))
        writer(memoryview(chunk.buf))
        assert writer.direct
        writer(memoryview(chunk.buf)[:100])  # the tail
        assert not writer.direct
        os.fsync(fd)
    finally:
        os.close(fd)
    data = bytes(chunk.buf)
    assert (tmp_path / "dst").read_bytes() == data + data + data[:100]


def test_blake3_file_is_the_blake3_of_every_byte(tmp_path: Path):
    """What `verify` recomputes: the same digest as the copy recorded, with its progress."""
    size = 2 * hashing.CHUNK_SIZE + 4321
    data = _write(tmp_path / "f", size)
    seen: list[int] = []
    assert hashing.blake3_file(tmp_path / "f", on_bytes=seen.append) == (
        blake3.blake3(data).hexdigest())
    assert seen[-1] == size


def test_can_clone_tells_a_filesystem_that_clones_from_one_that_cannot(
    small_fs: Path, reflink_dir: Path
):
    assert fastpaths.can_clone(reflink_dir) is True  # XFS with reflink
    assert fastpaths.can_clone(small_fs) is False  # ext4 (or tmpfs): no clones
