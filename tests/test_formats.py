"""formats: files known by content, headers read within bounds, lies refused in a sentence."""

from __future__ import annotations

import importlib
import json
import resource
import struct
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from factories import (
    evil_pickle_bytes,
    make_evil_pickle,
    make_gguf,
    make_legacy_torch,
    make_safetensors,
    make_torch_zip,
    torch_state_dict_pickle,
)

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, inspect_file

SMALL_PEAK = 1024 * 1024  # bytes; a refused header must not cost more than this
# Page faults: reading a header costs a handful; touching every page of a 2 GiB mapping
# costs thousands even with the kernel's fault-around (about 1,800 seen for a sparse file).
TOUCHED_PAGES = 500


@dataclass
class ReadCost:
    peak: int  # bytes allocated by Python at most (tracemalloc; numpy reports to it too)
    bytes_read: int  # bytes read by read(2) and friends (/proc/self/io rchar)
    page_faults: int  # pages first touched, e.g. of a memory-mapped file (getrusage)


def _read_cost(path: Path) -> tuple[FileFacts, ReadCost]:
    """inspect_file(path) and what it cost: what it allocated, read and touched, counted
    rather than timed (a busy machine makes time say nothing)."""

    def rchar() -> int:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/self/io")

    def faults() -> int:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_minflt + usage.ru_majflt

    tracemalloc.start()
    read_before, faults_before = rchar(), faults()
    facts = inspect_file(path)
    read, faulted = rchar() - read_before, faults() - faults_before
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return facts, ReadCost(peak, read, faulted)


def refused(path: Path) -> str:
    """Inspect `path`, expecting a refusal; return its message after checking its shape."""
    # Loaded first, so the memory bound measures reading the file, not importing a reader.
    importlib.import_module("modelimport.formats.torch_file")
    importlib.import_module("modelimport.formats.gguf_file")
    importlib.import_module("modelimport.formats.safetensors_file")
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFile) as caught:
            inspect_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert path.name in message
    assert message.endswith(".") and "\n" not in message
    assert peak < SMALL_PEAK, f"refusing {path.name} allocated {peak} bytes"
    return message


def raw_safetensors(
    path: Path, header: bytes, length: int | None = None, data: bytes = b""
) -> Path:
    length = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", length) + header + data)
    return path


# --- safetensors


def test_safetensors_header_is_read(tmp_path):
    path = make_safetensors(
        tmp_path / "m.safetensors",
        {"a.weight": ("F16", [4, 8]), "b.weight": ("BF16", [8]), "ids": ("I64", [3])},
        metadata={"modelspec.architecture": "stable-diffusion-v1", "ss_tag_frequency": "x" * 9000},
    )
    facts = inspect_file(path)
    assert facts.format == "safetensors"
    assert facts.size == path.stat().st_size
    assert facts.details["tensor_count"] == 3
    assert facts.details["parameter_count"] == 32 + 8 + 3
    assert facts.details["tensor_dtypes"] == {"F16": 1, "BF16": 1, "I64": 1}
    assert facts.details["metadata"]["modelspec.architecture"] == "stable-diffusion-v1"
    assert len(facts.details["metadata"]["ss_tag_frequency"]) < 5000  # bounded in metadata.json
    assert facts.tensors["a.weight"].shape == (4, 8)
    json.dumps(facts.details)  # goes into metadata.json as is


def test_big_safetensors_costs_only_its_header(tmp_path):
    # A 2 GiB file whose tensor data is a hole: reading it would take seconds and show in RSS.
    path = tmp_path / "big.safetensors"
    n = 2**30
    header = json.dumps({"w": {"dtype": "F16", "shape": [n], "data_offsets": [0, 2 * n]}}).encode()
    raw_safetensors(path, header)
    with open(path, "r+b") as fh:
        fh.truncate(8 + len(header) + 2 * n)
    facts, cost = _read_cost(path)
    assert facts.details["parameter_count"] == n
    assert cost.peak < SMALL_PEAK
    assert cost.bytes_read < SMALL_PEAK and cost.page_faults < TOUCHED_PAGES


def test_header_longer_than_file_is_refused(tmp_path):
    path = raw_safetensors(tmp_path / "lies.safetensors", b'{"a": 1}', length=10_000)
    assert "header claims 10000 bytes" in refused(path)


def test_header_of_2_pow_60_is_refused_without_allocating(tmp_path):
    path = raw_safetensors(tmp_path / "huge.safetensors", b"{}" * 10, length=2**60)
    assert "header claims" in refused(path)


def test_header_over_the_cap_is_refused(tmp_path, monkeypatch):
    from modelimport.formats import safetensors_file

    monkeypatch.setattr(safetensors_file, "MAX_SAFETENSORS_HEADER_BYTES", 16)
    path = raw_safetensors(tmp_path / "capped.safetensors", b'{"__metadata__": {"a": "bbbbbb"}}')
    assert "limit" in refused(path)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'{"a": {"dtype": "F16", "shape": [2], "data_of', "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 400]}}', "beyond"),
        (b'{"a": {"dtype": "F16", "shape": [8], "data_offsets": [0, 4]}}', "claims 4 bytes"),
        (b'{"a": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 0]}}', "malformed shape"),
        (b'{"a": {"shape": [2], "data_offsets": [0, 4]}}', "lacks a dtype"),
        (b'{"a": 5}', "not described by a JSON object"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"a": {"dtype": "F16", "shape": [2], "data_of\xff": [0, 4]}}', "not valid JSON"),
    ],
)
def test_lying_or_broken_safetensors_headers_are_refused(tmp_path, header, expected):
    path = raw_safetensors(tmp_path / "bad.safetensors", header, data=b"\x00" * 4)
    assert expected in refused(path)


def test_a_safetensors_file_without_tensors_is_not_a_model(tmp_path):
    path = raw_safetensors(tmp_path / "none.safetensors", b'{"__metadata__": {"a": "b"}}')
    assert "holds no tensors, so it is not a model" in refused(path)


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert "empty" in refused(path)


def test_html_page_renamed_safetensors_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_text("<!DOCTYPE html><html><body>Sign in to download</body></html>")
    assert "HTML" in refused(path)


def test_tiny_file_is_refused(tmp_path):
    path = tmp_path / "tiny.bin"
    path.write_bytes(b"abc")
    assert "not a model file: not a PyTorch checkpoint (ZIP or pickle)" in refused(path)


# --- GGUF


def test_gguf_metadata_is_read(tmp_path):
    path = make_gguf(
        tmp_path / "m.gguf",
        name="Meta Llama 3 8B Instruct",
        kv={"general.file_type": 15, "llama.context_length": 8192,
            "general.source.huggingface.repository": "meta-llama/Meta-Llama-3-8B-Instruct"},
        tensors={"token_embd.weight": [16, 8], "blk.0.attn_q.weight": [8, 8]},
    )
    facts = inspect_file(path)
    assert facts.format == "gguf"
    assert facts.details["gguf_version"] == 3
    assert facts.details["architecture"] == "llama"
    assert facts.details["quantization"] == "Q4_K_M"
    assert facts.details["context_length"] == 8192
    assert facts.details["parameter_count"] == 16 * 8 + 8 * 8
    assert facts.details["metadata"]["general.name"] == "Meta Llama 3 8B Instruct"
    assert facts.tensors["token_embd.weight"].shape == (16, 8)
    json.dumps(facts.details)


def test_gguf_tokenizer_arrays_are_summarised_not_kept(tmp_path):
    import gguf

    path = tmp_path / "tok.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    # A vocabulary of real size (Gemma's 262,144 tokens, 300,000 merges): within the walk's limit.
    writer.add_token_list([f"tok{i}" for i in range(262_144)])
    writer.add_token_merges([f"a{i} b{i}" for i in range(300_000)])
    writer.add_array("general.tags", ["a", "b"])
    writer.add_tensor("w", __import__("numpy").ones([4, 4], dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    meta = inspect_file(path).details["metadata"]
    assert meta["tokenizer.ggml.tokens"] == {"array_of": "string", "count": 262_144}
    assert meta["tokenizer.ggml.merges"] == {"array_of": "string", "count": 300_000}
    assert meta["general.tags"] == ["a", "b"]


@pytest.mark.parametrize("version", [1, 4, 99, 2**31])
def test_wrong_gguf_version_is_refused(tmp_path, version):
    path = tmp_path / f"v{version}.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 1, 1) + b"\x00" * 64)
    assert f"version {version}" in refused(path)


def test_truncated_gguf_is_refused(tmp_path):
    whole = make_gguf(tmp_path / "whole.gguf", name="x" * 40, tensors={"w": [64, 64]})
    data = whole.read_bytes()
    for cut in (10, 40, 90, len(data) - 100):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        assert "truncated" in refused(path)


def test_gguf_with_absurd_counts_or_lengths_is_refused(tmp_path):
    huge_counts = tmp_path / "counts.gguf"
    huge_counts.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62) + b"\x00" * 64)
    assert "truncated or corrupt" in refused(huge_counts)
    huge_key = tmp_path / "key.gguf"
    huge_key.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**60) + b"\x00" * 64)
    assert "truncated or corrupt" in refused(huge_key)


# --- PyTorch ZIP and pickles


def test_torch_zip_lists_tensors_without_unpickling(tmp_path):
    path = make_torch_zip(tmp_path / "m.ckpt",
                          {"a.weight": ("F16", [4, 3]), "b.bias": ("F32", [4])}, wrap="state_dict")
    facts = inspect_file(path)
    assert facts.format == "torch-zip"
    assert facts.details["pickle_member"] == "archive/data.pkl"
    assert facts.tensors["a.weight"].dtype == "F16" and facts.tensors["a.weight"].shape == (4, 3)
    assert facts.details["parameter_count"] == 16
    assert facts.details["pickle_scan"]["verdict"] == "safe"
    assert "torch._utils._rebuild_tensor_v2" in facts.details["pickle_scan"]["globals"]
    json.dumps(facts.details)


def test_zip_without_data_pkl_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "notes.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert "not a PyTorch checkpoint" in refused(path)


def test_damaged_zip_is_refused(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    assert "damaged ZIP" in refused(path)


def _patch_zip(path: Path, signature: bytes, offset: int, value: bytes) -> Path:
    """Overwrite bytes at `offset` inside the first ZIP record that starts with `signature`."""
    data = bytearray(path.read_bytes())
    at = data.rindex(signature) if signature == b"PK\x05\x06" else data.index(signature)
    data[at + offset : at + offset + len(value)] = value
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("signature", "offset", "value", "message"),
    [
        # central directory: compression method 99, which zipfile does not implement
        (b"PK\x01\x02", 10, (99).to_bytes(2, "little"), "ZIP archive PyTorch does not write"),
        # central directory: flag bit 5 (compressed patched data)
        (b"PK\x01\x02", 8, (1 << 5).to_bytes(2, "little"), "ZIP archive PyTorch does not write"),
        # end record: the directory's offset pushed far out, so entries point before byte 0
        (b"PK\x05\x06", 16, (0x7FFFFFF0).to_bytes(4, "little"), "damaged ZIP"),
        # central directory: UTF-8 flag with a file name that is not UTF-8
        (b"PK\x01\x02", 8, (1 << 11).to_bytes(2, "little"), "damaged ZIP"),
    ],
    ids=["compression-99", "patched-data", "offset-before-start", "bad-utf8-name"],
)
def test_zip_with_damaged_directory_is_refused(tmp_path, signature, offset, value, message):
    path = make_torch_zip(tmp_path / "m.pt", {"w": ("F32", [4, 4])})
    if value == (1 << 11).to_bytes(2, "little"):
        _patch_zip(path, signature, 46, b"\xab")  # first byte of the entry's name
    _patch_zip(path, signature, offset, value)
    assert message in refused(path)


@pytest.mark.parametrize("stack_global", [False, True])
def test_pickle_importing_os_system_is_unsafe(tmp_path, stack_global):
    path = make_evil_pickle(tmp_path / "evil.bin", stack_global=stack_global)
    facts = inspect_file(path)
    assert facts.format == "pickle"
    scan = facts.details["pickle_scan"]
    assert scan["verdict"] == "unsafe"
    assert "os.system" in scan["dangerous"]


def test_zip_whose_data_pkl_imports_os_system_is_unsafe(tmp_path):
    path = make_torch_zip(tmp_path / "evil.pt", pickle_bytes=evil_pickle_bytes())
    scan = inspect_file(path).details["pickle_scan"]
    assert scan["verdict"] == "unsafe" and "os.system" in scan["dangerous"]


def test_payload_hidden_in_a_second_pickle_is_found(tmp_path):
    path = tmp_path / "two.pt"
    path.write_bytes(torch_state_dict_pickle({"w": ("F32", [4])}) + evil_pickle_bytes())
    assert inspect_file(path).details["pickle_scan"]["verdict"] == "unsafe"
    path.write_bytes(torch_state_dict_pickle({"w": ("F32", [4])}) + b"cos\nsystem\n)R.")
    assert inspect_file(path).details["pickle_scan"]["verdict"] == "unsafe"  # protocol 0
    # behind empty pickles too (up to 8 are read)
    path.write_bytes(torch_state_dict_pickle({"w": ("F32", [4])}) + b"\x80\x02N." * 3
                     + evil_pickle_bytes())
    assert inspect_file(path).details["pickle_scan"]["verdict"] == "unsafe"


def test_a_pickle_holding_no_tensors_is_not_a_model(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"\x80\x02}.")
    assert refused(path) == "empty.ckpt is a pickle holding no tensors, not a model."
    make_torch_zip(tmp_path / "empty.pt", {}, pickle_bytes=b"\x80\x02}.")
    assert "holding no tensors" in refused(tmp_path / "empty.pt")


def test_legacy_torch_file_is_read(tmp_path):
    path = make_legacy_torch(tmp_path / "old.pth", {"conv.weight": ("F32", [2, 3, 3, 3])})
    facts = inspect_file(path)
    assert facts.format == "pickle"
    assert facts.details["legacy_torch"] is True
    assert facts.tensors["conv.weight"].shape == (2, 3, 3, 3)
    assert facts.details["pickle_scan"]["verdict"] == "safe"


def test_garbage_after_pickle_header_is_refused(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x80\x02" + b"\xff" * 64)
    assert "not a readable pickle" in refused(path)


def test_facts_keep_the_contract_fields(tmp_path):
    facts = inspect_file(make_safetensors(tmp_path / "a.safetensors"))
    assert isinstance(facts, FileFacts)
    assert (facts.path, facts.format) == (tmp_path / "a.safetensors", "safetensors")


def test_big_gguf_costs_only_its_header(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "big.gguf"
    n = 2**30
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("general.file_type", 1)
    writer.add_tensor_info("blk.0.ffn_up.weight", [n], np.dtype(np.float16), 2 * n)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header_end = path.stat().st_size
    with open(path, "r+b") as fh:  # the tensor data is a 2 GiB hole
        fh.truncate(-(-header_end // 32) * 32 + 2 * n)
    facts, cost = _read_cost(path)
    assert facts.details["parameter_count"] == n and facts.details["quantization"] == "F16"
    assert cost.peak < 4 * SMALL_PEAK  # the gguf package's own import is counted too
    assert cost.bytes_read < SMALL_PEAK and cost.page_faults < TOUCHED_PAGES


def test_random_bytes_named_like_a_checkpoint_are_not_called_bad_safetensors(tmp_path):
    path = tmp_path / "random.ckpt"
    path.write_bytes(bytes(range(7, 255)) * 40)
    message = refused(path)
    assert message.startswith("random.ckpt is not a model file: not a PyTorch checkpoint")
    assert "safetensors file" not in message


# A header length whose low bytes are 80 02..80 05 reads like a pickle's PROTO opcode.
@pytest.mark.parametrize("header_size", [640, 896, 1152, 1408, 65536 + 1152])
def test_safetensors_whose_length_reads_like_a_pickle_is_safetensors(tmp_path, header_size):
    tensors = {f"blocks.{i}.weight": ("F16", [4, 4]) for i in range(5)}
    path = make_safetensors(tmp_path / "m.safetensors", tensors, header_size=header_size)
    assert path.read_bytes()[:2] in {b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"}
    facts = inspect_file(path)
    assert facts.format == "safetensors" and facts.details["header_bytes"] == header_size
    assert len(facts.tensors) == 5


def test_a_pickle_is_still_a_pickle(tmp_path):
    path = make_evil_pickle(tmp_path / "evil.safetensors")  # a lying extension changes nothing
    assert inspect_file(path).format == "pickle"


@pytest.mark.parametrize(("name", "body", "says"), [
    ("config.json", '{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}',
     "config.json is a model config file (JSON), not a model file."),
    ("model.safetensors.index.json", '{"metadata": {}, "weight_map": {"a": "b"}}',
     "the index of a sharded model"),
    ("model_index.json", '{"_class_name": "StableDiffusionPipeline"}',
     "model_index.json is a diffusers config file (JSON), not a model file."),
    ("notes.json", "[1, 2]", "notes.json is a JSON file, not a model file."),
    ("deep.json", "[" * 30000 + "]" * 30000, "deep.json is a JSON file, not a model file."),
    ("settings.json", "{\"steps\": 20}", "settings.json is a JSON config file, not a model file."),
    ("README.txt", "Download the weights from the link below.\n",
     "README.txt is a text file, not a model file."),
    ("hi.txt", "hi", "hi.txt is a text file, not a model file."),
    ("v1-inference.yaml", "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n",
     "v1-inference.yaml is a YAML config file, not a model file."),
])
def test_config_and_text_files_are_called_what_they_are(tmp_path, name, body, says):
    path = tmp_path / name
    path.write_text(body)
    message = refused(path)
    assert says in message and "safetensors file" not in message
