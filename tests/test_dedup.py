"""Duplicates (importer/pipeline.py `_find_duplicate`): the fast hash (first and last 8 MiB
plus the size) only finds candidates; a file is a duplicate only when its full SHA256 is one
the library already holds. A file that differs in one byte the fast hash never reads is a
different model, and the person's only copy of it: it must be imported."""

from __future__ import annotations

from pathlib import Path

from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors

from modelimport.hashing import fast_hash

BIG = 40 << 20  # well over the first and last 8 MiB that the fast hash reads


def _import(lib: Path, path: Path) -> dict:
    run = run_cli("--library", lib, "import", path, "--yes", "--json", "--offline")
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    return result


def test_a_file_one_byte_apart_in_the_middle_is_imported_not_called_a_duplicate(tmp_path: Path):
    lib = tmp_path / "lib"
    first = make_safetensors(tmp_path / "a" / "my-finetune.safetensors", padding=BIG)
    assert _import(lib, first)["status"] == "imported"

    second = tmp_path / "b" / "my-finetune.safetensors"
    second.parent.mkdir()
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle of the tensor data
    second.write_bytes(data)
    assert fast_hash(second) == fast_hash(first)  # the case the fast hash cannot tell apart

    result = _import(lib, second)
    assert result["status"] == "imported", result
    weights = [p for p in library_files(lib) if p.suffix == ".safetensors"]
    assert sorted(p.read_bytes() == bytes(data) for p in weights) == [False, True]

    # And the very same bytes again are a duplicate: nothing copied a third time.
    third = tmp_path / "c" / "my-finetune.safetensors"
    third.parent.mkdir()
    third.write_bytes(data)
    again = _import(lib, third)
    assert again["status"] == "duplicate"
    assert again["model_id"] == result["model_id"]
    assert len([p for p in library_files(lib) if p.suffix == ".safetensors"]) == 2
