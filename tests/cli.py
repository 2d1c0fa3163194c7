"""Run the real `modelimport` CLI in a subprocess, as a user or a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # MODELIMPORT_CONFIG_DIR is kept: conftest points it at the test's own folder, so no
    # test ever links into the apps registered in the real user's config.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELIMPORT_", "HF_")) or k == "MODELIMPORT_CONFIG_DIR"
    }
    env["HF_HUB_OFFLINE"] = "1"  # tests that want a Hub point HF_ENDPOINT at the fake one
    # CivitAI is off unless a test turns it on with the fake (`fake_civitai_env`); even on,
    # nothing listens at this endpoint, so a stray call fails at once instead of going out.
    env["MODELIMPORT_CIVITAI"] = "0"
    env["CIVITAI_ENDPOINT"] = "http://127.0.0.1:9"
    env.pop("CIVITAI_API_TOKEN", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


SIMULATE_ENV = "MODELIMPORT_TEST_SIMULATE"
SIMULATED_OS = Path(__file__).with_name("simulated_os.py")


def cli_command() -> list[str]:
    """How to start the CLI. With MODELIMPORT_TEST_SIMULATE set (e.g. `windows`, or a JSON
    object: tests/simulated_os.py), every CLI a test starts runs with what the simulated
    system lacks taken away: `MODELIMPORT_TEST_SIMULATE=windows pytest` runs the suite so."""
    simulation = os.environ.get(SIMULATE_ENV)
    if simulation:
        return [sys.executable, str(SIMULATED_OS), simulation]
    return [sys.executable, "-m", "modelimport"]


def run_cli(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> CliRun:
    proc = subprocess.run(
        [*cli_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=cwd,
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def start_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*cli_command(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(env),
    )


def kill_at_fault(*args: str | Path, fault: str, marker: Path) -> None:
    """Run the CLI with the fault `point[>=N]:hang`, wait until it hangs there (it writes
    `marker`), and SIGKILL it, as a power cut or the OOM killer would."""
    import signal
    import time

    env = {"MODELIMPORT_FAULTS": fault, "MODELIMPORT_FAULT_MARKER": str(marker)}
    proc = start_cli(*args, env=env)
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def library_files(root: Path) -> list[Path]:
    """Every file in the library outside `.modelimport` (what a user would see)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and ".modelimport" not in p.relative_to(root).parts
    )


def trust_fields(meta: dict) -> tuple:
    """What a metadata.json claims about its Hub match, for one-line assertions."""
    return (
        meta["trust_level"],
        meta["match_method"],
        meta["match_confidence"],
        meta["hash_mismatch"],
    )
