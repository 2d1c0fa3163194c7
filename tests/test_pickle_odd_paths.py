"""Pickles that reach code through allowlisted names used oddly: each would run or change
code in a process that loads it with pickle.load (torch.load(weights_only=False)) although
every global it names is on the allowlist. Never unpickled here except the harmless
demonstration of what BUILD on a class does."""

from __future__ import annotations

import argparse
import io
import pickle

import pytest
from factories import _p_global, _p_str, torch_state_dict_pickle

from modelimport.formats.pickle_scan import run_pickle
from modelimport.formats.pickle_verdict import classify_globals

STATE = torch_state_dict_pickle({"w": ("F32", [4])})


def _verdict(prefix: bytes) -> dict:
    """A real state dict pickle whose stream first runs `prefix` (and pops what it left)."""
    result = run_pickle(io.BytesIO(STATE[:2] + prefix + b"0" + STATE[2:]))
    return classify_globals(result.globals, result.called)


def _build_on(module: str, name: str) -> bytes:
    """BUILD with a slot state on the global itself: setattr(module.name, "__repr__", str)."""
    return _p_global(module, name) + b"N}" + _p_str("__repr__") + _p_global("builtins", "str") \
        + b"s\x86b"


def test_build_on_a_class_sets_its_attributes_in_the_loading_process():
    """What the refusal below prevents, shown on a harmless class and put back."""
    before = argparse.Namespace.__repr__
    try:
        pickle.loads(b"\x80\x02" + _build_on("argparse", "Namespace") + b".")
        assert argparse.Namespace.__repr__ is str
    finally:
        argparse.Namespace.__repr__ = before


@pytest.mark.parametrize("glob", [("argparse", "Namespace"), ("torch", "Tensor"),
                                  ("torch._utils", "_rebuild_tensor_v2")])
def test_build_on_an_allowlisted_global_itself_is_unsafe(glob):
    scan = _verdict(_build_on(*glob))
    assert scan["verdict"] == "unsafe", scan
    assert f"<attributes set on>.{glob[0]}.{glob[1]}" in scan["dangerous"]


def test_build_on_an_object_the_pickle_made_stays_allowed():
    made = _p_global("argparse", "Namespace") + b")R}" + _p_str("lr") + b"K\x01sb"
    assert _verdict(made)["verdict"] == "needs_classes"


CHECKPOINT = ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")


def test_reconstructor_with_an_object_as_base_runs_its_init_and_is_unsafe():
    """copyreg._reconstructor(cls, base, state) runs base.__init__(obj, state): with base an
    instance made by NEWOBJ (allowed: no __init__), that is ModelCheckpoint.__init__, a class
    the allowlist lets a checkpoint only name."""
    instance = _p_global(*CHECKPOINT) + b")\x81"
    payload = _p_global("copyreg", "_reconstructor") + _p_global(*CHECKPOINT) + instance \
        + _p_str("/tmp/x") + b"\x87R"
    assert _verdict(instance)["verdict"] == "needs_classes"  # naming and NEWOBJ alone: fine
    scan = _verdict(payload)
    assert scan["verdict"] == "unsafe", scan


def test_calling_an_object_the_pickle_made_is_unsafe():
    """REDUCE on a callable that is no named global: NEWOBJ made an instance, REDUCE calls it
    (its class's __call__)."""
    payload = _p_global(*CHECKPOINT) + b")\x81" + b")R"
    scan = _verdict(payload)
    assert scan["verdict"] == "unsafe", scan


# A protocol-0 payload after a real state dict, behind an opcode pickletools cannot read but
# pickle.load can: Python's unpickler (torch.load decodes STRING as UTF-8) reads on to it.
PAYLOAD = b"cposix\nsystem\n(S'echo pwned'\ntR0"
UNREADABLE_FOR_US = {
    "utf8-string": "S'caf\u00e9'\n0".encode(),  # genops decodes STRING as ASCII
    "long-line": b"S'" + b"A" * 100_000 + b"'\n0",  # beyond our 64 KiB line
}


@pytest.mark.parametrize("name", sorted(UNREADABLE_FOR_US))
def test_a_payload_behind_what_we_cannot_read_is_not_judged_safe(tmp_path, name):
    from modelimport.errors import InvalidModelFile
    from modelimport.formats.torch_file import scan_folder_pickle

    hidden = UNREADABLE_FOR_US[name]
    seen: list[tuple[str, str]] = []

    class Recording(pickle.Unpickler):
        def find_class(self, module, gname):  # records, imports nothing
            seen.append((module, gname))
            return lambda *args: None

    Recording(io.BytesIO(b"\x80\x02" + hidden + PAYLOAD + b"N."), encoding="utf-8").load()
    assert seen == [("posix", "system")]  # pickle.load reaches the payload

    path = tmp_path / "optimizer.pt"  # a folder model's file its loader torch.loads
    path.write_bytes(STATE[:-1] + hidden + PAYLOAD + b".")
    try:
        facts = scan_folder_pickle(path)
    except InvalidModelFile as refused:
        assert "beyond what this tool scans" in str(refused)
    else:
        assert facts is not None and facts.details["pickle_scan"]["verdict"] == "unsafe"


@pytest.mark.parametrize("name", sorted(UNREADABLE_FOR_US))
def test_a_protocol_0_pickle_we_cannot_read_is_still_a_pickle(tmp_path, name):
    """Before any global: the folder file was taken for no pickle at all and copied as it
    was, though torch.load of it reaches posix.system."""
    from modelimport.errors import InvalidModelFile
    from modelimport.formats.torch_file import scan_folder_pickle

    path = tmp_path / "scheduler.bin"
    path.write_bytes(UNREADABLE_FOR_US[name] + PAYLOAD + b"N.")
    with pytest.raises(InvalidModelFile, match="not a readable pickle"):
        scan_folder_pickle(path)
    text = tmp_path / "README.md"  # text with UTF-8 is no pickle
    text.write_bytes("S\u00e9ance notes: caf\u00e9\n".encode())
    assert scan_folder_pickle(text) is None


@pytest.mark.parametrize("name", sorted(UNREADABLE_FOR_US))
def test_a_second_pickle_we_cannot_read_is_not_taken_for_trailing_bytes(tmp_path, name):
    from modelimport.formats import inspect_file

    path = tmp_path / "two.ckpt"
    path.write_bytes(STATE + UNREADABLE_FOR_US[name] + PAYLOAD + b"N.")
    assert inspect_file(path).details["pickle_scan"]["verdict"] == "unsafe"


def test_a_safetensors_file_whose_header_length_reads_as_an_opcode_is_no_pickle(tmp_path):
    """A header of 80 bytes starts the file with 'P' (PERSID): the line it reads is the rest
    of the file, which pickle.load refuses as well."""
    from factories import make_safetensors

    from modelimport.formats import inspect_file

    path = make_safetensors(tmp_path / "m.safetensors", {"w": ("F32", [256, 256])})
    assert path.read_bytes()[:1] == b"P"
    assert inspect_file(path).format == "safetensors"


def test_safetensors_files_whose_header_reads_as_persid_with_any_bytes_are_no_pickles(tmp_path):
    """PERSID's line is decoded as ASCII by pickle.load as by pickletools: random tensor
    bytes after an 80-byte header are no STRING pickle.load reads on."""
    import os

    from factories import make_safetensors

    from modelimport.formats import inspect_file

    for seed in range(3):
        path = make_safetensors(tmp_path / f"m{seed}.safetensors",
                                {f"w{seed}": ("U8", [1_000_000])}, fill=os.urandom(1_000_000))
        assert path.read_bytes()[:1] == b"P"
        assert inspect_file(path).format == "safetensors"
