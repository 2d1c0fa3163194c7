"""The library never claims to hold what it does not: a file deleted from it by hand is not
a "duplicate" of a new copy, and a symlink given to --move moves no link into the library."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors


def _import(lib: Path, *args: str | Path) -> dict:
    run = run_cli("--library", lib, "import", *args, "--yes", "--json")
    assert run.code in (0, 1), run.stderr
    [result] = run.json["results"]
    return result


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_file_gone_from_the_library_is_not_a_duplicate(tmp_path: Path, damage: str):
    source = make_safetensors(tmp_path / "lora.safetensors", {"w": ("F32", [64, 64])})
    lib = tmp_path / "lib"
    first = _import(lib, source)
    held = lib / first["model_id"] / "lora.safetensors"
    if damage == "deleted":
        held.unlink()
    else:
        os.truncate(held, 100)
    copy = tmp_path / "elsewhere" / "lora.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())

    # The very path it came from (unchanged, so otherwise recognised without reading it).
    result = _import(lib, source)
    assert result["status"] == "imported", result
    assert result["model_id"] != first["model_id"]
    fresh = lib / result["model_id"] / "lora.safetensors"
    assert hashlib.sha256(fresh.read_bytes()).hexdigest() == first["files"][0]["sha256"]
    # Now the library holds it again: a copy elsewhere is a duplicate of the new model.
    again = _import(lib, copy)
    assert (again["status"], again["model_id"]) == ("duplicate", result["model_id"])


@pytest.mark.parametrize("relative", [False, True], ids=["absolute-link", "relative-link"])
def test_move_of_a_symlink_copies_the_file_and_leaves_link_and_target(
    tmp_path: Path, relative: bool
):
    target = make_safetensors(tmp_path / "real" / "target.safetensors")
    links = tmp_path / "links"
    links.mkdir()
    link = links / "pointer.safetensors"
    link.symlink_to(os.path.relpath(target, links) if relative else target)
    data = target.read_bytes()
    lib = tmp_path / "lib"

    result = _import(lib, links, "--move")

    assert result["status"] == "imported", result
    [held] = [p for p in library_files(lib) if p.suffix == ".safetensors"]
    assert not held.is_symlink() and held.read_bytes() == data
    assert link.is_symlink() and target.read_bytes() == data  # nothing moved or deleted
    target.unlink()  # the library copy does not depend on the original
    assert held.read_bytes() == data


def test_metadata_json_is_as_readable_as_the_model_file(tmp_path: Path):
    source = make_safetensors(tmp_path / "m.safetensors")
    lib = tmp_path / "lib"
    model_dir = lib / _import(lib, source)["model_id"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in model_dir.iterdir()}
    assert modes["metadata.json"] == modes["m.safetensors"], modes


def test_a_missing_index_is_rebuilt_before_anything_is_imported(tmp_path: Path):
    source = make_safetensors(tmp_path / "m.safetensors")
    lib = tmp_path / "lib"
    first = _import(lib, source)
    for leftover in (lib / ".modelimport").glob("index.sqlite*"):
        leftover.unlink()

    again = run_cli("--library", lib, "import", source, "--yes", "--json")

    assert "The index was missing; rebuilt it from 1 metadata.json file(s)." in again.stderr
    [result] = again.json["results"]
    assert (result["status"], result["model_id"]) == ("duplicate", first["model_id"])
    assert len([p for p in library_files(lib) if p.name == "m.safetensors"]) == 1


def test_rescan_reports_models_whose_files_were_removed_or_changed_by_hand(tmp_path: Path):
    lib = tmp_path / "lib"
    ids = [
        _import(lib, make_safetensors(tmp_path / f"m{i}.safetensors", fill=bytes([i + 1])))[
            "model_id"
        ]
        for i in range(3)
    ]
    (lib / ids[0] / "m0.safetensors").unlink()
    os.truncate(lib / ids[1] / "m1.safetensors", 10)

    run = run_cli("--library", lib, "rescan", "--json")

    assert run.code == 1
    assert sorted(run.json["damaged"]) == sorted(ids[:2])
    assert run.json["models"] == 3  # still indexed: metadata.json is the record of truth
    problems = " ".join(run.json["problems"])
    assert "m0.safetensors is missing" in problems
    assert "m1.safetensors is 10 bytes" in problems
    human = run_cli("--library", lib, "rescan")
    assert human.code == 1 and "m0.safetensors is missing" in human.stderr
