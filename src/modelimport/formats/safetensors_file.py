"""safetensors: an 8-byte little-endian header length N, N bytes of JSON, then tensor data.

Only the header is read. A file is judged by its structure first: only once it fails to parse
as safetensors may its first bytes call it a text page. What the format's own loader
(`safetensors.safe_open`) refuses, we refuse: a header that is not a JSON object, metadata
that is not strings, an unknown dtype, a shape whose size differs from its byte range, and
byte ranges that overlap, leave gaps or do not cover the data exactly. The read limits
(header bytes, JSON values, tensors) are checked before anything of that size is parsed; see
formats/limits.py.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, TensorInfo
from modelimport.formats.limits import (
    MAX_SAFETENSORS_HEADER_BYTES,
    MAX_SAFETENSORS_JSON_ITEMS,
    MAX_TENSOR_NAMES_BYTES,
    MAX_TENSORS,
    KeptMetadata,
)

# Bits per element, by the dtype names the safetensors format defines (its loader refuses
# any other name).
DTYPE_BITS: dict[str, int] = {
    "F64": 64, "F32": 32, "F16": 16, "BF16": 16, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4,
    "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U64": 64, "U32": 32, "U16": 16, "U8": 8,
    "BOOL": 8, "C64": 64,
}

# What a file that is not safetensors at all tends to start with (a failed download); asked
# only once the file has failed to parse as safetensors.
TEXT_STARTS = (b"<!", b"<h", b"<H", b"<?xml", b"{", b"Entry not found", b"404", b"Access")


def inspect_safetensors(path: Path, size: int, head: bytes) -> FileFacts:
    try:
        return _read(path, size, head)
    except InvalidModelFile:
        # Text in the first 8 bytes makes a length of over 2**61: only a length that cannot
        # be one lets the text heuristic speak (`20 7b 00 ...` is a valid header of 31,520).
        (length,) = struct.unpack("<Q", head)
        if length > size - 8 and head.lstrip().startswith(TEXT_STARTS):
            raise InvalidModelFile(
                f"{path.name} is a text or HTML page (perhaps a failed download), "
                "not a model file."
            ) from None
        raise


def _read(path: Path, size: int, head: bytes) -> FileFacts:
    name = path.name

    def invalid(why: str) -> InvalidModelFile:
        return InvalidModelFile(f"{name} is not a valid safetensors file: {why}.")

    (length,) = struct.unpack("<Q", head)
    if length > size - 8:
        raise invalid(f"its header claims {length} bytes but the file holds only {size} bytes")
    if length > MAX_SAFETENSORS_HEADER_BYTES:
        raise invalid(f"its header of {length:,} bytes exceeds the "
                      f"{MAX_SAFETENSORS_HEADER_BYTES // (1024 * 1024)} MiB limit")
    if length < 2:
        raise invalid("its header is empty")
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(length)
    items = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if items > MAX_SAFETENSORS_JSON_ITEMS:
        raise invalid(f"its header holds over {MAX_SAFETENSORS_JSON_ITEMS:,} JSON values, "
                      "beyond the limit")
    try:
        text = raw.decode("utf-8")
        del raw  # the parse below may take several times the header's size: free this first
        header = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: arrays nested 100,000 deep are no header any writer makes.
        raise invalid("its header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise invalid("its header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:  # absent, or null as the loader allows
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise invalid("its __metadata__ is not a JSON object of strings")
    if len(header) > MAX_TENSORS:
        raise invalid(f"it lists {len(header):,} tensors, beyond the limit of {MAX_TENSORS:,}")
    if sum(map(len, header)) > MAX_TENSOR_NAMES_BYTES:
        raise invalid(f"its tensor names take over {MAX_TENSOR_NAMES_BYTES >> 20} MiB, "
                      "beyond the limit")
    data_size = size - 8 - length
    tensors = {key: _tensor(invalid, key, entry, data_size) for key, entry in header.items()}
    _check_layout(invalid, header, data_size)
    if not tensors:
        # Valid as a format, but no weights at all: no loader gets a model out of it.
        raise InvalidModelFile(f"{name} holds no tensors, so it is not a model.")
    return FileFacts(path, "safetensors", size, _details(tensors, metadata, length), tensors)


def _refuse_constant(literal: str) -> None:
    raise ValueError(f"{literal} is not JSON")  # NaN, Infinity: Python's json takes them


def _tensor(invalid: Any, key: str, entry: Any, data_size: int) -> TensorInfo:
    # Called once per tensor (up to MAX_TENSORS times): plain `type(...) is` checks, no
    # generators, keep it cheap. `type(x) is int` also refuses true/false.
    dtype = shape = offsets = None
    if type(entry) is dict:
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    else:
        raise invalid(f"tensor {key[:64]!r} is not described by a JSON object")
    if type(dtype) is not str or type(shape) is not list or type(offsets) is not list:
        raise invalid(f"tensor {key[:64]!r} lacks a dtype, shape or data_offsets")
    if dtype not in DTYPE_BITS:
        raise invalid(f"tensor {key[:64]!r} has the unknown dtype {dtype[:32]!r}")
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise invalid(f"tensor {key[:64]!r} has a malformed shape")
    if len(offsets) != 2:
        raise invalid(f"tensor {key[:64]!r} has malformed data_offsets")
    start, end = offsets
    if type(start) is not int or type(end) is not int or start < 0:
        raise invalid(f"tensor {key[:64]!r} has malformed data_offsets")
    if not start <= end <= data_size:
        raise invalid(f"tensor {key[:64]!r} points at bytes {start}..{end} beyond the {data_size} "
                      "bytes of tensor data")
    bits = _numel_up_to(shape, 8 * (end - start) + 1) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - start:
        raise invalid(f"tensor {key[:64]!r} claims {end - start} bytes for a {tuple(shape[:8])} "
                      f"shape of {dtype}")
    return TensorInfo(dtype, tuple(shape))


def _numel_up_to(shape: list[int], bound: int) -> int:
    """The element count of `shape`, or a number above `bound` once it is clearly too big (a
    product of a million huge dimensions would take minutes to compute whole)."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > bound:
            break
    return count


def _check_layout(invalid: Any, header: dict[str, Any], data_size: int) -> None:
    """The byte ranges, in order, tile the data after the header exactly, as the loader
    requires: no overlap (two tensors sharing bytes), no gap, nothing outside the file."""
    covered = 0
    ranges = sorted((entry["data_offsets"][0], entry["data_offsets"][1], key)
                    for key, entry in header.items())
    for start, end, key in ranges:
        if start != covered:
            what = "overlaps the tensor before it" if start < covered else "leaves a gap before it"
            raise invalid(f"tensor {key[:64]!r} starts at byte {start} and {what} "
                          f"(the data before it ends at byte {covered})")
        covered = end
    if covered != data_size:
        raise invalid(f"its tensors cover {covered:,} bytes but {data_size:,} bytes of data "
                      "follow the header")


def _details(tensors: dict[str, TensorInfo], metadata: dict, header_bytes: int) -> dict[str, Any]:
    dtype_counts: Counter[str] = Counter()
    dtype_params: Counter[str] = Counter()
    for info in tensors.values():
        dtype_counts[info.dtype] += 1
        dtype_params[info.dtype] += info.numel
    kept = KeptMetadata()
    for key, value in metadata.items():
        if kept.wants(key):
            kept.keep(key, value)
    details: dict[str, Any] = {
        "header_bytes": header_bytes,
        "tensor_count": len(tensors),
        "parameter_count": sum(dtype_params.values()),
        "tensor_dtypes": dict(dtype_counts),
        "dtype_parameters": dict(dtype_params),
        "metadata": kept.entries,
    }
    if kept.note:
        details["metadata_note"] = kept.note
    return details
