"""Factories that write real model files for tests: valid headers, real formats, small sizes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1,
                "U8": 1, "I32": 4, "I64": 8}


def make_safetensors(
    path: Path,
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    metadata: dict[str, str] | None = None,
    fill: bytes = b"\x00",
    padding: int = 0,
) -> Path:
    """Write a valid safetensors file: `tensors` maps name -> (dtype, shape).

    `fill` patterns the tensor bytes so files with equal headers can still differ;
    `padding` adds extra bytes to the last tensor's data to reach a wanted size.
    """
    tensors = tensors or {"weight": ("F16", [4, 4])}
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        count = int(np.prod(shape)) if shape else 1
        nbytes = count * _DTYPE_SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        data = (fill * (offset // len(fill) + 1))[:offset]
        fh.write(data)
        if padding:
            fh.write(fill[:1] * padding)
    return path


def make_gguf(
    path: Path,
    arch: str = "llama",
    name: str | None = None,
    kv: dict[str, object] | None = None,
    tensors: dict[str, list[int]] | None = None,
) -> Path:
    """Write a valid GGUF file with llama.cpp's own writer."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    if name:
        writer.add_name(name)
    for key, value in (kv or {}).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, str(value))
    for tname, shape in (tensors or {"token_embd.weight": [8, 4]}).items():
        writer.add_tensor(tname, np.ones(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_sharded_safetensors(folder: Path, total: int = 3, stem: str = "model") -> list[Path]:
    """A complete sharded set with its `*.safetensors.index.json`; returns every file."""
    files = []
    weight_map = {}
    for i in range(1, total + 1):
        name = f"{stem}-{i:05d}-of-{total:05d}.safetensors"
        tensor = f"layers.{i}.weight"
        files.append(make_safetensors(folder / name, {tensor: ("F16", [8, 8])}, fill=bytes([i])))
        weight_map[tensor] = name
    index = folder / f"{stem}.safetensors.index.json"
    body = {"metadata": {"total_size": 128 * total}, "weight_map": weight_map}
    index.write_text(json.dumps(body))
    return [*files, index]
