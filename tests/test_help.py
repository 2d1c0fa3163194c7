"""`--help` of every command: only the options it uses, no Python type names, examples that
are real command lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli import run_cli
from factories import make_safetensors

COMMANDS = ["import", "status", "rescan", "mark-manual", "shards", "list", "lookup", "edit",
            "check", "verify",
            "retry-pending"]


def _help(command: str) -> str:
    run = run_cli(command, "--help")
    assert run.code == 0, run.stderr
    return run.stdout


def _options(text: str) -> set[str]:
    return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[\w-]+)", text))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_no_python_types(command: str):
    text = _help(command)
    for bad in ("<bool>", "<list[", "range>", "<path>", "{PATH}"):
        assert bad not in text, (command, bad)


def test_each_command_shows_only_the_options_it_uses():
    assert _options(_help("status")) == {"--library", "--json", "--help"}
    lookup = _options(_help("lookup"))  # lookup never opens a library nor asks
    assert "--offline" in lookup and "--library" not in lookup and "--yes" not in lookup
    assert {"--move", "--yes", "--quiet", "--offline"} <= _options(_help("import"))


def test_global_options_still_work_before_or_after_any_command(tmp_path: Path):
    lib = tmp_path / "lib"
    source = make_safetensors(tmp_path / "m.safetensors")
    assert run_cli("--library", lib, "import", source, "--yes").code == 0
    # Unused options are accepted after a command (hidden, ignored), as before.
    after = run_cli("status", "--library", lib, "--json", "--offline", "--yes")
    before = run_cli("--library", lib, "--json", "status")
    assert after.code == before.code == 0
    assert after.json["models"] == before.json["models"] == 1


def test_library_before_the_command_wins_over_the_environment(tmp_path: Path):
    lib = tmp_path / "lib"
    source = make_safetensors(tmp_path / "m.safetensors")
    assert run_cli("--library", lib, "import", source, "--yes").code == 0
    run = run_cli("--library", lib, "status", "--json",
                  env={"MODELIMPORT_LIBRARY": str(tmp_path / "other")})
    assert run.json["models"] == 1
