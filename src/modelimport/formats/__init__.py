"""Model file formats: validate a file by its content and read what it says about itself.

`inspect_file` is the one entry point: it reads a bounded amount of the file, never
unpickles, and either returns `FileFacts` or raises `InvalidModelFile` with one sentence.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.errors import InvalidModelFile

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class FileFacts:
    """What one file says about itself; `details` is JSON-serialisable and goes to metadata.json."""

    path: Path
    format: str  # "safetensors" | "gguf" | "torch-zip" | "pickle"
    size: int
    details: dict[str, Any] = field(default_factory=dict)


def inspect_file(path: Path) -> FileFacts:
    size = path.stat().st_size
    if size == 0:
        raise InvalidModelFile(f"{path.name} is empty.")
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head[:4] == b"GGUF":
            return FileFacts(path, "gguf", size, {})
        if head[:4] == b"PK\x03\x04":
            return _inspect_zip(path, size)
        if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
            return FileFacts(path, "pickle", size, {})
        if len(head) == 8:
            (length,) = struct.unpack("<Q", head)
            if 2 <= length <= min(size - 8, MAX_SAFETENSORS_HEADER):
                raw = fh.read(length)
                try:
                    header = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    header = None
                if isinstance(header, dict):
                    return FileFacts(path, "safetensors", size, {"tensor_count": len(header)})
    raise InvalidModelFile(f"{path.name} is not a safetensors, GGUF or PyTorch file.")


def _inspect_zip(path: Path, size: int) -> FileFacts:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile as exc:
        raise InvalidModelFile(f"{path.name} is a damaged ZIP archive.") from exc
    if not any(n.endswith("data.pkl") for n in names):
        raise InvalidModelFile(f"{path.name} is a ZIP archive but not a PyTorch checkpoint.")
    return FileFacts(path, "torch-zip", size, {"entries": len(names)})
