"""Hashing: SHA256 and BLAKE3 of every byte, computed in the same single read as the copy.

Reading, SHA256, BLAKE3 and writing overlap in threads (hashlib, blake3 and file I/O
release the GIL on large buffers). Chunks live in a fixed pool of reusable buffers, so
memory stays bounded by CHUNK_SIZE * POOL_SIZE whatever the file size, and a slow consumer
throttles the reader instead of letting the queue grow.

SHA256 of one stream cannot be split across cores, so it is the floor: on a SHA-NI machine
it runs at about 1.5-1.7 GB/s, close to what a copy costs. Everything else is arranged to
hide behind it (figures and the measurements behind each choice: bench/RESULTS.md):

- the destination is written with O_DIRECT (macOS: F_NOCACHE; see `fastpaths`) from
  page-aligned buffers: no copy into the page cache, no dirty pages left for the closing
  fsync, no cache flooded by a 100 GB import. Where O_DIRECT is refused (platform,
  filesystem, alignment, the file's tail),
  writes are buffered and their writeback is started at once (`sync_file_range`) and
  waited for a bounded window behind, so the fsync stays short there too;
- BLAKE3 runs single-threaded in its own thread: its Rust thread pool gains nothing (SHA256
  is the bottleneck) and would compete for the core SHA256 needs;
- a file of at most SMALL_FILE bytes is done in the calling thread: for a 1 MiB file,
  starting three threads would cost more than hashing it;
- where the filesystem can clone (XFS with reflink, btrfs: `FICLONE`; APFS: `clonefile`;
  ReFS and Dev Drive: block cloning; see `fastpaths`), the destination is a clone of the
  source and is then read once to hash it: nothing is written, no space is used twice, and
  the hashes come from exactly one read of the bytes now in the library
  (measured 1.6-2.5x faster than the copy on XFS from a cold cache). Elsewhere (ext4, another
  filesystem) the clone is refused at once and the file is copied as above.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import mmap
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from modelimport.fastpaths import O_BINARY, clone_new_file, set_uncached
from modelimport.faults import fault_point

CHUNK_SIZE = 8 * 1024 * 1024
POOL_SIZE = 6
# Files up to this size are copied and hashed in the calling thread.
SMALL_FILE = 4 * 1024 * 1024
FAST_HASH_SPAN = 8 * 1024 * 1024
# Bytes written but not yet known to be on disk, per file, before the writer waits.
WRITEBACK_WINDOW = 64 * 1024 * 1024
WRITEBACK = True  # buffered writes: start writeback early (sync_file_range)
DIRECT_IO = True  # write the destination with O_DIRECT where the filesystem allows it
CLONE = True  # clone (reflink) instead of copying where the filesystem can
_DIRECT_ALIGN = 4096  # offsets and lengths of O_DIRECT writes are multiples of this

BytesCallback = Callable[[int], None]

_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4


@dataclass(frozen=True)
class FileDigests:
    size: int
    sha256: str
    blake3: str


class _Chunk:
    __slots__ = ("buf", "length", "pending", "lock")

    def __init__(self, size: int) -> None:
        # Anonymous mmap: page-aligned, as O_DIRECT wants, and pages are only committed
        # when first written, so a pool sized for a big file costs nothing on a small one.
        self.buf = mmap.mmap(-1, size)
        self.length = 0
        self.pending = 0
        self.lock = threading.Lock()


_STOP = None


def _consume(
    inbox: queue.Queue[_Chunk | None],
    free: queue.Queue[_Chunk],
    work: Callable[[memoryview], None],
    failures: list[BaseException],
) -> None:
    while True:
        chunk = inbox.get()
        if chunk is _STOP:
            return
        try:
            if not failures:
                work(memoryview(chunk.buf)[: chunk.length])
        except BaseException as exc:  # noqa: BLE001 - re-raised by the reader thread
            failures.append(exc)
        finally:
            with chunk.lock:
                chunk.pending -= 1
                done = chunk.pending == 0
            if done:
                free.put(chunk)


def _pipeline(
    source: Path | int,
    sinks: list[Callable[[memoryview], None]],
    on_bytes: BytesCallback | None,
) -> int:
    """Read `source` (a path, or a descriptor the caller opened and checked, read from its
    start and left open) once and feed every chunk to each sink; return the number of bytes.

    A file of at most one chunk is handled in the calling thread (three thread start-ups
    would cost more than its hashing); a bigger one gets one thread per sink.
    """
    if isinstance(source, int):
        os.lseek(source, 0, os.SEEK_SET)
    with open(source, "rb", buffering=0, closefd=not isinstance(source, int)) as fh:
        _advise_sequential(fh.fileno())
        size = os.fstat(fh.fileno()).st_size
        if size <= SMALL_FILE:
            return _inline(fh, sinks, on_bytes, size)
        return _threaded(fh, sinks, on_bytes)


def _inline(
    fh: BinaryIO,
    sinks: list[Callable[[memoryview], None]],
    on_bytes: BytesCallback | None,
    size: int,
) -> int:
    chunk = _Chunk(max(_DIRECT_ALIGN, -(-size // _DIRECT_ALIGN) * _DIRECT_ALIGN))
    total = 0
    while length := _fill(fh, chunk.buf):  # loops only if the file grew since fstat
        total += length
        fault_point("read.bytes", total)
        view = memoryview(chunk.buf)[:length]
        for sink in sinks:
            sink(view)
        del view
        if on_bytes is not None:
            on_bytes(total)
    return total


def _threaded(
    fh: BinaryIO,
    sinks: list[Callable[[memoryview], None]],
    on_bytes: BytesCallback | None,
) -> int:
    free: queue.Queue[_Chunk] = queue.Queue()
    for _ in range(POOL_SIZE):
        free.put(_Chunk(CHUNK_SIZE))
    inboxes: list[queue.Queue[_Chunk | None]] = [queue.Queue() for _ in sinks]
    failures: list[BaseException] = []
    workers = [
        threading.Thread(target=_consume, args=(box, free, sink, failures), daemon=True)
        for box, sink in zip(inboxes, sinks, strict=True)
    ]
    for worker in workers:
        worker.start()
    total = 0
    try:
        while not failures:
            chunk = free.get()
            chunk.length = _fill(fh, chunk.buf)
            if chunk.length == 0:
                free.put(chunk)
                break
            total += chunk.length
            fault_point("read.bytes", total)
            chunk.pending = len(sinks)
            for box in inboxes:
                box.put(chunk)
            if on_bytes is not None:
                on_bytes(total)
    finally:
        for box in inboxes:
            box.put(_STOP)
        for worker in workers:
            worker.join()
    if failures:
        raise failures[0]
    return total


def _fill(fh: BinaryIO, buf: mmap.mmap) -> int:
    """Read into the whole of `buf` unless the file ends first (whole chunks stay aligned)."""
    view = memoryview(buf)
    filled = 0
    while filled < len(view):
        got = fh.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


def _advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):  # advice only; some filesystems refuse it
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


@functools.cache
def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range (Linux only; the os module does not expose it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


class _Writeback:
    """Start writeback of each written range at once; wait for it a window behind.

    Only a speed and memory measure: durability still comes from the fsync at the end.
    Any error here switches it off for the file (the fsync reports real I/O errors).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sync_range = _load_sync_file_range() if WRITEBACK else None
        self.in_flight: deque[tuple[int, int]] = deque()
        self.in_flight_bytes = 0

    def written(self, offset: int, length: int) -> None:
        if self.sync_range is None:
            return
        if self.sync_range(self.fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:
            self.sync_range = None
            return
        self.in_flight.append((offset, length))
        self.in_flight_bytes += length
        while self.in_flight_bytes > WRITEBACK_WINDOW:
            old_offset, old_length = self.in_flight.popleft()
            self.in_flight_bytes -= old_length
            flags = (
                _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER
            )
            if self.sync_range(self.fd, old_offset, old_length, flags) != 0:
                self.sync_range = None
                return
            if hasattr(os, "posix_fadvise"):
                with contextlib.suppress(OSError):
                    os.posix_fadvise(self.fd, old_offset, old_length, os.POSIX_FADV_DONTNEED)


class _Writer:
    """Sink that appends each chunk to `fd`, with O_DIRECT where the filesystem allows it.

    O_DIRECT sends the pool buffers straight to the device: no copy into the page cache, no
    dirty pages for the closing fsync to flush, nothing evicted from the cache (measured:
    half the system time of buffered writes). The tail of a file, a misaligned chunk, or a
    filesystem that turns O_DIRECT down falls back to buffered writes, whose writeback is
    started early by _Writeback.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.total = 0
        self.direct = DIRECT_IO and set_uncached(fd, True)
        self.writeback: _Writeback | None = None if self.direct else _Writeback(fd)

    def __call__(self, view: memoryview) -> None:
        offset = self.total
        self.total += len(view)
        fault_point("copy.bytes", self.total)
        if self.direct and (offset | len(view)) % _DIRECT_ALIGN:
            self._buffered()
        rest = view
        while rest:
            try:
                written = os.write(self.fd, rest)
            except OSError as exc:
                if not (self.direct and exc.errno == errno.EINVAL):
                    raise
                self._buffered()  # the device wants another alignment: no O_DIRECT then
                continue
            rest = rest[written:]
        if self.writeback is not None:
            self.writeback.written(offset, len(view))

    def _buffered(self) -> None:
        set_uncached(self.fd, False)
        self.direct = False
        self.writeback = _Writeback(self.fd)


def copy_and_hash(
    source: Path | int, destination: Path, on_bytes: BytesCallback | None = None
) -> FileDigests:
    """Copy `source` (a path, or a descriptor the caller opened and checked) to a new file
    `destination` (must not exist), hashing in the same read.

    The destination is fsynced before returning, so a later rename publishes whole bytes.
    Its mode is never wider than the source's: a private (0600) file stays private.
    """
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    source_mode = os.fstat(source).st_mode if isinstance(source, int) else os.stat(source).st_mode
    mode = copy_mode(source_mode)
    if CLONE and clone_new_file(source, destination, mode):
        # The clone shares the source's blocks: hashing it is the one read of those bytes.
        size = _pipeline(destination, [sha.update, b3.update, _CloneProgress()], on_bytes)
        # Read-only is enough to fsync on Linux and macOS (a clone keeps the source's mode,
        # which may be read-only); Windows flushes only a handle that may write.
        fd = os.open(destination, (os.O_WRONLY if os.name == "nt" else os.O_RDONLY) | O_BINARY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return FileDigests(size, sha.hexdigest(), b3.hexdigest())
    # O_DIRECT is set afterwards: on some filesystems open(O_CREAT|O_DIRECT) creates the
    # file and then fails.
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, mode)
    try:
        size = _pipeline(source, [sha.update, b3.update, _Writer(fd)], on_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    return FileDigests(size, sha.hexdigest(), b3.hexdigest())


def copy_mode(source_mode: int) -> int:
    """The mode of a library copy: readable and writable by its owner, readable by group and
    others only where the source is (then the umask applies, as for any new file)."""
    return 0o600 | (source_mode & 0o044)


class _CloneProgress:
    """Where a clone replaces the writes, still pass the copy's fault point per chunk, so
    the crash tests stop a clone at the same places as a copy."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, view: memoryview) -> None:
        self.total += len(view)
        fault_point("copy.bytes", self.total)


def hash_file(path: Path | int, on_bytes: BytesCallback | None = None) -> FileDigests:
    """SHA256 and BLAKE3 of a file in one read (used by same-filesystem moves)."""
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    size = _pipeline(path, [sha.update, b3.update], on_bytes)
    return FileDigests(size, sha.hexdigest(), b3.hexdigest())


def blake3_file(path: Path | int, on_bytes: BytesCallback | None = None) -> str:
    """BLAKE3 of a file (a path or an open descriptor), re-read for `verify`: here BLAKE3 is
    the only work, so its own thread pool hashes each 8 MiB chunk on every core while the
    next chunk is read."""
    b3 = blake3.blake3(max_threads=blake3.blake3.AUTO)
    _pipeline(path, [b3.update], on_bytes)
    return b3.hexdigest()


def fast_hash(path: Path) -> str:
    """SHA256 of the first and last 8 MiB plus the size: recognises a file without reading it."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        sha.update(fh.read(FAST_HASH_SPAN))
        if size > 2 * FAST_HASH_SPAN:
            fh.seek(-FAST_HASH_SPAN, os.SEEK_END)
            sha.update(fh.read(FAST_HASH_SPAN))
        elif size > FAST_HASH_SPAN:
            sha.update(fh.read())
    sha.update(str(size).encode())
    return sha.hexdigest()
