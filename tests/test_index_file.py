"""The index is opened only as the regular file modelimport made, and believed only while it
lists the model folders on disk (issue 19, point 7): a planted link, another program's
database, a zero-byte or stale index never get written into or make a second copy."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli import library_files, run_cli
from factories import make_safetensors

from modelimport.hashing import fast_hash, hash_file
from modelimport.library.index_file import APPLICATION_ID


def _library_of_three(tmp_path: Path) -> tuple[Path, list[Path]]:
    sources = [
        make_safetensors(tmp_path / "src" / f"m{n}.safetensors", {f"w{n}": ("F16", [8, n + 1])})
        for n in range(3)
    ]
    lib = tmp_path / "lib"
    assert run_cli("--library", lib, "import", *sources, "--yes").code == 0
    return lib, sources


def _index(lib: Path) -> Path:
    return lib / ".modelimport" / "index.sqlite"


def _drop_index_files(lib: Path) -> None:
    for extra in ("", "-wal", "-shm"):
        path = _index(lib).with_name("index.sqlite" + extra)
        if os.path.lexists(path):
            path.unlink()


def _other_database(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE secrets (k TEXT)")
        db.execute("INSERT INTO secrets VALUES ('keep me')")
    db.close()
    return path.read_bytes()


def test_a_symlinked_index_is_never_written_through(tmp_path: Path):
    lib, sources = _library_of_three(tmp_path)
    other = tmp_path / "app.db"
    other_bytes = _other_database(other)
    _drop_index_files(lib)
    _index(lib).symlink_to(other)

    for command in (["list"], ["status"], ["import", sources[0], "--yes"]):
        run = run_cli("--library", lib, *command)
        assert run.code == 1, (command, run.stdout, run.stderr)
        assert "is a symbolic link, not the index modelimport made" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and "Internal error" not in run.stderr
    assert other.read_bytes() == other_bytes  # no tables of ours, no WAL mode
    assert not (tmp_path / "app.db-wal").exists()

    rebuilt = run_cli("--library", lib, "rescan", "--json")
    assert rebuilt.code == 0, rebuilt.stderr
    assert rebuilt.json["models"] == 3
    assert other.read_bytes() == other_bytes
    assert not _index(lib).is_symlink()
    kept = [p for p in (lib / ".modelimport").iterdir() if p.name.startswith("index.sqlite.")]
    assert [p.is_symlink() for p in kept] == [True]  # the link itself moved aside, kept


def test_a_symlinked_wal_file_is_refused(tmp_path: Path):
    lib, _ = _library_of_three(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    wal = _index(lib).with_name("index.sqlite-wal")
    if wal.exists():
        wal.unlink()
    wal.symlink_to(elsewhere)

    run = run_cli("--library", lib, "list")
    assert run.code == 1
    assert "index.sqlite-wal is a symbolic link" in run.stderr
    assert elsewhere.read_bytes() == b""


def test_another_programs_database_in_its_place_is_left_alone(tmp_path: Path):
    lib, _ = _library_of_three(tmp_path)
    _drop_index_files(lib)
    planted = _other_database(_index(lib))

    run = run_cli("--library", lib, "list")
    assert run.code == 1
    assert "is another program's SQLite database, not the index modelimport made" in run.stderr
    assert _index(lib).read_bytes() == planted


def test_a_zero_byte_index_is_rebuilt_not_believed_empty(tmp_path: Path):
    lib, sources = _library_of_three(tmp_path)
    _drop_index_files(lib)
    _index(lib).write_bytes(b"")

    listed = run_cli("--library", lib, "list", "--json")
    assert listed.code == 0, listed.stderr
    assert len(listed.json["models"]) == 3
    assert "did not match the model folders on disk; indexed 3" in listed.stderr
    again = run_cli("--library", lib, "import", *sources, "--yes", "--json")
    assert [r["status"] for r in again.json["results"]] == ["duplicate"] * 3
    assert len(library_files(lib)) == 6  # three models: a file and a metadata.json each


def test_dedup_never_trusts_an_index_that_lost_rows(tmp_path: Path):
    lib, sources = _library_of_three(tmp_path)
    with sqlite3.connect(_index(lib)) as db:  # rows lost (an old backup put back, a bug)
        db.execute("DELETE FROM files")
        db.execute("DELETE FROM models")
        db.execute("INSERT INTO models (model_id, model_type, family) VALUES ('a/x/y', 'a', 'x')")
    db.close()

    again = run_cli("--library", lib, "import", sources[1], "--yes", "--json")
    assert again.json["results"][0]["status"] == "duplicate", again.stderr
    assert "indexed 3 from their metadata.json and forgot 1" in again.stderr
    assert run_cli("--library", lib, "check").code == 0


def test_an_index_from_before_the_application_id_is_adopted_and_stamped(tmp_path: Path):
    lib, _ = _library_of_three(tmp_path)
    with sqlite3.connect(_index(lib)) as db:
        db.execute("PRAGMA application_id = 0")
        db.execute("DELETE FROM schema_migrations WHERE name = '004_application_id'")
    db.close()

    assert len(run_cli("--library", lib, "list", "--json").json["models"]) == 3
    with sqlite3.connect(_index(lib)) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a read-only bind mount")
def test_a_stale_index_of_a_read_only_library_is_not_believed(tmp_path: Path):
    lib, _ = _library_of_three(tmp_path)
    with sqlite3.connect(_index(lib)) as db:
        db.execute("DELETE FROM models WHERE model_id LIKE '%m1'")
    db.close()
    view = tmp_path / "view"
    view.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(lib), str(view)]).returncode != 0:
        pytest.skip("could not make a read-only bind mount here")
    try:
        listed = run_cli("--library", view, "list", "--json")
    finally:
        subprocess.run(["umount", str(view)], check=False)
    assert listed.code == 0, listed.stderr
    assert len(listed.json["models"]) == 3


def test_an_index_row_changed_by_hand_never_turns_a_new_file_away(tmp_path: Path):
    lib, sources = _library_of_three(tmp_path)
    newcomer = make_safetensors(tmp_path / "new.safetensors", {"w0": ("F16", [8, 1])},
                                fill=b"\x07")  # fmt: skip
    assert newcomer.stat().st_size == sources[0].stat().st_size
    with sqlite3.connect(_index(lib)) as db:  # the index claims m0 holds the new file's bytes
        db.execute(
            "UPDATE files SET sha256 = ?, fast_hash = ? WHERE name = 'm0.safetensors'",
            (hash_file(newcomer).sha256, fast_hash(newcomer)),
        )
    db.close()

    run = run_cli("--library", lib, "import", newcomer, "--yes", "--json")
    assert run.json["results"][0]["status"] == "imported", run.stdout


def test_a_really_damaged_index_is_still_set_aside_by_rescan(tmp_path: Path):
    lib, _ = _library_of_three(tmp_path)
    _drop_index_files(lib)
    _index(lib).write_bytes(b"this is no database at all, just text" * 200)

    run = run_cli("--library", lib, "list")
    assert run.code == 1
    assert "is damaged (file is not a database); run `modelimport rescan`" in run.stderr

    rebuilt = run_cli("--library", lib, "rescan", "--json")
    assert rebuilt.code == 0, rebuilt.stderr
    assert rebuilt.json["models"] == 3
    assert rebuilt.json["damaged_index_kept_at"].startswith(str(_index(lib)) + ".damaged-")
