"""The safetensors and GGUF readers within their limits (formats/limits.py), and in step with
each format's own loader: what `safetensors.safe_open` or gguf's `GGUFReader` refuses, we
refuse; what they load, we read."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import hostile_headers as hostile
import pytest
from factories import make_gguf, make_safetensors

from modelimport.errors import InvalidModelFile
from modelimport.formats import inspect_file
from modelimport.formats.limits import (
    MAX_GGUF_ARRAY_DEPTH,
    MAX_KEPT_METADATA_ENTRIES,
    MAX_KEPT_VALUE_CHARS,
    MAX_TENSORS,
)
from modelimport.probe import probe_model


def refused(path: Path) -> str:
    with pytest.raises(InvalidModelFile) as err:
        inspect_file(path)
    message = str(err.value)
    assert path.name in message and "\n" not in message, message
    return message


def safe_open_refuses(path: Path) -> bool:
    from safetensors import safe_open

    try:  # opening validates the whole header and layout (numpy cannot hold bf16 or F4)
        with safe_open(str(path), "np") as handle:
            handle.keys()
    except Exception:  # noqa: BLE001 (SafetensorError, OSError: any refusal counts)
        return True
    return False


def gguf_reader_refuses(path: Path) -> bool:
    from gguf import GGUFReader

    try:
        GGUFReader(str(path))
    except Exception:  # noqa: BLE001 (ValueError, KeyError, RecursionError: any refusal)
        return True
    return False


def raw_safetensors(path: Path, header: dict | bytes, data: bytes) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


# --- safetensors: structure before text, the loader's own rules


def test_a_header_length_that_reads_like_text_is_still_safetensors(tmp_path):
    # 31,520 = 0x7b20: the file starts "20 7b 00 ...", a space and a "{" (issue 19, Medium 8).
    path = make_safetensors(tmp_path / "m.safetensors", header_size=31_520)
    assert path.read_bytes()[:3] == b" {\x00"
    assert inspect_file(path).format == "safetensors"
    assert not safe_open_refuses(path)


def test_a_text_page_is_still_called_one(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"<!DOCTYPE html><html>Repository not found</html>")
    assert "text or HTML page" in refused(path)


F16x4 = {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("header", "data", "says"),
    [
        ({"a": F16x4, "b": {"dtype": "F16", "shape": [4], "data_offsets": [4, 12]}},
         bytes(12), "overlaps"),
        ({"a": F16x4, "b": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]}},
         bytes(16), "gap"),
        ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, bytes(4), "beyond"),
        ({"a": F16x4}, bytes(12), "cover 8 bytes but 12"),
        ({"a": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 8]}}, bytes(8), "unknown dtype"),
        ({"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "claims 8"),
        ({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}, bytes(1), "claims 1"),
        ({"a": F16x4, "__metadata__": {"n": 5}}, bytes(8), "__metadata__"),
        ({"a": F16x4, "__metadata__": {"n": None}}, bytes(8), "__metadata__"),
        ({"a": F16x4, "__metadata__": []}, bytes(8), "__metadata__"),
        ({"a": {"dtype": "F16", "shape": [4.0], "data_offsets": [0, 8]}}, bytes(8),
         "malformed shape"),
        (b'[{"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}]', bytes(8),
         "not a JSON object"),
        (b'{"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, NaN]}}', bytes(8),
         "not valid JSON"),
    ],
    ids=["overlap", "gap", "outside", "not-covered", "dtype", "shape", "sub-byte", "metadata",
         "null-metadata", "list-metadata", "float-dim", "list", "nan"],
)
def test_what_safe_open_refuses_is_refused(tmp_path, header, data, says):
    path = raw_safetensors(tmp_path / "bad.safetensors", header, data)
    assert says in refused(path)
    assert safe_open_refuses(path)


@pytest.mark.parametrize(
    "tensors",
    [
        {"w": ("F16", [4, 4])},
        {"a": ("F32", [3]), "b": ("U8", [5]), "c": ("BF16", [2, 2])},
        {"empty": ("F32", [0]), "w": ("I8", [7])},
    ],
)
def test_what_safe_open_loads_is_read(tmp_path, tensors):
    path = make_safetensors(tmp_path / "ok.safetensors", tensors, fill=b"\x01\x02")
    assert not safe_open_refuses(path)
    assert set(inspect_file(path).tensors) == set(tensors)


def test_sub_byte_and_complex_dtypes_read_as_safe_open_reads_them(tmp_path):
    header = {"f4": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]},
              "f6": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [1, 4]},
              "c": {"dtype": "C64", "shape": [1], "data_offsets": [4, 12]}}
    path = raw_safetensors(tmp_path / "odd.safetensors", header, bytes(12))
    assert not safe_open_refuses(path)
    assert inspect_file(path).details["tensor_count"] == 3


# --- safetensors: read limits and keep limits


def test_a_header_of_millions_of_tensors_is_refused_unparsed(tmp_path):
    path = hostile.safetensors_with_many_tensors(tmp_path / "t.safetensors")  # 1.8 M, 100 MB
    assert "exceeds the 16 MiB limit" in refused(path)


def test_more_tensors_than_the_limit_are_refused(tmp_path):
    path = hostile.safetensors_with_many_tensors(tmp_path / "t.safetensors", MAX_TENSORS + 1)
    assert f"{MAX_TENSORS + 1:,} tensors, beyond the limit" in refused(path)


def test_tensor_names_beyond_their_budget_are_refused(tmp_path):
    # 72 names of 128 KiB: 9 MiB of names for the probe to search, in a 9 MiB header.
    header = {f"{i:03d}" + "n" * (128 << 10): {"dtype": "U8", "shape": [0],
                                               "data_offsets": [0, 0]} for i in range(72)}
    path = raw_safetensors(tmp_path / "names.safetensors", header, b"")
    assert "tensor names take over 8 MiB" in refused(path)
    gguf = build_gguf(tmp_path / "name.gguf", [ARCH], [(b"w" * 513, [4], F32, 0)], bytes(16))
    assert "tensor name of 513 bytes is longer than the 512 allowed" in refused(gguf)


def test_a_header_of_a_million_json_values_is_refused_unparsed(tmp_path):
    header = {"__metadata__": {"x": "," * 1_100_000},
              "w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}
    path = raw_safetensors(tmp_path / "commas.safetensors", header, b"\x00")
    assert "JSON values, beyond the limit" in refused(path)


def test_a_million_metadata_keys_are_refused(tmp_path):
    path = hostile.safetensors_with_many_metadata(tmp_path / "m.safetensors")  # 61 MB of metadata
    assert "exceeds the 16 MiB limit" in refused(path)


def test_metadata_beyond_the_keep_limits_is_dropped_or_cut_with_a_note(tmp_path):
    metadata = {f"key{i:06d}": "v" for i in range(100_000)}
    metadata["ss_tag_frequency"] = "t" * 100_000
    metadata["ss_base_model_version"] = "sdxl_base_v1-0"  # last, but what the probe reads
    path = make_safetensors(tmp_path / "lora.safetensors", metadata=metadata)
    facts = inspect_file(path)
    kept = facts.details["metadata"]
    assert len(kept) == MAX_KEPT_METADATA_ENTRIES + 1
    assert kept["ss_base_model_version"] == "sdxl_base_v1-0"
    assert "ss_tag_frequency" not in kept
    note = facts.details["metadata_note"]
    assert note.startswith(f"{100_002 - MAX_KEPT_METADATA_ENTRIES - 1:,} of 100,002 metadata")
    says = probe_model([facts]).file_says
    assert says["embedded_metadata_note"] == note
    assert len(json.dumps(says)) < 64 * 1024


def test_a_long_value_is_cut_and_noted(tmp_path):
    path = make_safetensors(tmp_path / "l.safetensors", metadata={"ss_tag_frequency": "t" * 9000})
    facts = inspect_file(path)
    assert len(facts.details["metadata"]["ss_tag_frequency"]) == MAX_KEPT_VALUE_CHARS
    assert facts.details["metadata_note"] == "1 value cut to 4,096 characters."


# --- GGUF: gguf's reader's rules, llama.cpp's, and the limits


def _s(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _kv(key: bytes, vtype: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", vtype) + payload


def build_gguf(path: Path, kv: list[bytes], tensors: list[tuple[bytes, list[int], int, int]],
               data: bytes, alignment: int = 32) -> Path:
    """A GGUF by hand: `tensors` are (name, dims innermost first, ggml type, offset)."""
    infos = b"".join(_s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", ttype, offset) for name, dims, ttype, offset in tensors)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + infos
    path.write_bytes(header + b"\x00" * (-len(header) % alignment) + data)
    return path


ARCH = _kv(b"general.architecture", 8, _s(b"llama"))
F32 = 0
W4 = (b"w", [4], F32, 0)


@pytest.mark.parametrize(
    ("kv", "tensors", "data", "says"),
    [
        ([ARCH, ARCH], [W4], bytes(16), "appears twice"),
        ([ARCH], [W4, W4], bytes(16), "appears twice"),
        ([ARCH, _kv(b"x", 13, b"")], [W4], bytes(16), "unknown type 13"),
        ([ARCH, _kv(b"general.alignment", 4, struct.pack("<I", 48))], [W4], bytes(64),
         "not a power of two"),
        ([ARCH, _kv(b"general.alignment", 10, struct.pack("<Q", 32))], [W4], bytes(16),
         "not a uint32"),
        ([ARCH, _kv(b"bad\xff", 4, bytes(4))], [W4], bytes(16), "not UTF-8"),
        ([ARCH], [(b"w", [64], F32, 0)], bytes(16), "runs past the end"),
        ([ARCH], [(b"w", [33], 8, 0)], bytes(64), "not whole Q8_0 blocks"),
        ([ARCH], [(b"w", [4], 99, 0)], bytes(16), "unknown GGML type 99"),
    ],
    ids=["dup-key", "dup-tensor", "value-type", "alignment", "alignment-type", "utf8",
         "beyond-file", "partial-block", "ggml-type"],
)
def test_what_gguf_reader_refuses_is_refused(tmp_path, kv, tensors, data, says):
    path = build_gguf(tmp_path / "bad.gguf", kv, tensors, data)
    assert says in refused(path)
    assert gguf_reader_refuses(path)


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        ([(b"a", [16], F32, 0), (b"b", [8], F32, 32)], "overlap"),
        ([(b"a", [4], F32, 4)], "not a multiple of the file's alignment"),
        ([(b"a", [1, 1, 1, 1, 4], F32, 0)], "at most 4"),
    ],
)
def test_what_llama_cpp_refuses_is_refused(tmp_path, tensors, says):
    """llama.cpp's loader wants tensor data aligned, in place and at most 4-D; gguf-py reads
    such a file, llama.cpp does not."""
    path = build_gguf(tmp_path / "bad.gguf", [ARCH], tensors, bytes(128))
    assert says in refused(path)


@pytest.mark.parametrize("quant", [None, "Q8_0", "Q4_0"])
def test_what_gguf_reader_loads_is_read(tmp_path, quant):
    path = make_gguf(tmp_path / "ok.gguf", tensors={"token_embd.weight": [8, 64],
                                                    "output_norm.weight": [64]}, quant=quant)
    assert not gguf_reader_refuses(path)
    assert set(inspect_file(path).tensors) == {"token_embd.weight", "output_norm.weight"}


def test_nested_arrays_are_read_to_the_depth_limit(tmp_path):
    inner = struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)
    for _ in range(MAX_GGUF_ARRAY_DEPTH - 1):
        inner = struct.pack("<IQ", 9, 1) + inner
    ok = build_gguf(tmp_path / "ok.gguf", [ARCH, _kv(b"nested", 9, inner)], [W4], bytes(16))
    assert not gguf_reader_refuses(ok)
    assert inspect_file(ok).details["metadata"]["nested"] == {"array_of": "array", "count": 1}
    deeper = build_gguf(tmp_path / "deeper.gguf",
                        [ARCH, _kv(b"nested", 9, struct.pack("<IQ", 9, 1) + inner)], [W4],
                        bytes(16))
    assert f"more than {MAX_GGUF_ARRAY_DEPTH} deep" in refused(deeper)


def test_arrays_nested_200000_deep_are_refused(tmp_path):
    path = hostile.gguf_with_nested_arrays(tmp_path / "deep.gguf")
    assert "nests arrays" in refused(path)
    assert gguf_reader_refuses(path)  # gguf-py dies of RecursionError


def test_huge_string_values_are_cut_not_read(tmp_path):
    path = hostile.gguf_with_huge_strings(tmp_path / "s.gguf", count=6, length=4 << 20)
    facts = inspect_file(path)
    kept = facts.details["metadata"]
    assert [len(kept[f"custom.blob{n}"]) for n in range(6)] == [MAX_KEPT_VALUE_CHARS] * 6
    assert facts.details["metadata_note"] == "6 values cut to 4,096 characters."
    assert not gguf_reader_refuses(path)


def test_a_key_longer_than_the_specification_allows_is_refused(tmp_path):
    path = hostile.gguf_with_huge_key(tmp_path / "k.gguf")
    assert "longer than the 65,535 allowed" in refused(path)


def test_a_walk_of_millions_of_strings_is_refused(tmp_path):
    path = hostile.gguf_with_many_strings(tmp_path / "v.gguf")
    assert "entries" in refused(path) and "beyond the limit" in refused(path)


def test_more_gguf_keys_or_tensors_than_the_limits_are_refused(tmp_path):
    from modelimport.formats.limits import MAX_GGUF_KEYS

    keys = [_kv(b"k%06d" % i, 0, b"\x01") for i in range(MAX_GGUF_KEYS + 1)]
    path = build_gguf(tmp_path / "keys.gguf", keys, [], b"")
    assert f"{MAX_GGUF_KEYS + 1:,} metadata keys, beyond the limit" in refused(path)
    tensors = [(b"t%06d" % i, [0], F32, 0) for i in range(MAX_TENSORS + 1)]
    path = build_gguf(tmp_path / "tensors.gguf", [ARCH], tensors, b"")
    assert f"{MAX_TENSORS + 1:,} tensors, beyond the limit" in refused(path)
