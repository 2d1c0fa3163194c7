"""Errors a person can cause: one sentence each, per item where there are items, no traceback.

The README's contract: exit 0 when everything asked for is done, 1 when some item failed or
was rejected, 2 for bad usage; anything else reaching the user is a bug (exit 70).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from cli import CliRun, cli_env
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf, make_safetensors
from fakehub import FakeHub

NOBODY = 65534


def assert_no_crash(run: CliRun) -> None:
    assert "Traceback" not in run.stderr and "Internal error" not in run.stderr, run.stderr
    assert run.code in (0, 1, 2), (run.code, run.stderr)


# --- rescan ------------------------------------------------------------------------------


def test_rescan_skips_records_that_are_not_model_objects(tmp_path: Path):
    lib = tmp_path / "lib"
    sources = [
        make_safetensors(tmp_path / f"m{i}.safetensors", fill=bytes([i + 1])) for i in range(4)
    ]
    imported = run_cli("--library", lib, "import", *sources, "--yes", "--json")
    assert imported.code == 0, imported.stderr
    ids = [r["model_id"] for r in imported.json["results"]]
    bad, good = ids[:3], ids[3]
    (lib / bad[0] / "metadata.json").write_text("[]")
    (lib / bad[1] / "metadata.json").write_text('{"model_type": "llm", "files": [')
    record = json.loads((lib / bad[2] / "metadata.json").read_text())
    (lib / bad[2] / "metadata.json").write_text(json.dumps({**record, "files": "weights"}))

    run = run_cli("--library", lib, "rescan")
    assert_no_crash(run)
    assert run.code == 1
    assert "Indexed 1 models" in run.stdout
    array_line = next(line for line in run.stderr.splitlines() if bad[0] in line)
    assert array_line.endswith("holds an array, not a JSON object; it was skipped.")

    run = run_cli("--library", lib, "rescan", "--json")
    assert run.code == 1
    assert run.json["models"] == 1
    assert sorted(run.json["unreadable"]) == sorted(bad)
    assert len(run.json["problems"]) == 3
    listed = run_cli("--library", lib, "list", "--json").json["models"]
    assert [m["model_id"] for m in listed] == [good]


# --- permissions ---------------------------------------------------------------------------


@dataclass
class Unprivileged:
    """A folder to work in, and a way to run the CLI as someone who may not read everything."""

    base: Path
    prefix: list[str]
    preexec_fn: object = None

    def run(self, *args: str | Path) -> CliRun:
        env = cli_env({"HOME": str(self.base), "MODELIMPORT_CACHE_DIR": str(self.base / "c")})
        proc = subprocess.run(
            [*self.prefix, sys.executable, "-m", "modelimport", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            timeout=60,
            preexec_fn=self.preexec_fn,  # type: ignore[arg-type]
        )
        return CliRun(proc.returncode, proc.stdout, proc.stderr)

    def works(self) -> bool:
        try:
            probe = subprocess.run(
                [*self.prefix, sys.executable, "-c", "import modelimport"],
                capture_output=True,
                cwd=self.base,
                preexec_fn=self.preexec_fn,  # type: ignore[arg-type]
            )
        except OSError:  # e.g. this interpreter lives where uid 65534 may not go
            return False
        return probe.returncode == 0

    def can_list(self, folder: Path) -> bool:
        probe = subprocess.run(
            [*self.prefix, sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", folder],
            capture_output=True,
            preexec_fn=self.preexec_fn,  # type: ignore[arg-type]
        )
        return probe.returncode == 0


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _runners(base: Path) -> Iterator[Unprivileged]:
    if os.geteuid() != 0:
        yield Unprivileged(base, [])  # permission bits already apply to us
        return
    # As root: uid 65534 first; where it cannot run this interpreter (a venv under /root),
    # root without the capabilities that bypass permission bits.
    yield Unprivileged(base, [], _become_nobody)
    if shutil.which("capsh"):
        drop = "--drop=cap_dac_override,cap_dac_read_search"
        yield Unprivileged(base, ["capsh", drop, "--", "-c", 'exec "$0" "$@"'])


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    # Not tmp_path: as root its parent is private to root, and uid 65534 must get in.
    base = Path(tempfile.mkdtemp(prefix="modelimport-perm-"))
    base.chmod(0o777)
    locked = base / "locked"
    locked.mkdir()
    locked.chmod(0o000)
    try:
        for runner in _runners(base):
            if runner.works() and not runner.can_list(locked):
                yield runner
                return
        pytest.skip(
            "cannot run the CLI without permission to read other users' files: setuid(65534) "
            "cannot run this Python, and capsh is missing or cannot drop cap_dac_override"
        )
    finally:
        locked.chmod(0o755)
        shutil.rmtree(base)


def test_permission_denied_is_one_item_failing_not_a_crash(unprivileged: Unprivileged):
    base = unprivileged.base
    locked = base / "locked"
    locked.chmod(0o755)
    hidden = make_safetensors(locked / "hidden.safetensors", fill=b"\x01")
    locked.chmod(0o000)
    readable = make_safetensors(base / "open" / "readable.safetensors", fill=b"\x02")
    unreadable = make_gguf(base / "open" / "unreadable.gguf")
    unreadable.chmod(0o000)

    run = unprivileged.run(
        "--library", base / "lib", "import", hidden, unreadable, readable, "--yes", "--json"
    )
    assert_no_crash(run)
    assert run.code == 1
    by_name = {Path(r["sources"][0]).name: r for r in run.json["results"]}
    assert by_name["hidden.safetensors"]["status"] == "failed"
    assert by_name["hidden.safetensors"]["error"] == f"Permission denied reading {hidden}."
    # A named file typer used to refuse as bad usage (exit 2) is one failed item: a file
    # that cannot be read is `failed` with the reason, like a folder that cannot be listed.
    assert by_name["unreadable.gguf"]["status"] == "failed"
    assert "Permission denied" in by_name["unreadable.gguf"]["error"]
    assert by_name["readable.safetensors"]["status"] == "imported"

    run = unprivileged.run("lookup", hidden, unreadable, readable, "--json")
    assert_no_crash(run)
    assert run.code == 1
    hidden_report, unreadable_report, readable_report = run.json["results"]
    assert hidden_report["error"] == f"Permission denied reading {hidden}."
    assert "Permission denied" in unreadable_report["error"]
    assert readable_report["error"] is None
    assert readable_report["file"]["format"] == "safetensors"


# --- lookup: one result per file ----------------------------------------------------------


def test_lookup_refuses_a_fifo_without_opening_it(tmp_path: Path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    good = make_gguf(tmp_path / "good.gguf")
    run = run_cli("lookup", fifo, good, timeout=20)  # opening the fifo would block for ever
    assert_no_crash(run)
    assert run.code == 1
    assert f"{fifo} is not a regular file; lookup reads only model files." in run.stdout
    assert "format gguf" in run.stdout


def test_lookup_gives_each_file_its_result_and_bad_ones_an_error(tmp_path: Path):
    good = make_gguf(tmp_path / "good.gguf")
    whole = make_safetensors(tmp_path / "whole.safetensors").read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole[: len(whole) // 2])
    missing = tmp_path / "missing.gguf"

    run = run_cli("lookup", good, truncated, missing, "--json")
    assert_no_crash(run)
    assert run.code == 1
    good_report, truncated_report, missing_report = run.json["results"]
    assert good_report["file"]["format"] == "gguf" and good_report["error"] is None
    assert truncated_report["error"].startswith("truncated.safetensors is not a valid")
    assert missing_report["error"] == f"{missing} does not exist."
    # An error entry has the keys of a per-file report, so a script reads both alike.
    assert truncated_report.keys() == good_report.keys()
    assert truncated_report["status"] == "failed" and truncated_report["file"] is None

    run = run_cli("lookup", good, truncated)
    assert run.code == 1
    assert str(good) in run.stdout
    [error_line] = [line for line in run.stdout.splitlines() if "truncated" in line]
    assert error_line.startswith("Error: truncated.safetensors is not a valid safetensors")


def test_lookup_usage_errors_still_exit_2(tmp_path: Path):
    good = make_gguf(tmp_path / "good.gguf")
    folder = run_cli("lookup", good, tmp_path)
    assert folder.code == 2 and folder.stdout == ""
    assert folder.stderr == f"Error: {tmp_path} is a folder; lookup takes model files.\n"
    assert run_cli("lookup", good, "--no-such-option").code == 2


# --- a library that is not there ------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "list"])
def test_reading_commands_do_not_create_a_mistyped_library(tmp_path: Path, command: str):
    nowhere = tmp_path / "no" / "such" / "place"
    run = run_cli("--library", nowhere, command)
    assert_no_crash(run)
    assert run.code == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert f"no model library at {nowhere} yet" in run.stderr
    assert "`modelimport import` creates one" in run.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", ["status", "list", "rescan"])
def test_a_library_path_that_is_a_file_is_not_a_folder(tmp_path: Path, command: str):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    run = run_cli("--library", not_a_dir, command)
    assert run.code == 1
    assert run.stderr == f"Error: The library path {not_a_dir} is not a folder.\n"


def test_import_still_creates_the_library(tmp_path: Path):
    lib = tmp_path / "new" / "lib"
    model = make_safetensors(tmp_path / "a.safetensors")
    assert run_cli("--library", lib, "import", model, "--yes").code == 0
    assert run_cli("--library", lib, "status", "--json").json["models"] == 1


# --- global options -------------------------------------------------------------------------


def test_every_command_accepts_every_global_option_after_it(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    from modelimport.cli.app import _register, app

    lib = tmp_path / "lib"
    first = make_safetensors(tmp_path / "dl" / "first.safetensors", fill=b"\x01")
    second = make_safetensors(tmp_path / "dl" / "second.safetensors", fill=b"\x02")
    model_id = run_cli("--library", lib, "import", first, "--yes", "--json").json["results"][0][
        "model_id"
    ]
    doomed = make_safetensors(tmp_path / "dl2" / "third.safetensors", fill=b"\x03")
    doomed_id = run_cli("--library", lib, "import", doomed, "--yes", "--json").json["results"][
        0
    ]["model_id"]
    arguments = {
        "import": [second],
        "lookup": [first],
        "retry-pending": [],
        "shards": [tmp_path / "dl"],
        "status": [],
        "list": [],
        "rescan": [],
        "mark-manual": [model_id],
        "check": [],
        "verify": [],
        "show": [model_id],
        "sync": [],
        "apps": ["list"],
        "index": ["status"],
        "remove": [doomed_id],
        "edit": [model_id, "--notes", "checked"],
    }
    _register()
    assert set(typer.main.get_command(app).commands) == set(arguments)  # type: ignore[attr-defined]

    global_options = ["--library", lib, "--json", "--offline", "--yes", "--verbose"]
    for command, args in arguments.items():
        run = run_cli(command, *args, *global_options)
        assert "No such option" not in run.stderr, (command, run.stderr)
        if command == "retry-pending":  # offline it looks nothing up, says so, and is done
            assert run.code == 0 and run.json["offline"] is True, run.stderr
            run = run_cli(command, *global_options[:-3], "--yes", "--verbose", env=fake_hub_env)
        assert run.code == 0, (command, run.stderr)
        assert isinstance(run.json, dict)  # --json after the command took effect
    assert run_cli("--library", lib, "status", "--json").json["models"] == 2


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [("--lookup-budget", "-1", "--lookup-budget must be at least 0, not -1.0."),
     ("--timeout", "0", "--timeout must be at least 0.1, not 0.0.")],
)
def test_an_option_out_of_range_is_one_sentence_of_ours(
    tmp_path: Path, option: str, value: str, says: str
):
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path, option, value, "--yes")
    assert run.code == 2 and says in run.stderr and "Input should" not in run.stderr
