"""Small files whose headers would exhaust a reader that trusts them (issue 19, High 6): each
is a few MB and claims millions of entries, deep nesting or huge strings."""

from __future__ import annotations

import json
import struct
from pathlib import Path

GGUF_ARRAY, GGUF_STRING, GGUF_UINT8, GGUF_UINT32 = 9, 8, 0, 4


def _gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _gguf(path: Path, kv: list[bytes], tensors: int = 0, tail: bytes = b"") -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensors, len(kv)) + b"".join(kv) + tail)
    return path


def _one_f32_tensor() -> bytes:
    """The tensor info of a 4-float tensor "w" at offset 0 (the data follows, aligned)."""
    return _gguf_string(b"w") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack(
        "<IQ", 0, 0
    )


def gguf_with_nested_arrays(path: Path, depth: int = 200_000) -> Path:
    """One key whose array holds an array holding an array ... `depth` deep (2.4 MB)."""
    nested = struct.pack("<IQ", GGUF_ARRAY, 1) * depth + struct.pack("<IQ", GGUF_UINT8, 0)
    return _gguf(path, [_gguf_string(b"deep") + struct.pack("<I", GGUF_ARRAY) + nested])


def gguf_with_huge_strings(path: Path, count: int = 6, length: int = 16 << 20) -> Path:
    """A valid GGUF (one tensor) with `count` string values of `length` bytes each."""
    kv = [_gguf_string(b"general.architecture") + struct.pack("<I", GGUF_STRING)
          + _gguf_string(b"llama")]
    for n in range(count):
        value = bytes([0x41 + n]) * length
        kv.append(_gguf_string(f"custom.blob{n}".encode()) + struct.pack("<I", GGUF_STRING)
                  + _gguf_string(value))
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv)) + b"".join(kv) + _one_f32_tensor()
    header += b"\x00" * (-len(header) % 32)
    path.write_bytes(header + struct.pack("<4f", 1, 2, 3, 4))
    return path


def gguf_with_huge_key(path: Path, length: int = 16 << 20) -> Path:
    return _gguf(path, [_gguf_string(b"k" * length) + struct.pack("<IB", GGUF_UINT8, 1)])


def gguf_with_many_strings(path: Path, count: int = 5_000_000) -> Path:
    """An array of `count` empty strings: 40 MB that a reader walks item by item."""
    array = struct.pack("<IQ", GGUF_STRING, count) + struct.pack("<Q", 0) * count
    return _gguf(path, [_gguf_string(b"many") + struct.pack("<I", GGUF_ARRAY) + array])


def _safetensors(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def safetensors_with_many_tensors(path: Path, count: int = 1_800_000) -> Path:
    """`count` empty tensors: a 100 MB header (1.8 million, as in the issue)."""
    entry = '"t{}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
    return _safetensors(path, ("{" + ",".join(entry.format(i) for i in range(count)) + "}")
                        .encode())


def safetensors_with_many_metadata(path: Path, count: int = 1_000_000) -> Path:
    """One real tensor and `count` metadata keys (61 MB for a million)."""
    metadata = {f"key{i:07d}": f"value{i:07d}" + "x" * 40 for i in range(count)}
    header = {"__metadata__": metadata,
              "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    return _safetensors(path, json.dumps(header, separators=(",", ":")).encode(), b"\x00" * 16)
