"""The CLI with what Windows lacks taken away (issue 17, Must show 1): no `fcntl`, symlinks
refused with WinError 1314, no O_DIRECT, no FICLONE, no posix_fadvise, no O_DIRECTORY.
`import`, `apps add`, `sync`, `check`, `verify` and `remove` all work; files another
program holds open stop `--move`, `remove` and `edit` with one sentence and nothing changed.

The switch is tests/cli.py's MODELIMPORT_TEST_SIMULATE (tests/simulated_os.py does the
taking away), so the whole CLI suite can run the same way.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import app_models as models
import pytest
from cli import SIMULATE_ENV, library_files, run_cli, start_cli
from factories import make_safetensors

WINDOWS = {"system": "windows"}
WINDOWS_ON_EXFAT = {"system": "windows", "links": False}  # no symlinks, no hard links


@pytest.fixture
def simulate(monkeypatch: pytest.MonkeyPatch):
    """Run every CLI of the test under a simulation (a dict for tests/simulated_os.py)."""

    def use(simulation: dict) -> None:
        monkeypatch.setenv(SIMULATE_ENV, json.dumps(simulation))

    use(WINDOWS)
    return use


def mi(lib: Path, *args: str | Path):
    run = run_cli("--library", lib, *args)
    assert "Traceback" not in run.stderr, run.stderr
    return run


def test_the_simulated_process_really_lacks_what_windows_lacks(simulate):
    run = run_cli("report")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout) == {
        "fcntl": False, "O_DIRECT": False, "symlink": "errno 22 winerror 1314", "link": "made"
    }  # fmt: skip


def test_import_link_check_verify_remove_without_fcntl_or_symlinks(tmp_path: Path, simulate):
    lib, comfy = tmp_path / "lib", tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    lora = models.sdxl_lora(tmp_path / "dl" / "detail.safetensors")
    checkpoint = models.sdxl_checkpoint(tmp_path / "dl" / "base.safetensors")
    moved = models.sdxl_vae(tmp_path / "mv" / "vae.safetensors")

    assert mi(lib, "import", lora, checkpoint, "--yes").code == 0
    assert mi(lib, "import", moved, "--move", "--yes").code == 0
    assert not moved.exists()
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    sync = mi(lib, "sync", "--json")
    assert sync.code == 0, sync.stdout
    links = [p for p in comfy.rglob("*") if p.is_file()]
    assert len(links) == 3 and not [p for p in comfy.rglob("*") if p.is_symlink()]
    # Hard links: each is the very file of the library.
    in_library = {p.stat().st_ino for p in library_files(lib) if p.suffix == ".safetensors"}
    assert {link.stat().st_ino for link in links} == in_library

    check = mi(lib, "check")
    assert check.code == 0, check.stdout + check.stderr
    verify = mi(lib, "verify")
    assert verify.code == 0, verify.stdout + verify.stderr
    listed = mi(lib, "list", "--json").json
    lora_id = next(m["model_id"] for m in listed["models"] if m["model_type"] == "lora")
    removed = mi(lib, "remove", lora_id, "--yes")
    assert removed.code == 0, removed.stdout + removed.stderr
    assert len([p for p in comfy.rglob("*") if p.is_file()]) == 2
    assert mi(lib, "check").code == 0
    assert not list((lib / ".modelimport" / "staging").iterdir())


def test_links_refused_everywhere_leave_the_library_whole(tmp_path: Path, simulate):
    """exFAT, or another volume: neither symlinks nor hard links. What this side guarantees:
    every link is reported in one sentence and the library stays whole and usable. (Serving
    ComfyUI through extra_model_paths.yaml instead is the app-link fallbacks' work; extend
    this test with it.)"""
    simulate(WINDOWS_ON_EXFAT)
    lib, comfy = tmp_path / "lib", tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    lora = models.sdxl_lora(tmp_path / "dl" / "detail.safetensors")
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    imported = mi(lib, "import", lora, "--yes")
    assert imported.code == 0, imported.stderr
    sync = mi(lib, "sync")
    assert sync.code == 1
    said = (sync.stdout + sync.stderr).lower()
    assert "cannot" in said or "no links possible" in said
    assert not [p for p in comfy.rglob("*") if p.is_file() or p.is_symlink()]
    # The library itself is whole; `check` only says the app lacks its link (until the app
    # is served another way, e.g. ComfyUI's extra_model_paths.yaml).
    check = mi(lib, "check")
    problems = [line for line in check.stdout.splitlines() if line.startswith("problem:")]
    assert problems and all(" in comfy is missing." in line for line in problems)
    assert mi(lib, "verify").code == 0


def test_a_killed_import_is_recovered_without_fcntl(tmp_path: Path, simulate):
    """The lock of a dead process is free on Windows too (LockFileEx dies with its handle):
    the next command rolls the import back and the source is whole."""
    lib = tmp_path / "lib"
    source = make_safetensors(tmp_path / "dl" / "m.safetensors", {"w": ("F32", [4096])})
    data = source.read_bytes()
    marker = tmp_path / "reached"
    proc = start_cli("--library", lib, "import", source, "--move", "--yes",
                     env={"MODELIMPORT_FAULTS": "move.after_rename:hang",
                          "MODELIMPORT_FAULT_MARKER": str(marker)})  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), proc.communicate()[1] if proc.poll() is not None else "no"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.communicate()
    assert not source.exists()  # it was in staging when the process died
    check = mi(lib, "check")
    assert check.code == 0, check.stdout + check.stderr
    assert source.read_bytes() == data
    assert library_files(lib) == []


@pytest.mark.parametrize(
    ("command", "probe"), [("remove", True), ("remove", False), ("edit", True)]
)
def test_a_model_held_open_by_another_program_stays_whole(
    tmp_path: Path, simulate, command: str, probe: bool
):
    """`remove` asks Windows first (nothing is touched); where only the rename refuses, the
    links it took away are put back."""
    lib, comfy = tmp_path / "lib", tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    lora = models.sdxl_lora(tmp_path / "dl" / "detail.safetensors")
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    assert mi(lib, "import", lora, "--yes").code == 0
    [model_file] = [p for p in library_files(lib) if p.suffix == ".safetensors"]
    model_id = model_file.parent.relative_to(lib).as_posix()
    before = (model_file.parent / "metadata.json").read_text()
    links_before = sorted(p.relative_to(comfy) for p in comfy.rglob("*.safetensors"))

    simulate({**WINDOWS, "held_open": [str(model_file)], "probe": probe})
    if command == "remove":
        run = mi(lib, "remove", model_id, "--yes", "--json")
        assert run.code == 1
        error = run.json["results"][0]["error"]
    else:
        run = mi(lib, "edit", model_id, "--name", "Renamed Detail")
        assert run.code == 1
        error = run.stderr
    assert "open in another program" in error or "may have one of its files open" in error
    assert error.count(". ") == 0 or command == "remove"  # one sentence
    assert model_file.exists() and (model_file.parent / "metadata.json").read_text() == before
    assert sorted(p.relative_to(comfy) for p in comfy.rglob("*.safetensors")) == links_before
    simulate(WINDOWS)
    assert mi(lib, "check").code == 0


def test_move_of_a_source_held_open_is_refused_and_the_source_stays(tmp_path: Path, simulate):
    lib = tmp_path / "lib"
    source = models.sdxl_lora(tmp_path / "dl" / "detail.safetensors")
    data = source.read_bytes()
    simulate({**WINDOWS, "held_open": [str(source)]})
    run = mi(lib, "import", source, "--move", "--yes", "--json")
    assert run.code == 1
    [result] = run.json["results"]
    assert result["status"] == "failed"
    assert "is open in another program" in result["error"]
    assert source.read_bytes() == data
    assert library_files(lib) == []


def test_the_cli_runs_on_a_console_that_is_not_utf8(tmp_path: Path):
    """Windows piped output writes the ANSI code page (cp1252): a Japanese model name must
    not end the run with a UnicodeEncodeError."""
    lib = tmp_path / "lib"
    source = models.sdxl_lora(tmp_path / "dl" / "細部強化.safetensors")
    run = run_cli("--library", lib, "import", source, "--yes", env={"PYTHONIOENCODING": "cp1252"})
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "細部強化" in run.stdout
