"""Hashes of local files for identification: the fast hash (head + tail + size) and full SHA256.

The fast hash reads at most 16 MiB whatever the file size, so a file seen before is
recognised without reading it whole.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FAST_HASH_CHUNK = 8 * 1024 * 1024
READ_CHUNK = 8 * 1024 * 1024


def fast_hash(path: Path) -> str:
    """SHA256 of the first 8 MiB + the last 8 MiB (not overlapping) + str(size)."""
    size = path.stat().st_size
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        hasher.update(fh.read(FAST_HASH_CHUNK))
        if size > FAST_HASH_CHUNK:
            fh.seek(max(FAST_HASH_CHUNK, size - FAST_HASH_CHUNK))
            hasher.update(fh.read(FAST_HASH_CHUNK))
    hasher.update(str(size).encode())
    return hasher.hexdigest()


def sha256_file(path: Path) -> str:
    """Full SHA256 in 8 MiB chunks (hashlib releases the GIL on large updates)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
