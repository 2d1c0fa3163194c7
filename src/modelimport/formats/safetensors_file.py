"""safetensors: an 8-byte little-endian header length N, N bytes of JSON, then tensor data.

Only the header is read. Its length is checked against the file size and a cap before it is
read, and every tensor's data range is checked against the data that follows the header.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, TensorInfo

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_METADATA_VALUE_CHARS = 4096  # kohya's ss_tag_frequency and the like can be huge

# Bytes per element, by the dtype names the safetensors format defines.
DTYPE_BYTES: dict[str, float] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "F6_E2M3": 0.75, "F6_E3M2": 0.75, "F4": 0.5,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "C64": 8,
}

# What a file that is not safetensors at all tends to start with (a failed download).
TEXT_STARTS = (b"<!", b"<h", b"<H", b"<?xml", b"{", b"Entry not found", b"404", b"Access")


def inspect_safetensors(path: Path, size: int, head: bytes) -> FileFacts:
    name = path.name
    if head.lstrip().startswith(TEXT_STARTS):
        raise InvalidModelFile(
            f"{name} is a text or HTML page (perhaps a failed download), not a model file."
        )
    (length,) = struct.unpack("<Q", head)
    if length > size - 8:
        raise InvalidModelFile(
            f"{name} is not a valid safetensors file: its header claims {length} bytes "
            f"but the file holds only {size} bytes."
        )
    if length > MAX_HEADER_BYTES:
        raise InvalidModelFile(
            f"{name} is not a valid safetensors file: its header of {length} bytes exceeds "
            f"the {MAX_HEADER_BYTES // (1024 * 1024)} MiB limit."
        )
    if length < 2:
        raise InvalidModelFile(f"{name} is not a valid safetensors file: its header is empty.")
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: arrays nested 100,000 deep are no header any writer makes.
        raise InvalidModelFile(
            f"{name} is not a valid safetensors file: its header is not valid JSON."
        ) from exc
    if not isinstance(header, dict):
        raise InvalidModelFile(
            f"{name} is not a valid safetensors file: its header is not a JSON object."
        )
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InvalidModelFile(
            f"{name} is not a valid safetensors file: its __metadata__ is not a JSON object."
        )
    data_size = size - 8 - length
    tensors = {key: _tensor(name, key, entry, data_size) for key, entry in header.items()}
    if not tensors:
        # Valid as a format, but no weights at all: no loader gets a model out of it.
        raise InvalidModelFile(f"{name} holds no tensors, so it is not a model.")
    return FileFacts(path, "safetensors", size, _details(tensors, metadata, length), tensors)


def _tensor(name: str, key: str, entry: Any, data_size: int) -> TensorInfo:
    def lie(what: str) -> InvalidModelFile:
        return InvalidModelFile(f"{name} is not a valid safetensors file: tensor {key!r} {what}.")

    if not isinstance(entry, dict):
        raise lie("is not described by a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or not isinstance(shape, list) or not isinstance(offsets, list):
        raise lie("lacks a dtype, shape or data_offsets")
    if not all(_is_count(d) for d in shape):
        raise lie("has a malformed shape")
    if len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise lie("has malformed data_offsets")
    start, end = offsets
    if not 0 <= start <= end <= data_size:
        raise lie(f"points at bytes {start}..{end} beyond the {data_size} bytes of tensor data")
    info = TensorInfo(dtype, tuple(shape))
    width = DTYPE_BYTES.get(dtype)
    if width is not None and int(info.numel * width) != end - start:
        raise lie(f"claims {end - start} bytes for {info.numel} {dtype} values")
    return info


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _details(tensors: dict[str, TensorInfo], metadata: dict, header_bytes: int) -> dict[str, Any]:
    dtype_counts: Counter[str] = Counter()
    dtype_params: Counter[str] = Counter()
    for info in tensors.values():
        dtype_counts[info.dtype] += 1
        dtype_params[info.dtype] += info.numel
    clean_meta = {}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > MAX_METADATA_VALUE_CHARS:
            text = text[:MAX_METADATA_VALUE_CHARS] + "…"
        clean_meta[str(key)] = text
    return {
        "header_bytes": header_bytes,
        "tensor_count": len(tensors),
        "parameter_count": sum(dtype_params.values()),
        "tensor_dtypes": dict(dtype_counts),
        "dtype_parameters": dict(dtype_params),
        "metadata": clean_meta,
    }
