"""GGUF: llama.cpp's format. Magic, version, counts, key/value metadata, tensor infos, data.

A small reader of our own walks the key/value pairs and tensor infos with every declared
length checked against the bytes left in the file, and skips over what it does not keep (the
tokenizer vocabulary, long strings) without building it, which is what makes it cheap on a 70B
model. It walks nested arrays without recursion past a fixed depth, and counts what it walks,
so a hostile header costs bounded time and memory (formats/limits.py). What llama.cpp's own
`gguf` package reader refuses, we refuse: keys or tensor names that are not UTF-8, duplicate
keys or tensors, an unknown value or tensor type, an alignment that is not a power of two held
in a uint32, a quantised row that is not whole blocks, tensor data beyond the file. Like
llama.cpp's C loader, we also refuse tensor data that is misaligned or overlaps.
`gguf` supplies the names: ggml tensor types, block sizes, file types (`LlamaFileType`).
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, TensorInfo
from modelimport.formats.limits import (
    MAX_GGUF_ARRAY_DEPTH,
    MAX_GGUF_DIMS,
    MAX_GGUF_HEADER_ITEMS,
    MAX_GGUF_KEY_BYTES,
    MAX_GGUF_KEYS,
    MAX_GGUF_TENSOR_NAME_BYTES,
    MAX_KEPT_ARRAY_ITEMS,
    MAX_KEPT_VALUE_CHARS,
    MAX_TENSOR_NAMES_BYTES,
    MAX_TENSORS,
    KeptMetadata,
)

SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Strings inside a kept array are cut shorter, so a kept array costs no more than a string.
MAX_KEPT_ARRAY_STRING_CHARS = MAX_KEPT_VALUE_CHARS // MAX_KEPT_ARRAY_ITEMS

# GGUF value type -> (struct code, byte width); 8 = string and 9 = array are handled apart.
SCALAR_TYPES: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}
UINT32, STRING, ARRAY = 4, 8, 9
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
               6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64",
               12: "float64"}


class _Truncated(Exception):
    pass


class _Refused(Exception):
    """The header breaks a rule of the format or a read limit; the message says which."""


class _Reader:
    """Reads little- or big-endian GGUF fields, refusing any length beyond the file's end and
    any walk beyond MAX_GGUF_HEADER_ITEMS."""

    def __init__(self, fh: BinaryIO, size: int, endian: str) -> None:
        self.fh, self.size, self.endian = fh, size, endian
        self.pos = fh.tell()  # kept here: fh.tell() is a system call, and this runs per field
        self.walked = 0
        self.cut = 0  # strings kept shorter than the file has them

    @property
    def left(self) -> int:
        return self.size - self.pos

    def walk(self, count: int = 1) -> None:
        self.walked += count
        if self.walked > MAX_GGUF_HEADER_ITEMS:
            raise _Refused(f"its header holds over {MAX_GGUF_HEADER_ITEMS:,} entries "
                           "(keys, strings and arrays in arrays, tensors), beyond the limit")

    def take(self, count: int) -> bytes:
        if count > self.size - self.pos:
            raise _Truncated
        data = self.fh.read(count)
        if len(data) != count:  # the file shrank while we read it
            raise _Truncated
        self.pos += count
        return data

    def skip(self, count: int) -> None:
        if count > self.size - self.pos:
            raise _Truncated
        self.fh.seek(count, 1)
        self.pos += count

    def scalar(self, code: str, width: int) -> Any:
        return struct.unpack(self.endian + code, self.take(width))[0]

    def u32(self) -> int:
        return self.scalar("I", 4)

    def u64(self) -> int:
        return self.scalar("Q", 8)

    def name(self, what: str, limit: int) -> str:
        """A key or tensor name: whole, UTF-8 (gguf's reader refuses other bytes), bounded."""
        length = self.u64()
        if length > limit:
            if length > self.left:
                raise _Truncated
            raise _Refused(f"{what} of {length:,} bytes is longer than the {limit:,} allowed")
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(f"{what} is not UTF-8 text") from None

    def text(self, keep_chars: int) -> str:
        """A string value, of which at most `keep_chars` characters are read; the rest is
        skipped, never read."""
        length = self.u64()
        if length > self.left:
            raise _Truncated
        read = min(length, 4 * keep_chars)  # a character is at most 4 bytes of UTF-8
        text = self.take(read).decode("utf-8", errors="replace")
        self.skip(length - read)
        if len(text) > keep_chars or read < length:
            self.cut += 1
            return text[: keep_chars - 1] + "…"
        return text

    def skip_text(self) -> None:
        self.skip(self.u64())

    def value(self, vtype: int, keep: bool, depth: int = 0, lists: bool = True) -> Any:
        """The value of type `vtype`, or None after skipping it when not `keep`; a kept array
        is a list only if `lists` and short, otherwise {"array_of", "count"}."""
        if vtype in SCALAR_TYPES:
            code, width = SCALAR_TYPES[vtype]
            if not keep:
                self.skip(width)
                return None
            return self.scalar(code, width)
        if vtype == STRING:
            if not keep:
                self.skip_text()
                return None
            return self.text(MAX_KEPT_VALUE_CHARS if depth == 0 else MAX_KEPT_ARRAY_STRING_CHARS)
        if vtype != ARRAY:
            raise _Refused(f"it holds a value of unknown type {vtype}")
        if depth >= MAX_GGUF_ARRAY_DEPTH:
            raise _Refused(f"it nests arrays more than {MAX_GGUF_ARRAY_DEPTH} deep, "
                           "beyond the limit")
        etype, count = self.u32(), self.u64()
        width = SCALAR_TYPES[etype][1] if etype in SCALAR_TYPES else 8
        if count and etype not in SCALAR_TYPES and etype not in (STRING, ARRAY):
            raise _Refused(f"it holds an array of unknown type {etype}")
        if count * width > self.left:
            raise _Truncated
        if keep and lists and count <= MAX_KEPT_ARRAY_ITEMS and etype != ARRAY:
            self.walk(count)
            return [self.value(etype, True, depth + 1) for _ in range(count)]
        if etype in SCALAR_TYPES:  # numbers: one step, however many
            self.skip(count * width)
        else:
            self.walk(count)
            for _ in range(count):
                if etype == STRING:
                    self.skip_text()
                else:
                    self.value(ARRAY, False, depth + 1)
        return {"array_of": _TYPE_NAMES.get(etype, str(etype)), "count": count} if keep else None


def inspect_gguf(path: Path, size: int) -> FileFacts:
    name = path.name
    with open(path, "rb", buffering=1 << 16) as fh:
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
            if tensor_count > MAX_TENSORS:
                raise _Refused(f"it lists {tensor_count:,} tensors, beyond the limit of "
                               f"{MAX_TENSORS:,}")
            if kv_count > MAX_GGUF_KEYS:
                raise _Refused(f"it lists {kv_count:,} metadata keys, beyond the limit of "
                               f"{MAX_GGUF_KEYS:,}")
            kept, alignment = _read_metadata(reader, kv_count)
            raw_tensors = _read_tensor_infos(reader, tensor_count)
            header_end = reader.pos
        except (_Truncated, struct.error) as exc:
            raise InvalidModelFile(
                f"{name} is a truncated or corrupt GGUF file: a declared length runs past its end."
            ) from exc
        except _Refused as exc:
            raise InvalidModelFile(f"{name} is not a GGUF file we can read: {exc}.") from None
    data_start = -(-header_end // alignment) * alignment
    tensors = _tensors(name, raw_tensors, size - data_start, alignment)
    kept.cut += reader.cut
    return FileFacts(path, "gguf", size, _details(version, kept, tensors), tensors)


def _read_metadata(reader: _Reader, kv_count: int) -> tuple[KeptMetadata, int]:
    """The key/value pairs as kept for the record, and the data alignment they declare."""
    kept = KeptMetadata()
    seen: set[int] = set()
    alignment = DEFAULT_ALIGNMENT
    for _ in range(kv_count):
        reader.walk()
        key = reader.name("a metadata key", MAX_GGUF_KEY_BYTES)
        if _seen_before(seen, key):
            raise _Refused(f"the metadata key {key[:64]!r} appears twice")
        vtype = reader.u32()
        keep = kept.wants(key)
        if key == "general.alignment":  # read whether kept or not: it places the data
            if vtype != UINT32:
                raise _Refused("its general.alignment is not a uint32")
            alignment = reader.u32()
            if alignment == 0 or alignment & (alignment - 1):
                raise _Refused(f"its alignment {alignment} is not a power of two")
            value: Any = alignment
        else:
            # A tokenizer's arrays (vocabulary, merges, scores) are kept as their length only.
            value = reader.value(vtype, keep, lists=not key.startswith("tokenizer."))
        if keep:
            kept.keep(key, value)
    return kept, alignment


def _seen_before(seen: set[int], key: str) -> bool:
    """Whether `key` came before; `seen` holds hashes, not keys: 65,536 keys of 64 KiB would
    take 4 GiB (a collision of 64-bit hashes among a file's keys is unheard of)."""
    digest = hash(key)
    if digest in seen:
        return True
    seen.add(digest)
    return False


def _read_tensor_infos(reader: _Reader, tensor_count: int) -> list[tuple[str, tuple, int, int]]:
    raw_tensors = []
    names: set[str] = set()
    names_bytes = 0
    layouts = {n: struct.Struct(f"{reader.endian}{n}QIQ") for n in range(MAX_GGUF_DIMS + 1)}
    for _ in range(tensor_count):
        reader.walk()
        tname = reader.name("a tensor name", MAX_GGUF_TENSOR_NAME_BYTES)
        names_bytes += len(tname)
        if names_bytes > MAX_TENSOR_NAMES_BYTES:
            raise _Refused(f"its tensor names take over {MAX_TENSOR_NAMES_BYTES >> 20} MiB, "
                           "beyond the limit")
        if tname in names:
            raise _Refused(f"the tensor {tname[:64]!r} appears twice")
        names.add(tname)
        n_dims = reader.u32()
        if n_dims > MAX_GGUF_DIMS:
            raise _Refused(f"tensor {tname[:64]!r} has {n_dims:,} dimensions "
                           f"(llama.cpp reads at most {MAX_GGUF_DIMS})")
        layout = layouts[n_dims]  # dims, type and offset in one read: this runs 65,536 times
        *dims, ttype, offset = layout.unpack(reader.take(layout.size))
        raw_tensors.append((tname, tuple(dims), ttype, offset))
    return raw_tensors


def _tensors(name: str, raw: list, data_size: int, alignment: int) -> dict[str, TensorInfo]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    def refused(why: str) -> InvalidModelFile:
        return InvalidModelFile(f"{name} is not a GGUF file we can read: {why}.")

    tensors = {}
    ranges = []
    qtypes = {member.value: member for member in GGMLQuantizationType}
    for tname, dims, ttype, offset in raw:
        qtype = qtypes.get(ttype)
        if qtype is None:
            raise InvalidModelFile(
                f"{name} has tensor {tname[:64]!r} of unknown GGML type {ttype}."
            )
        # GGUF lists dimensions innermost first; keep the PyTorch order (outermost first).
        info = TensorInfo(qtype.name, tuple(reversed(dims)))
        block, type_size = GGML_QUANT_SIZES[qtype]
        if dims and dims[0] % block:
            raise refused(f"tensor {tname[:64]!r} has rows of {dims[0]} values, not whole "
                          f"{qtype.name} blocks of {block}")
        nbytes = info.numel // block * type_size
        if offset % alignment:
            raise refused(f"tensor {tname[:64]!r} starts at byte {offset}, not a multiple of the "
                          f"file's alignment {alignment}")
        if offset + nbytes > data_size:
            raise InvalidModelFile(
                f"{name} is a truncated GGUF file: tensor {tname[:64]!r} runs past the end of "
                "the file."
            )
        tensors[tname] = info
        ranges.append((offset, offset + nbytes, tname))
    ranges.sort()
    for (_, end, before), (start, _, after) in zip(ranges, ranges[1:], strict=False):
        if start < end:
            raise refused(f"the data of tensors {before[:64]!r} and {after[:64]!r} overlap")
    return tensors


def _details(version: int, kept: KeptMetadata, tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    kv = kept.entries
    arch = kv.get("general.architecture")
    type_counts = Counter(info.dtype for info in tensors.values())
    details: dict[str, Any] = {
        "gguf_version": version,
        "architecture": arch,
        "tensor_count": len(tensors),
        "parameter_count": sum(info.numel for info in tensors.values()),
        "tensor_types": dict(type_counts),
        "metadata": kv,
    }
    if kept.note:
        details["metadata_note"] = kept.note
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
