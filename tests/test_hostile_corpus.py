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

from cli import cli_env, library_files
from factories import make_gguf, make_safetensors, torch_state_dict_pickle

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
