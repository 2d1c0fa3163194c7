"""GGUF: llama.cpp's format. Magic, version, counts, key/value metadata, tensor infos, data.

A small reader of our own walks the key/value pairs and tensor infos with every declared
length checked against the bytes left in the file, and skips over large arrays (the tokenizer
vocabulary) without building them, which is what makes it cheap on a 70B model. llama.cpp's
`gguf` package supplies the names: ggml tensor types, block sizes, and file types
(`LlamaFileType`), imported lazily.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, TensorInfo

SUPPORTED_VERSIONS = (2, 3)
MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_KEPT_STRING_CHARS = 4096
MAX_KEPT_ARRAY_ITEMS = 16
DEFAULT_ALIGNMENT = 32

# GGUF value type -> (struct code, byte width); 8 = string and 9 = array are handled apart.
SCALAR_TYPES: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}
STRING, ARRAY = 8, 9


class _Truncated(Exception):
    pass


class _Reader:
    """Reads little- or big-endian GGUF fields, refusing any length beyond the file's end."""

    def __init__(self, fh: BinaryIO, size: int, endian: str) -> None:
        self.fh, self.size, self.endian = fh, size, endian

    @property
    def left(self) -> int:
        return self.size - self.fh.tell()

    def take(self, count: int) -> bytes:
        if count > self.left:
            raise _Truncated
        return self.fh.read(count)

    def skip(self, count: int) -> None:
        if count > self.left:
            raise _Truncated
        self.fh.seek(count, 1)

    def scalar(self, code: str, width: int) -> Any:
        return struct.unpack(self.endian + code, self.take(width))[0]

    def u32(self) -> int:
        return self.scalar("I", 4)

    def u64(self) -> int:
        return self.scalar("Q", 8)

    def string(self, keep: bool = True) -> str:
        length = self.u64()
        if length > MAX_STRING_BYTES or length > self.left:
            raise _Truncated
        if not keep:
            self.skip(length)
            return ""
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep_arrays: bool) -> Any:
        if vtype in SCALAR_TYPES:
            return self.scalar(*SCALAR_TYPES[vtype])
        if vtype == STRING:
            text = self.string()
            if len(text) > MAX_KEPT_STRING_CHARS:
                text = text[:MAX_KEPT_STRING_CHARS] + "…"
            return text
        if vtype == ARRAY:
            etype, count = self.u32(), self.u64()
            width = SCALAR_TYPES[etype][1] if etype in SCALAR_TYPES else 8
            known = etype in SCALAR_TYPES or etype in (STRING, ARRAY)
            if not known or count * width > self.left:
                raise _Truncated
            if not keep_arrays or count > MAX_KEPT_ARRAY_ITEMS:
                self._skip_array(etype, count)
                return {"array_of": _TYPE_NAMES.get(etype, str(etype)), "count": count}
            return [self.value(etype, keep_arrays) for _ in range(count)]
        raise _Truncated

    def _skip_array(self, etype: int, count: int) -> None:
        if etype in SCALAR_TYPES:
            self.skip(count * SCALAR_TYPES[etype][1])
        elif etype == STRING:
            for _ in range(count):
                self.string(keep=False)
        else:
            for _ in range(count):
                self.value(ARRAY, keep_arrays=False)


_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
               6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64",
               12: "float64"}


def inspect_gguf(path: Path, size: int) -> FileFacts:
    name = path.name
    with open(path, "rb") as fh:
        head = fh.read(24)
        if len(head) < 24:
            raise InvalidModelFile(f"{name} is a truncated GGUF file: it ends inside its header.")
        endian = "<"
        (version,) = struct.unpack("<I", head[4:8])
        swapped = struct.unpack(">I", head[4:8])[0]
        if version not in SUPPORTED_VERSIONS and swapped in SUPPORTED_VERSIONS:
            endian = ">"
            (version,) = struct.unpack(">I", head[4:8])
        if version not in SUPPORTED_VERSIONS:
            raise InvalidModelFile(
                f"{name} is GGUF version {version}, which is not supported "
                f"(only versions {' and '.join(map(str, SUPPORTED_VERSIONS))} are)."
            )
        tensor_count, kv_count = struct.unpack(endian + "QQ", head[8:24])
        reader = _Reader(fh, size, endian)
        try:
            # Each key/value pair and each tensor info takes at least 12 bytes.
            if (tensor_count + kv_count) * 12 > reader.left:
                raise _Truncated
            kv: dict[str, Any] = {}
            for _ in range(kv_count):
                key = reader.string()
                vtype = reader.u32()
                kv[key] = reader.value(vtype, keep_arrays=not key.startswith("tokenizer."))
            raw_tensors = []
            for _ in range(tensor_count):
                tname = reader.string()
                n_dims = reader.u32()
                if n_dims > 8:
                    raise _Truncated
                dims = tuple(reader.u64() for _ in range(n_dims))
                raw_tensors.append((tname, dims, reader.u32(), reader.u64()))
            header_end = fh.tell()
        except (_Truncated, struct.error) as exc:
            raise InvalidModelFile(
                f"{name} is a truncated or corrupt GGUF file: a declared length runs past its end."
            ) from exc
    alignment = kv.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = DEFAULT_ALIGNMENT
    data_start = -(-header_end // alignment) * alignment
    tensors = _tensors(name, raw_tensors, size - data_start)
    return FileFacts(path, "gguf", size, _details(version, kv, tensors), tensors)


def _tensors(name: str, raw: list, data_size: int) -> dict[str, TensorInfo]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    tensors = {}
    for tname, dims, ttype, offset in raw:
        try:
            qtype = GGMLQuantizationType(ttype)
        except ValueError as exc:
            raise InvalidModelFile(
                f"{name} has tensor {tname!r} of unknown GGML type {ttype}."
            ) from exc
        # GGUF lists dimensions innermost first; keep the PyTorch order (outermost first).
        info = TensorInfo(qtype.name, tuple(reversed(dims)))
        block, type_size = GGML_QUANT_SIZES[qtype]
        nbytes = info.numel // block * type_size
        if offset + nbytes > data_size:
            raise InvalidModelFile(
                f"{name} is a truncated GGUF file: tensor {tname!r} runs past the end of the file."
            )
        tensors[tname] = info
    return tensors


def _details(version: int, kv: dict[str, Any], tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    arch = kv.get("general.architecture")
    type_counts = Counter(info.dtype for info in tensors.values())
    details: dict[str, Any] = {
        "gguf_version": version,
        "architecture": arch,
        "tensor_count": len(tensors),
        "parameter_count": sum(info.numel for info in tensors.values()),
        "tensor_types": dict(type_counts),
        "metadata": {k: v for k, v in kv.items() if not isinstance(v, bytes)},
    }
    file_type = kv.get("general.file_type")
    if isinstance(file_type, int):
        details["file_type"] = file_type
        details["quantization"] = quantization_name(file_type)
    if isinstance(arch, str) and isinstance(kv.get(f"{arch}.context_length"), int):
        details["context_length"] = kv[f"{arch}.context_length"]
    return details


def quantization_name(file_type: int) -> str | None:
    """`general.file_type` -> llama.cpp's name for it: 15 -> Q4_K_M, 1 -> F16."""
    from gguf import LlamaFileType

    try:
        member = LlamaFileType(file_type)
    except ValueError:
        return None
    name = member.name.removeprefix("MOSTLY_")
    return {"ALL_F32": "F32", "GUESSED": None}.get(name, name)
