"""Odd file names through the real CLI: names that are not UTF-8, in any script, too long,
full of punctuation; and a library whose staging holds a journal recovery cannot handle."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors

from modelimport.names import MAX_COMPONENT_BYTES

# Linux file names are bytes; Python shows undecodable ones as lone surrogates (os.fsdecode).
NOT_UTF8 = os.fsdecode(b"bad\xff\xfename.safetensors")


def _import(lib: Path, *args: str | Path) -> dict:
    run = run_cli("--library", lib, "import", *args, "--yes", "--json")
    assert run.code == 0, run.stderr
    return run.json  # parses: stdout is valid JSON


def _every_command_works(lib: Path) -> None:
    for args in (["status", "--json"], ["list", "--json"], ["rescan", "--json"]):
        run = run_cli("--library", lib, *args)
        assert run.code == 0, (args, run.stderr)
        json.loads(run.stdout)


def test_a_file_name_that_is_not_utf8_imports_and_keeps_its_original_path(tmp_path: Path):
    source = make_safetensors(tmp_path / "dl" / NOT_UTF8)
    assert os.fsencode(source).endswith(b"bad\xff\xfename.safetensors")
    lib = tmp_path / "lib"

    [result] = _import(lib, source.parent)["results"]

    assert result["status"] == "imported"
    assert result["model_id"] == "unknown/unknown/bad-name"
    assert result["sources"] == [str(source)]  # json.loads gives the surrogates back
    assert [f["name"] for f in result["files"]] == ["bad-name.safetensors"]
    assert (lib / result["model_id"] / "bad-name.safetensors").read_bytes() == source.read_bytes()
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text(encoding="utf-8"))
    assert meta["sources"][0]["path"] == str(source)
    assert meta["files"][0]["original_name"] == source.name
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    _every_command_works(lib)
    # The recorded path round-trips: the same file is known without being read again.
    [again] = _import(lib, source)["results"]
    assert again["status"] == "duplicate"


def test_an_interrupted_move_puts_back_a_file_whose_name_is_not_utf8(tmp_path: Path):
    source = make_safetensors(tmp_path / "dl" / NOT_UTF8)
    data = source.read_bytes()
    lib = tmp_path / "lib"
    env = {"MODELIMPORT_FAULTS": "move.after_rename:crash"}
    crashed = run_cli("--library", lib, "import", source, "--move", "--yes", env=env)
    assert crashed.code == 70 and not source.exists()

    _every_command_works(lib)  # the first one rolls the move back, from the journal

    assert source.read_bytes() == data  # back under its exact bytes
    assert library_files(lib) == []


def test_a_library_left_with_an_unindexable_commit_recovers(tmp_path: Path):
    """What an earlier version left behind: a committed model whose metadata.json holds a
    name with lone surrogates, and its journal waiting for the index row SQLite refused."""
    source = make_safetensors(tmp_path / "dl" / "m.safetensors")
    lib = tmp_path / "lib"
    env = {"MODELIMPORT_FAULTS": "commit.index:crash"}
    crashed = run_cli("--library", lib, "import", source, "--yes", env=env)
    assert crashed.code == 70
    [meta_path] = lib.glob("*/*/*/metadata.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["cleaned_name"] = os.fsdecode(b"bad\xff\xfename")
    meta_path.write_text(json.dumps(meta), encoding="utf-8")

    status = run_cli("--library", lib, "status", "--json")

    assert status.code == 0, status.stderr
    assert status.json["models"] == 1 and status.json["recovered"]["completed"] == 1
    [row] = run_cli("--library", lib, "list", "--json").json["models"]
    assert row["cleaned_name"] == "bad\ufffd\ufffdname"
    rescan = run_cli("--library", lib, "rescan", "--json")  # may call the record odd, not crash
    assert rescan.code in (0, 1) and "Internal error" not in rescan.stderr
    json.loads(rescan.stdout)


@pytest.mark.parametrize("journal", ["{not json", "[]", '{"entries": 5}', None])
def test_a_journal_recovery_cannot_read_is_reported_and_kept_not_fatal(
    tmp_path: Path, journal: str | None
):
    lib = tmp_path / "lib"
    _import(lib, make_safetensors(tmp_path / "dl" / "first.safetensors"))
    txn = lib / ".modelimport" / "staging" / "0123456789abcdef"
    (txn / "model").mkdir(parents=True)
    (txn / "lock").touch()
    (txn / "model" / "maybe-a-moved-source.safetensors").write_bytes(b"only copy")
    if journal is not None:
        (txn / "journal.json").write_text(journal)

    status = run_cli("--library", lib, "status", "--json")

    assert status.code == 0, status.stderr
    [problem] = status.json["recovered"]["problems"]
    assert problem.startswith(f"The interrupted import in {txn} could not be recovered (")
    assert "\n" not in problem
    assert str(txn) in status.stderr
    assert (txn / "model" / "maybe-a-moved-source.safetensors").read_bytes() == b"only copy"
    # and the library stays usable
    ok = make_safetensors(tmp_path / "dl" / "ok.safetensors", fill=b"\x07")
    [result] = _import(lib, ok)["results"]
    assert result["status"] == "imported"
    _every_command_works(lib)


@pytest.mark.parametrize(
    ("filename", "library_name", "slug"),
    [
        ("..safetensors", "file-0.safetensors", "model"),
        ("模型.safetensors", "模型.safetensors", "模型"),
        ("ßüper.safetensors", "ßüper.safetensors", "ßüper"),
        # Kept as people and apps know it (A1111's <lora:my model (v2) [final]>); the id is a slug.
        ("my model (v2) [final].safetensors", "my model (v2) [final].safetensors",
         "my-model-v2-final"),
        ("what? v2.safetensors", "what-v2.safetensors", "what-v2"),  # '?': Windows refuses it
        ("🔥fire style.safetensors", "🔥fire style.safetensors", "fire-style"),
        ("x" * 240 + ".safetensors", "x" * (MAX_COMPONENT_BYTES - 12) + ".safetensors", None),
    ],
    ids=["dots", "cjk", "german", "punctuation", "windows-reserved", "emoji", "long"],
)
def test_library_file_names_keep_letters_and_extension(
    tmp_path: Path, filename: str, library_name: str, slug: str | None
):
    source = make_safetensors(tmp_path / "dl" / filename)
    lib = tmp_path / "lib"

    [result] = _import(lib, source)["results"]

    assert result["status"] == "imported"
    assert [f["name"] for f in result["files"]] == [library_name]
    model_dir = lib / result["model_id"]
    assert (model_dir / library_name).read_bytes() == source.read_bytes()
    if slug is not None:
        assert model_dir.name == slug
    assert len(model_dir.name.encode()) <= MAX_COMPONENT_BYTES
    # Its id works as a command argument, in the form a terminal may type it (NFD) too.
    for typed in (result["model_id"], unicodedata.normalize("NFD", result["model_id"])):
        marked = run_cli("--library", lib, "mark-manual", typed, "--json")
        assert marked.code == 0, marked.stdout
    # The library's copy is still a model file: another library imports it, not skips it.
    [copied] = _import(tmp_path / "lib2", model_dir / library_name)["results"]
    assert copied["status"] == "imported", copied


def test_a_newline_in_a_file_name_keeps_one_line_per_item_in_a_pipe(tmp_path: Path):
    """Issue 20, point 8: a newline in a name split its item over two lines of the pipe
    output that scripts read line by line; it is shown escaped."""
    folder = tmp_path / "dl"
    make_safetensors(folder / "two\nlines.safetensors", fill=b"\x01")
    make_safetensors(folder / "plain.safetensors", fill=b"\x02")
    run = run_cli("--library", tmp_path / "lib", "import", folder, "--yes", "--offline")
    assert run.code == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("imported")]
    assert len(rows) == 2, run.stdout
    assert any("two\\nlines.safetensors" in row for row in rows), run.stdout
    listing = run_cli("--library", tmp_path / "lib", "list")
    assert len(listing.stdout.strip().splitlines()) == 4, listing.stdout  # count, header, 2
