"""Permissions, read-only libraries and a damaged index: each ends in one clear sentence.

The suite runs as root, who may read and write anything, so these tests run the CLI as a
user made for them (conftest `other_user`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from conftest import OtherUser
from factories import make_evil_pickle, make_safetensors, make_sharded_safetensors


def _no_traceback(run) -> None:
    assert "Traceback" not in run.stderr
    assert "Internal error" not in run.stderr


def test_unreadable_subfolder_is_failed_with_its_reason(other_user: OtherUser):
    src = other_user.home / "dl"
    make_safetensors(src / "a.safetensors")
    make_safetensors(src / "locked" / "b.safetensors", {"x": ("F32", [4])})
    other_user.owns(src)
    (src / "locked").chmod(0o000)

    run = other_user.run("--library", other_user.home / "lib", "import", src, "--yes", "--json")

    _no_traceback(run)
    assert run.code == 1, run.stderr
    by_status = {r["status"]: r for r in run.json["results"]}
    assert by_status["imported"]["sources"] == [str(src / "a.safetensors")]
    failed = by_status["failed"]
    assert failed["sources"] == [str(src / "locked")]
    assert failed["error"] == f"Permission denied reading {src / 'locked'}."
    assert run.json["summary"]["skipped"] == 0


def test_unreadable_library_parent_is_one_sentence(other_user: OtherUser, tmp_path: Path):
    src = other_user.owns(make_safetensors(other_user.home / "a.safetensors"))
    closed = other_user.home / "closed"
    closed.mkdir(mode=0o700)  # root's, and the user may not enter it
    lib = closed / "lib"

    for args in (["import", src, "--yes"], ["status"], ["list"], ["rescan"]):
        run = other_user.run("--library", lib, *args)
        _no_traceback(run)
        assert run.code == 1, (args, run.stderr)
        [line] = run.stderr.splitlines()
        assert line.startswith("Error: Permission denied") and str(lib) in line, line


def _library_of_root(home: Path) -> tuple[Path, str]:
    """A library made by root, readable but not writable by the test user."""
    lib = home / "rootlib"
    src = make_safetensors(home / "root-src" / "m.safetensors")
    run = run_cli("--library", lib, "import", src, "--yes", "--json")
    assert run.code == 0, run.stderr
    return lib, run.json["results"][0]["model_id"]


def test_read_only_library_is_readable(other_user: OtherUser):
    lib, model_id = _library_of_root(other_user.home)
    before = sorted(p.relative_to(lib) for p in lib.rglob("*"))

    status = other_user.run("--library", lib, "status", "--json")
    assert status.code == 0, status.stderr
    assert (status.json["models"], status.json["read_only"]) == (1, True)
    listed = other_user.run("--library", lib, "list", "--json")
    assert listed.code == 0, listed.stderr
    assert [m["model_id"] for m in listed.json["models"]] == [model_id]
    rescan = other_user.run("--library", lib, "rescan", "--json")
    assert rescan.code == 0, rescan.stderr
    assert (rescan.json["models"], rescan.json["read_only"]) == (1, True)
    assert "read-only" in rescan.stderr
    lookup = other_user.run("--library", lib, "lookup", lib / model_id / "m.safetensors")
    assert lookup.code == 0, lookup.stderr

    # Writing commands still refuse, in one sentence.
    new = make_safetensors(other_user.home / "new.safetensors", {"y": ("F16", [2])})
    src = other_user.owns(new)
    imported = other_user.run("--library", lib, "import", src, "--yes")
    _no_traceback(imported)
    assert imported.code == 1
    assert imported.stderr.strip() == f"Error: The library at {lib} is not writable."
    assert sorted(p.relative_to(lib) for p in lib.rglob("*")) == before  # nothing written


def test_read_only_library_without_its_index_is_read_from_metadata(other_user: OtherUser):
    lib, model_id = _library_of_root(other_user.home)
    (lib / ".modelimport" / "index.sqlite").unlink()

    listed = other_user.run("--library", lib, "list", "--json")
    assert listed.code == 0, listed.stderr
    assert [m["model_id"] for m in listed.json["models"]] == [model_id]
    assert "read-only here" in listed.stderr
    assert not (lib / ".modelimport" / "index.sqlite").exists()


def test_rescan_rebuilds_a_damaged_index_and_keeps_it_aside(tmp_path: Path):
    lib = tmp_path / "lib"
    src = make_safetensors(tmp_path / "m.safetensors")
    model_id = run_cli("--library", lib, "import", src, "--yes", "--json").json["results"][0][
        "model_id"
    ]
    index_path = lib / ".modelimport" / "index.sqlite"
    garbage = b"this is not SQLite at all" * 100
    index_path.write_bytes(garbage)

    listed = run_cli("--library", lib, "list")
    assert listed.code == 1
    assert "run `modelimport rescan` to rebuild it" in listed.stderr
    _no_traceback(listed)

    rescan = run_cli("--library", lib, "rescan", "--json")
    assert rescan.code == 0, rescan.stderr
    kept = Path(rescan.json["damaged_index_kept_at"])
    assert kept.parent == index_path.parent and kept.read_bytes() == garbage
    assert "kept aside" in rescan.stderr
    listed = run_cli("--library", lib, "list", "--json")
    assert [m["model_id"] for m in listed.json["models"]] == [model_id]


def test_rescan_rebuilds_an_index_with_damaged_pages(tmp_path: Path):
    lib = tmp_path / "lib"
    for n in range(3):
        src = make_safetensors(tmp_path / f"m{n}.safetensors", {f"t{n}": ("F32", [n + 1])})
        assert run_cli("--library", lib, "import", src, "--yes").code == 0
    index_path = lib / ".modelimport" / "index.sqlite"
    with sqlite3.connect(index_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(index_path.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = b"\xff" * page  # a page of the tables, not the header
    index_path.write_bytes(bytes(data))

    rescan = run_cli("--library", lib, "rescan", "--json")
    assert rescan.code == 0, rescan.stderr
    assert rescan.json["models"] == 3
    assert rescan.json["damaged_index_kept_at"]
    assert run_cli("--library", lib, "status", "--json").json["models"] == 3


def test_manual_records_are_not_pending_lookups(tmp_path: Path):
    lib = tmp_path / "lib"
    src = make_safetensors(tmp_path / "m.safetensors")
    model_id = run_cli("--library", lib, "import", src, "--yes", "--json", "--offline").json[
        "results"
    ][0]["model_id"]
    assert run_cli("--library", lib, "status", "--json").json["pending_lookups"] == 1

    assert run_cli("--library", lib, "mark-manual", model_id).code == 0

    status = run_cli("--library", lib, "status", "--json").json
    assert (status["pending_lookups"], status["manual_records"]) == (0, 1)
    assert run_cli("--library", lib, "list", "--pending", "--json").json["models"] == []
    assert run_cli("--library", lib, "rescan").code == 0  # also after a rebuild
    assert run_cli("--library", lib, "status", "--json").json["pending_lookups"] == 0


def test_importing_the_library_into_itself_is_all_duplicates(tmp_path: Path):
    src = tmp_path / "src"
    make_safetensors(src / "a.safetensors")
    make_evil_pickle(src / "evil.ckpt")
    shards = make_sharded_safetensors(src / "set", total=3)
    shards[1].unlink()
    lib = tmp_path / "lib"
    first = run_cli(
        "--library", lib, "import", src, "--yes", "--json",
        "--allow-unsafe-pickle", "--allow-incomplete",
    )  # fmt: skip
    assert first.json["summary"]["imported"] == 3, first.stdout
    files_before = library_files(lib)

    again = run_cli("--library", lib, "import", lib, "--yes", "--json")

    assert again.code == 0, again.stdout
    statuses = [r["status"] for r in again.json["results"] if r["status"] != "skipped"]
    assert statuses == ["duplicate"] * 3, again.stdout
    assert library_files(lib) == files_before
    assert json.loads(again.stdout)["summary"]["rejected"] == 0


def test_unreadable_files_are_failed_with_their_reason(other_user: OtherUser):
    src = other_user.home / "dl"
    make_safetensors(src / "ok.safetensors")
    secret = make_safetensors(src / "secret.safetensors", {"s": ("F32", [2])})
    named = make_safetensors(other_user.home / "named.safetensors", {"n": ("F32", [3])})
    other_user.owns(src)
    other_user.owns(named)
    secret.chmod(0o000)
    named.chmod(0o000)

    run = other_user.run(
        "--library", other_user.home / "lib", "import", src, named, "--yes", "--json"
    )

    _no_traceback(run)
    assert run.code == 1
    by_name = {Path(r["sources"][0]).name: r for r in run.json["results"]}
    assert by_name["ok.safetensors"]["status"] == "imported"
    assert by_name["secret.safetensors"]["status"] == "failed"
    assert by_name["secret.safetensors"]["error"].startswith("Permission denied")
    assert by_name["named.safetensors"]["status"] == "failed"
    assert by_name["named.safetensors"]["error"].startswith("Permission denied")
    lookup = other_user.run("lookup", secret)
    _no_traceback(lookup)
    assert lookup.code == 1 and "Permission denied" in lookup.stdout + lookup.stderr


def test_move_out_of_a_folder_the_user_may_not_change_fails_and_keeps_the_source(
    other_user: OtherUser,
):
    folder = other_user.home / "theirs"
    source = make_safetensors(folder / "m.safetensors")  # root's folder: readable only
    run = other_user.run(
        "--library", other_user.home / "lib", "import", source, "--move", "--yes", "--json"
    )
    _no_traceback(run)
    assert run.code == 1
    [result] = run.json["results"]
    assert result["status"] == "failed"
    assert result["error"].startswith("Permission denied while importing m.safetensors")
    assert source.exists()
    assert library_files(other_user.home / "lib") == []


def test_a_run_removes_its_test_user_even_when_a_test_fails(tmp_path: Path):
    """Issue 20, point 9: the permission tests left the OS user `modelimport-test` behind.
    A run of one failing permission test leaves no user."""
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("userdel"):
        pytest.skip("needs root, useradd and userdel")
    name = f"mi-test-n{os.getpid()}"
    (tmp_path / "test_fails.py").write_text(
        "from pathlib import Path\n"
        "def test_fails(other_user):\n"
        "    assert other_user.run('--version').code == 0\n"
        f"    Path({str(tmp_path / 'used')!r}).write_text(other_user.name)\n"
        "    raise AssertionError('failing on purpose')\n"
    )
    tests = Path(__file__).parent
    env = {**os.environ, "MODELIMPORT_TEST_USER": name,
           "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "-n", "0", str(tmp_path / "test_fails.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert run.returncode == 1 and "failing on purpose" in run.stdout, run.stdout + run.stderr
    used = (tmp_path / "used").read_text()
    assert subprocess.run(["id", "-u", used], capture_output=True).returncode != 0, (
        f"the user {used} was left behind"
    )
