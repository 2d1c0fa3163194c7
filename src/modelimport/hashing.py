"""Hashing: SHA256 and BLAKE3 of every byte, computed in the same single read as the copy.

Reading, SHA256, BLAKE3 and writing overlap in threads (hashlib, blake3 and file I/O
release the GIL on large buffers). Chunks live in a fixed pool of reusable buffers, so
memory stays bounded by CHUNK_SIZE * POOL_SIZE whatever the file size, and a slow consumer
throttles the reader instead of letting the queue grow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

from modelimport.faults import fault_point

CHUNK_SIZE = 8 * 1024 * 1024
POOL_SIZE = 6
FAST_HASH_SPAN = 8 * 1024 * 1024

BytesCallback = Callable[[int], None]


@dataclass(frozen=True)
class FileDigests:
    size: int
    sha256: str
    blake3: str


class _Chunk:
    __slots__ = ("buf", "length", "pending", "lock")

    def __init__(self) -> None:
        self.buf = bytearray(CHUNK_SIZE)
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
    source: Path,
    sinks: list[Callable[[memoryview], None]],
    on_bytes: BytesCallback | None,
) -> int:
    """Read `source` once and feed every chunk to each sink in its own thread; return size."""
    free: queue.Queue[_Chunk] = queue.Queue()
    for _ in range(POOL_SIZE):
        free.put(_Chunk())
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
        with open(source, "rb", buffering=0) as fh:
            _advise_sequential(fh.fileno())
            while not failures:
                chunk = free.get()
                chunk.length = fh.readinto(chunk.buf) or 0
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


def _advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):  # advice only; some filesystems refuse it
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def _writer(fd: int) -> Callable[[memoryview], None]:
    written_total = 0

    def write(view: memoryview) -> None:
        nonlocal written_total
        written_total += len(view)
        fault_point("copy.bytes", written_total)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    return write


def copy_and_hash(
    source: Path, destination: Path, on_bytes: BytesCallback | None = None
) -> FileDigests:
    """Copy `source` to a new file `destination` (must not exist), hashing in the same read.

    The destination is fsynced before returning, so a later rename publishes whole bytes.
    """
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        size = _pipeline(source, [sha.update, b3.update, _writer(fd)], on_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    return FileDigests(size, sha.hexdigest(), b3.hexdigest())


def hash_file(path: Path, on_bytes: BytesCallback | None = None) -> FileDigests:
    """SHA256 and BLAKE3 of a file in one read (used by same-filesystem moves)."""
    sha = hashlib.sha256()
    b3 = blake3.blake3()
    size = _pipeline(path, [sha.update, b3.update], on_bytes)
    return FileDigests(size, sha.hexdigest(), b3.hexdigest())


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
