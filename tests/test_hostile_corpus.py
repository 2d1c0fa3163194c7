"""A generated corpus of hostile files, imported as a person would (the real CLI): each is
refused in bounded time and memory with a clear reason, nothing is written outside the
library, and no partial model appears in it."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cli import cli_env, library_files
from factories import make_gguf, make_safetensors, torch_state_dict_pickle
from hostile_headers import (
    gguf_with_huge_key,
    gguf_with_huge_strings,
    gguf_with_many_strings,
    gguf_with_nested_arrays,
    safetensors_with_many_metadata,
    safetensors_with_many_tensors,
)

MEMORY_LIMIT = 1536 << 20  # address space: far below what trusting any lying size would take


def _safetensors_header(raw: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def _corpus(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    files: dict[str, Path] = {}

    def put(name: str | bytes, data: bytes) -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(name))))
        path.write_bytes(data)
        files[os.fsdecode(name) if isinstance(name, bytes) else name] = path
        return path

    good = make_safetensors(folder / "good-template.safetensors").read_bytes()
    (folder / "good-template.safetensors").unlink()
    put("truncated.safetensors", good[: len(good) // 2])
    put("empty.safetensors", b"")
    put("huge-header-length.safetensors", _safetensors_header(b"{}", 2**63 - 1))
    put("header-beyond-file.safetensors", _safetensors_header(b'{"a":1}', 10 << 30))
    lying = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}})
    put("lying-offsets.safetensors", _safetensors_header(lying.encode()))
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    put("deep-json.safetensors", _safetensors_header(deep))
    put("not-json.safetensors", _safetensors_header(b"\xff\xfe" * 64))

    gguf = make_gguf(folder / "g.gguf").read_bytes()
    (folder / "g.gguf").unlink()
    put("truncated.gguf", gguf[:40])
    # tensor count and metadata count claiming 2^63 entries
    put("huge-counts.gguf", gguf[:8] + struct.pack("<QQ", 2**63, 2**63) + gguf[24:])
    put("not-gguf.gguf", b"GGUF" + b"\xff" * 60)

    text_zip = folder / "text.pt"
    with zipfile.ZipFile(text_zip, "w") as zf:
        zf.writestr("readme.txt", "not a checkpoint")
    files["text.pt"] = text_zip
    bomb = folder / "lying-size.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", torch_state_dict_pickle({"w": ("F32", [4])}))
    data = bytearray(bomb.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
        at = data.find(sig)
        data[at + offset : at + offset + 4] = struct.pack("<I", 0xFFFFFFF0)
    bomb.write_bytes(bytes(data))
    files["lying-size.pt"] = bomb
    put("not-zip.pt", b"PK\x03\x04" + b"\x00" * 100)
    put("garbage-pickle.ckpt", b"\x80\x02" + bytes(range(256)) * 4)
    put("endless-pickle.bin", b"\x80\x02" + b"(" * 200_000)  # marks forever, never a stop

    put(b"new\nline.safetensors", good[:20])
    put(b"bad-\xff\xfe-utf8.safetensors", good[:20])
    (folder / "loop.safetensors").symlink_to(folder / "loop.safetensors")
    files["loop.safetensors"] = folder / "loop.safetensors"
    os.mkfifo(folder / "pipe.gguf")
    files["pipe.gguf"] = folder / "pipe.gguf"
    return files


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for folder, dirs, names in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            continue
        for name in dirs + names:
            path = os.path.join(folder, name)
            if path != str(skip):
                st = os.lstat(path)
                found[path] = (st.st_size, st.st_mtime_ns)
    return found


def test_every_hostile_file_is_refused_with_a_reason(tmp_path: Path):
    files = _corpus(tmp_path / "corpus")
    lib = tmp_path / "lib"
    before = _snapshot(tmp_path, lib)

    proc = subprocess.run(
        [sys.executable, "-m", "modelimport", "--library", str(lib), "import",
         str(tmp_path / "corpus"), "--yes", "--json", "--offline"],
        capture_output=True, text=True, env=cli_env(), stdin=subprocess.DEVNULL,
        timeout=120,  # a hang guard, not a timing claim: every reader is bounded
        preexec_fn=_limit_memory,
    )  # fmt: skip

    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Internal error" not in proc.stderr
    results = json.loads(proc.stdout)["results"]
    by_name = {os.path.basename(r["sources"][0]): r for r in results}
    assert set(by_name) == set(files), set(files) ^ set(by_name)
    for name, result in by_name.items():
        assert result["status"] in ("rejected", "failed", "skipped"), (name, result)
        assert result["error"] and "\n" not in result["error"].replace(name, ""), (name, result)
    assert json.loads(proc.stdout)["summary"]["imported"] == 0
    assert library_files(lib) == []
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    assert _snapshot(tmp_path, lib) == before  # nothing written outside the library


def test_lookup_of_the_hostile_corpus_is_bounded_too(tmp_path: Path):
    files = _corpus(tmp_path / "corpus")
    names = [str(p) for n, p in files.items() if n not in ("pipe.gguf", "loop.safetensors")]
    proc = subprocess.run(
        [sys.executable, "-m", "modelimport", "lookup", *names, "--json", "--offline"],
        capture_output=True, text=True, env=cli_env(), stdin=subprocess.DEVNULL,
        timeout=120, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Internal error" not in proc.stderr


# --- headers built to exhaust a reader (issue 19, High 6): each in a batch with two good files

RSS_LIMIT = 300 << 20  # the budget every hostile header is held to (docs/safety.md)


# Runs the CLI as its child and writes that child's peak memory to the file named first: a
# process forked from pytest would count pytest's own memory, held at the fork, as its own.
MEASURE = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "modelimport", *sys.argv[2:]])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(code)
"""


def _run_measured(args: list[str], lib: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI; return its result and its peak resident memory in bytes."""
    peak = lib.parent / "peak-rss"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(peak), *args], capture_output=True, text=True,
        env=cli_env(), stdin=subprocess.DEVNULL, timeout=120,  # a hang guard, not a timing
    )  # fmt: skip
    return done, int(peak.read_text())


# name -> (writer, whether the file is imported (metadata cut, with a note) or refused)
HOSTILE_HEADERS = {
    "nested-arrays.gguf": (gguf_with_nested_arrays, False),
    "huge-strings.gguf": (gguf_with_huge_strings, True),
    "huge-key.gguf": (gguf_with_huge_key, False),
    "million-strings.gguf": (gguf_with_many_strings, False),
    "many-tensors.safetensors": (safetensors_with_many_tensors, False),
    "many-metadata.safetensors": (safetensors_with_many_metadata, False),
    "100k-metadata.safetensors": (lambda p: safetensors_with_many_metadata(p, 100_000), True),
}


@pytest.mark.parametrize("name", HOSTILE_HEADERS)
def test_a_hostile_header_costs_little_and_spares_the_batch(tmp_path: Path, name: str):
    write, imported = HOSTILE_HEADERS[name]
    folder = tmp_path / "batch"
    folder.mkdir()
    hostile = write(folder / name)
    make_safetensors(folder / "good-lora.safetensors", {"lora_unet_x.lora_down.weight":
                                                        ("F16", [4, 8])})  # fmt: skip
    make_gguf(folder / "good-llm.gguf")
    lib = tmp_path / "lib"

    lookup, lookup_rss = _run_measured(["lookup", str(hostile), "--json", "--offline"], lib)
    assert "Traceback" not in lookup.stderr and "Internal error" not in lookup.stderr
    assert lookup.returncode == (0 if imported else 1), lookup.stderr[-2000:]
    assert lookup_rss < RSS_LIMIT, lookup_rss

    batch, batch_rss = _run_measured(["--library", str(lib), "import", str(folder), "--yes",
                                      "--json", "--offline"], lib)  # fmt: skip
    assert "Traceback" not in batch.stderr and "Internal error" not in batch.stderr
    assert batch_rss < RSS_LIMIT, batch_rss
    results = {os.path.basename(r["sources"][0]): r for r in json.loads(batch.stdout)["results"]}
    assert results["good-lora.safetensors"]["status"] == "imported"
    assert results["good-llm.gguf"]["status"] == "imported"
    if imported:
        assert batch.returncode == 0 and results[name]["status"] == "imported"
        record = lib / results[name]["model_id"] / "metadata.json"
        assert record.stat().st_size < 256 * 1024  # a 100 MB header kept as a few KB
        assert json.loads(record.read_text())["file_says"]["embedded_metadata_note"]
    else:
        assert batch.returncode == 1
        error = results[name]["error"]
        assert results[name]["status"] == "rejected" and error.startswith(name), error
        assert "\n" not in error, error
        assert any(word in error for word in ("beyond", "limit", "allowed")), error
