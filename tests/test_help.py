"""`--help` of every command: only the options it uses, no Python type names, examples that
are real command lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors

COMMANDS = ["import", "status", "rescan", "mark-manual", "shards", "list", "lookup", "edit",
            "check", "verify", "retry-pending", "show", "sync", "remove", "apps add",
            "apps list", "apps remove"]


def _help(command: str) -> str:
    run = run_cli(*command.split(), "--help")
    assert run.code == 0, run.stderr
    return run.stdout


def _options(text: str) -> set[str]:
    return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[\w-]+)", text))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_no_python_types(command: str):
    text = _help(command)
    for bad in ("<bool>", "<list[", "range>", "<path>", "<str>", "{PATH}", "{name}"):
        assert bad not in text, (command, bad)


def test_each_command_shows_only_the_options_it_uses():
    assert _options(_help("status")) == {"--library", "--json", "--help"}
    lookup = _options(_help("lookup"))  # lookup never opens a library nor asks
    assert "--offline" in lookup and "--library" not in lookup and "--yes" not in lookup
    assert {"--move", "--yes", "--quiet", "--offline"} <= _options(_help("import"))
    # The app commands use the same mechanism: apps add checks the folder is outside the
    # library, sync and remove work on it; only remove asks, so only it takes --yes.
    assert _options(_help("apps add")) == {
        "--kind", "--map", "--subfolders", "--via", "--library", "--json", "--help"}
    assert _options(_help("apps list")) == {"--json", "--help"}
    assert _options(_help("apps remove")) == {"--unlink", "--library", "--json", "--help"}
    assert _options(_help("sync")) == {"--app", "--dry-run", "--library", "--json", "--verbose",
                                       "--help"}
    assert _options(_help("remove")) == {"--keep-files", "--library", "--json", "--yes", "--help"}
    assert _options(_help("show")) == {"--library", "--json", "--help"}


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
    run = run_cli("--library", lib, "import", source, "--yes", "--json")
    assert run.code == 0
    model_id = run.json["results"][0]["model_id"]
    other = {"MODELIMPORT_LIBRARY": str(tmp_path / "other")}
    run = run_cli("--library", lib, "status", "--json", env=other)
    assert run.json["models"] == 1
    # The app commands too (they once read the variable again after the command).
    run = run_cli("--library", lib, "show", model_id, "--json", env=other)
    assert run.code == 0 and run.json["model_id"] == model_id, run.stderr
    run = run_cli("--library", lib, "sync", "--json", env=other)
    assert run.code == 0 and not (tmp_path / "other").exists(), run.stderr


def test_app_commands_accept_the_global_options_they_do_not_use(tmp_path: Path):
    lib = tmp_path / "lib"
    folder = tmp_path / "ComfyUI"
    (folder / "models").mkdir(parents=True)
    run = run_cli("apps", "add", "comfy", folder, "--kind", "comfyui", "--library", lib,
                  "--json", "--offline", "--yes", "--quiet", "--verbose")
    assert run.code == 0, run.stderr
    assert run.json["app"]["path"] == str(folder)
    run = run_cli("--json", "apps", "list", "--quiet")  # --json before the command
    assert [a["name"] for a in run.json["apps"]] == ["comfy"]
    run = run_cli("apps", "remove", "comfy", "--library", lib, "--json", "--yes")
    assert run.code == 0 and run.json["changes"] == [], run.stderr
