"""The attacks of issue 19 on the pickle scan, through the real CLI: each hand-made file is
refused, the rest of its batch is imported, and the payload is live (loading the original
with `pickle.load` in a subprocess runs it) while nothing of it reaches the library (every
library file loaded the same way runs nothing).

The hostile files of the limits table are refused in bounded memory: the child reports its
own peak RSS, which must stay under 300 MB (times are measured by hand, never asserted).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from cli import cli_env, library_files, run_cli
from factories import (
    make_safetensors,
    make_torch_zip,
    torch_state_dict_pickle,
)

MAX_RSS_KB = 300 * 1024


def su(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw + b"\x94"


def payload_runs(path: Path, marker: Path) -> bool:
    """Load `path` with pickle.load in a fresh interpreter; whether `marker` appeared."""
    marker.unlink(missing_ok=True)
    load = ("import pickle, subprocess, sys\ntry:\n    pickle.load(open(sys.argv[1], 'rb'))\n"
            "except Exception:\n    pass\n"
            "for child in subprocess._active or []:\n    child.wait()")  # a Popen payload
    subprocess.run([sys.executable, "-c", load, str(path)], cwd=marker.parent,
                   capture_output=True, timeout=60, check=False)
    return marker.exists()


def assert_library_runs_nothing(lib: Path, marker: Path) -> None:
    for path in library_files(lib):
        if path.name != "metadata.json":
            assert not payload_runs(path, marker), path


def import_batch(lib: Path, *paths: Path, allow: bool = False) -> dict[str, dict]:
    extra = ["--allow-unsafe-pickle"] if allow else []
    run = run_cli("--library", lib, "import", *paths, "--yes", "--json", "--offline", *extra)
    assert "Traceback" not in run.stderr, run.stderr
    return {Path(r["sources"][0]).name: r for r in run.json["results"]}


def transformers_folder(parent: Path, weights: bool = True) -> Path:
    """A folder `from_pretrained` reads: config.json naming a BERT, its weights, a tokenizer."""
    root = parent / "tiny-bert"
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"architectures": ["BertModel"],
                                                  "model_type": "bert"}))
    (root / "tokenizer.json").write_text('{"version": "1.0"}')
    if weights:
        make_safetensors(root / "model.safetensors")
    return root


def numpy_f2py_checkpoint(path: Path, marker: str) -> Path:
    """Issue 19's generator, inside a real state dict: numpy + f2py.subprocess.Popen."""
    state = torch_state_dict_pickle({"w": ("F32", [4])})
    call = (su("numpy") + su("f2py.subprocess.Popen") + b"\x93\x94(]\x94(" + su("touch")
            + su(marker) + b"etR")
    # The payload runs first (then POP): loading the rest needs torch, not installed here.
    path.write_bytes(b"\x80\x04" + call + b"0" + state[2:])
    return path


def test_names_reached_through_another_module_are_refused(tmp_path: Path):
    marker = tmp_path / "pwned.txt"
    evil = numpy_f2py_checkpoint(tmp_path / "x.pt", marker.name)
    good = make_torch_zip(tmp_path / "good.pt", {"w": ("F32", [4])})
    assert payload_runs(evil, marker)  # the payload is live
    results = import_batch(tmp_path / "lib", evil, good)
    assert results["x.pt"]["status"] == "rejected"
    assert "numpy.f2py.subprocess.Popen" in results["x.pt"]["error"]
    assert results["good.pt"]["status"] == "imported"
    assert_library_runs_nothing(tmp_path / "lib", marker)


def test_an_unknown_class_is_refused_not_imported_as_needing_classes(tmp_path: Path):
    state = torch_state_dict_pickle({"w": ("F32", [4])})
    path = tmp_path / "script.ckpt"
    path.write_bytes(state[:-2] + su("net") + b"cmytrainer.nets\nUNet\n)\x81}b" + b"u.")
    results = import_batch(tmp_path / "lib", path)
    assert results["script.ckpt"]["status"] == "rejected"
    assert "not know to be harmless (mytrainer.nets.UNet)" in results["script.ckpt"]["error"]
    run = run_cli("lookup", path, "--json", "--offline")
    pickle = run.json["results"][0]["file"]["pickle"]
    assert pickle["verdict"] == "unknown" and pickle["unknown"] == ["mytrainer.nets.UNet"]


def safetensors_pickle_polyglot(path: Path, marker: str) -> Path:
    """Issue 19's 2(b), within a 4.4 MiB header: 80 04 47 00 00 00 00 00 is a header length
    to safetensors, and PROTO 4 + BINFLOAT (eating the next 8 bytes, up to the first letter
    of the header's one long key) to a pickle. The pickle hops through the rest of the key
    with SHORT_BINBYTES ("C", length, bytes) and runs its payload from the tensor data."""
    length = 0x00470480
    payload = (su("os") + su("system") + b"\x93" + su(f"touch {marker}") + b"\x85R.")
    tail = json.dumps({"dtype": "U8", "shape": [len(payload)],
                       "data_offsets": [0, len(payload)]}, separators=(",", ":"))
    tail = '":' + tail + "}"
    hops, last = divmod(length - 5, 128)  # the pickle resumes at file offset 11
    assert 32 <= last <= 126 and last >= len(tail)
    key = "k" + ("C~" + "x" * 126) * hops + "C" + chr(last) + "y" * (last - len(tail))
    header = '{"' + key + tail
    assert len(header) == length
    path.write_bytes(struct.pack("<Q", length) + header.encode() + payload)
    return path


def test_a_file_that_is_safetensors_and_a_pickle_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned.txt"
    evil = safetensors_pickle_polyglot(tmp_path / "model.safetensors", marker.name)
    assert evil.read_bytes()[:8] == bytes.fromhex("8004470000000000")
    assert payload_runs(evil, marker)  # torch.load of it, named .ckpt, would run it too
    good = make_safetensors(tmp_path / "good.safetensors")
    results = import_batch(tmp_path / "lib", evil, good)
    error = results["model.safetensors"]["error"]
    assert error == ("model.safetensors parses both as safetensors and as a pickle; "
                     "a file that is two formats at once is refused.")
    assert results["good.safetensors"]["status"] == "imported"
    assert_library_runs_nothing(tmp_path / "lib", marker)


def test_a_tar_torch_would_read_is_refused(tmp_path: Path):
    # 2(a): the first entry's name is a pickle of {} (what the old scan read), and torch.load
    # takes its legacy tar path and unpickles "storages", where the payload is.
    evil_member = b"\x80\x02cos\nsystem\nX\x0f\x00\x00\x00touch pwned.txt\x85R."
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        for name, data in (("\x80\x02}.", b""), ("storages", evil_member),
                           ("tensors", b"\x80\x02]."), ("pickle", b"\x80\x02}.")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert path.read_bytes()[:4] == b"\x80\x02}."
    with tarfile.open(path, "r:") as tar:  # what torch's legacy_load opens, by structure
        storages = tar.extractfile("storages").read()  # type: ignore[union-attr]
    (tmp_path / "storages").write_bytes(storages)
    assert payload_runs(tmp_path / "storages", tmp_path / "pwned.txt")  # what it unpickles
    results = import_batch(tmp_path / "lib", path)
    assert results["old.pth"]["error"].startswith("old.pth is a tar archive: torch.load would")
    assert_library_runs_nothing(tmp_path / "lib", tmp_path / "pwned.txt")


def test_a_protocol_0_pickle_in_a_folder_model_refuses_the_folder(tmp_path: Path):
    marker = tmp_path / "pwned.txt"
    source = transformers_folder(tmp_path / "dl", weights=False)
    evil = source / "pytorch_model.bin"
    evil.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())  # protocol 0
    assert payload_runs(evil, marker)
    run = run_cli("--library", tmp_path / "lib", "import", source, "--yes", "--json",
                  "--offline")
    [result] = run.json["results"]
    assert result["status"] == "rejected", result
    assert "would run code when loaded (os.system)" in result["error"]
    assert library_files(tmp_path / "lib") == []


@pytest.mark.parametrize("name", ["extra_state.pkl", "training_args.bin", "notes.txt"])
def test_any_pickle_of_a_folder_model_is_scanned_whatever_its_name(tmp_path: Path, name: str):
    source = transformers_folder(tmp_path / "dl")
    (source / name).write_bytes(b"cposix\nsystem\n(S'true'\ntR.")  # protocol 0
    run = run_cli("--library", tmp_path / "lib", "import", source, "--yes", "--json",
                  "--offline")
    [result] = run.json["results"]
    assert result["status"] == "rejected" and "posix.system" in result["error"], result


def test_a_folder_models_harmless_training_args_is_imported(tmp_path: Path):
    source = transformers_folder(tmp_path / "dl")
    make_torch_zip(source / "training_args.bin", {}, pickle_bytes=b"\x80\x02}q\x00.")
    [result] = json.loads(run_cli("--library", tmp_path / "lib", "import", source, "--yes",
                                  "--json", "--offline").stdout)["results"]
    assert result["status"] == "imported", result


def _table(folder: Path) -> dict[str, Path]:
    """Issue 19's table, the pickle and ZIP rows, byte for byte as it describes them."""
    folder.mkdir()
    bomb = folder / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("archive/data.pkl", "w") as member:
        member.write(b"\x80\x02")
        for _ in range(240):
            member.write(b"N" * (1 << 20))
    raw = folder / "n-opcodes.ckpt"
    raw.write_bytes(b"\x80\x02" + b"N" * 50_000_000 + b".")
    steady = folder / "n-pop-opcodes.ckpt"  # never grows the stack: only the opcode count stops it
    steady.write_bytes(b"\x80\x02" + b"N0" * 25_000_000 + b"N.")
    deep = folder / "deep.ckpt"
    deep.write_bytes(b"\x80\x02})" + b"\x85" * 10**6 + b"Ns.")
    cd = make_torch_zip(folder / "cd-offsets.pt")
    data = bytearray(cd.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    data[at + 8 : at + 20] = b"\xff" * 12  # entry counts, directory size and offset
    cd.write_bytes(bytes(data))
    empty = folder / "empty.ckpt"  # Medium 9: a pickle holding no tensors is not a model
    empty.write_bytes(b"\x80\x02}.")
    return {p.name: p for p in (bomb, raw, steady, deep, cd, empty)}


def _run_measured(*args: str | Path) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI in a child that prints its own peak RSS (KiB) to stderr's last line.

    Linux's VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child forked from a test
    worker that has grown to 500 MB reports those 500 MB as its own."""
    code = ("import resource, runpy, sys\nsys.argv = ['modelimport', *sys.argv[1:]]\n"
            "def peak():\n"
            "    try:\n"
            "        for line in open('/proc/self/status'):\n"
            "            if line.startswith('VmHWM:'):\n"
            "                return int(line.split()[1])\n"
            "    except OSError:\n"
            "        pass\n"
            "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    runpy.run_module('modelimport', run_name='__main__')\nfinally:\n"
            "    print(peak(), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=cli_env(), stdin=subprocess.DEVNULL, timeout=300)
    return proc, int(proc.stderr.strip().splitlines()[-1])


def test_the_hostile_table_is_refused_in_bounded_memory_and_the_batch_goes_on(tmp_path: Path):
    files = _table(tmp_path / "dl")
    good = make_torch_zip(tmp_path / "dl" / "good.pt", {"w": ("F32", [4])})
    for path in files.values():
        proc, rss = _run_measured("lookup", path, "--json", "--offline")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        [report] = json.loads(proc.stdout)["results"]
        assert report["error"].startswith(path.name) and "\n" not in report["error"]
        assert rss < MAX_RSS_KB, (path.name, rss)
    proc, rss = _run_measured("--library", tmp_path / "lib", "import", tmp_path / "dl",
                              "--yes", "--json", "--offline")
    assert rss < MAX_RSS_KB
    results = {Path(r["sources"][0]).name: r for r in json.loads(proc.stdout)["results"]}
    assert results.pop(good.name)["status"] == "imported"
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(files, "rejected")
    assert all(os.path.exists(p) for p in files.values())
