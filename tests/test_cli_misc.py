"""CLI behaviour that is not an import: help, completions, status during a rescan."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from cli import CONSOLE_SCRIPT, cli_env, start_cli
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_with_examples():
    run = run_cli("--help")
    assert run.code == 0
    for command in (
        "import",
        "lookup",
        "retry-pending",
        "shards",
        "status",
        "rescan",
        "mark-manual",
    ):
        assert command in run.stdout
    assert "modelimport import ./dl --yes --json" in run_cli("import", "--help").stdout


def test_console_script_and_module_agree():
    script = subprocess.run(
        [CONSOLE_SCRIPT, "--help"], capture_output=True, text=True, env=cli_env()
    )
    assert script.returncode == 0
    assert script.stdout == run_cli("--help").stdout


def test_shell_completion_scripts_exist_and_complete_commands():
    for shell in ("bash", "zsh", "fish"):
        text = (ROOT / "completions" / f"modelimport.{shell}").read_text()
        assert "_MODELIMPORT_COMPLETE" in text
    env = cli_env(
        {
            "_MODELIMPORT_COMPLETE": "complete_bash",
            "COMP_WORDS": "modelimport sta",
            "COMP_CWORD": "1",
        }
    )
    out = subprocess.run([CONSOLE_SCRIPT], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["status"]


def test_unknown_option_is_usage_error_exit_2():
    run = run_cli("import", "--no-such-option", "x")
    assert run.code == 2
    assert "No such option" in run.stderr
    assert "Traceback" not in run.stderr


def test_status_shows_a_rescan_running_in_another_process(tmp_path: Path):
    lib = tmp_path / "lib"
    for i in range(3):
        model = make_safetensors(tmp_path / f"m{i}.safetensors", fill=bytes([i + 1]))
        assert run_cli("--library", lib, "import", model, "--yes").code == 0
    marker = tmp_path / "marker"
    proc = start_cli(
        "--library",
        lib,
        "rescan",
        env={
            "MODELIMPORT_FAULTS": "rescan.progress>=1:hang",
            "MODELIMPORT_FAULT_MARKER": str(marker),
        },
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        status = run_cli("--library", lib, "status", "--json").json
        assert status["rescan"]["done"] == 1 and status["rescan"]["total"] == 3
        assert "Rescan running: 1 / 3" in run_cli("--library", lib, "status").stdout
        second = run_cli("--library", lib, "rescan")
        assert second.code == 1 and "already running" in second.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert run_cli("--library", lib, "status", "--json").json["rescan"] is None


def test_long_listings_print_aligned_columns():
    from modelimport.cli.library_cmds import aligned_columns

    text = aligned_columns(
        ("model", "size", "repo"),
        [("llm/llama/a-very-long-model-name", "4.6 GiB", "-"), ("vae/sd15/v", "320 MiB", "x/y")],
    )
    lines = text.splitlines()
    assert lines[0].split() == ["model", "size", "repo"]
    # Every column starts at the same offset on every line, and nothing is wrapped.
    pairs = zip(lines, ("size", "4.6", "320"), strict=True)
    assert len({line.index(size) for line, size in pairs}) == 1
    assert lines[2].endswith("320 MiB  x/y")


def test_names_that_look_like_rich_markup_print_as_themselves(tmp_path: Path):
    name = "model [/bold] [red]v2.safetensors"  # a closing tag with no opening one
    source = make_safetensors(tmp_path / name)
    lib = tmp_path / "lib"
    for args in (
        ["import", source, "--yes"],
        ["list"],
        ["status"],
        ["lookup", source, "--offline"],
        ["shards", tmp_path],
    ):
        run = run_cli("--library", lib, *args)
        assert run.code == 0, (args, run.stderr)
        assert "Internal error" not in run.stderr
    assert name in run_cli("--library", lib, "import", source, "--yes").stdout
    assert name in run_cli("--library", lib, "lookup", source, "--offline").stdout


def test_version():
    from importlib.metadata import version

    run = run_cli("--version")
    assert run.code == 0
    assert run.stdout.strip() == f"modelimport {version('modelimport')}"


def test_a_folder_without_model_files_says_so(tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    run = run_cli("--library", tmp_path / "lib", "import", folder, "--yes")
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == "No model files found (nothing imported; 1 other file(s) skipped)."


def test_verbose_names_the_skipped_files(tmp_path: Path):
    folder = tmp_path / "dl"
    make_safetensors(folder / "m.safetensors")
    (folder / "readme.txt").write_text("notes")
    quiet = run_cli("--library", tmp_path / "lib", "import", folder, "--yes")
    assert "1 skipped (--verbose names them)." in quiet.stdout
    loud = run_cli("--library", tmp_path / "lib2", "import", folder, "--yes", "--verbose")
    assert f"skipped: {folder / 'readme.txt'}: unsupported file type" in loud.stdout


def test_help_shows_no_value_for_on_off_flags():
    run = run_cli("import", "--help", env={"COLUMNS": "160"})
    assert run.code == 0
    for flag in ("--move", "--json", "--offline", "--yes", "--verbose", "--allow-incomplete"):
        [line] = [ln for ln in run.stdout.splitlines() if re.match(rf"\s+(-\w, )?{flag} ", ln)]
        assert "<bool>" not in line, line
    assert "--timeout SECONDS" in run.stdout  # options that take a value still say which


def test_completion_scripts_are_current():
    """completions/ holds what the CLI itself generates; regenerate them with
    `for s in bash zsh fish; do _MODELIMPORT_COMPLETE=source_$s modelimport
    > completions/modelimport.$s; done` when a command or option changes."""
    for shell in ("bash", "zsh", "fish"):
        env = cli_env({"_MODELIMPORT_COMPLETE": f"source_{shell}"})
        out = subprocess.run([CONSOLE_SCRIPT], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        shipped = (ROOT / "completions" / f"modelimport.{shell}").read_text()
        assert out.stdout.strip() == shipped.strip(), f"completions/modelimport.{shell} is stale"


def test_a_reader_that_closes_stdout_early_is_no_failure_of_the_import(tmp_path: Path):
    """Issue 20, point 8: `modelimport import ... | head -1` exited 1 although every model
    was imported; the closed pipe is the reader's choice, not a failed import."""
    from cli import library_files

    for i in range(3):
        make_safetensors(tmp_path / "dl" / f"m{i}.safetensors", fill=bytes([i + 1]))
    for extra in ((), ("--json",)):
        lib = tmp_path / f"lib{len(extra)}"
        proc = start_cli("--library", lib, "import", tmp_path / "dl", "--yes", "--offline",
                         *extra)
        proc.stdout.close()  # the reader is gone before the first line is written
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err
        assert "Traceback" not in err and "Internal error" not in err, err
        assert len([p for p in library_files(lib) if p.suffix == ".safetensors"]) == 3
