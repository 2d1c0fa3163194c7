"""Run the real `modelimport` CLI as a user or a script would: in a subprocess (`run_cli`,
`start_cli`), or in this process (`run_cli_here`) where a real process is not the point.

Both run this interpreter's `modelimport` (the one of the environment the tests run in),
never whatever `modelimport` comes first on the caller's PATH.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modelimport

# The folder of this interpreter's scripts: `modelimport` there is the console script of the
# install under test (a venv's bin, or the system's).
SCRIPTS = Path(sys.executable).parent
CONSOLE_SCRIPT = SCRIPTS / "modelimport"
# The folder the `modelimport` package under test was imported from.
CODE_ROOT = Path(modelimport.__file__).resolve().parent.parent


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # MODELIMPORT_CONFIG_DIR and MODELIMPORT_CACHE_DIR... are dropped and set again by the
    # caller: conftest points the config folder at the test's own, so no test ever links
    # into the apps registered in the real user's config.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELIMPORT_", "HF_")) or k == "MODELIMPORT_CONFIG_DIR"
    }
    env["HF_HUB_OFFLINE"] = "1"  # tests that want a Hub point HF_ENDPOINT at the fake one
    # conftest gave the test its own HF_HOME; keep it (huggingface_hub writes there).
    if "HF_HOME" in os.environ:
        env["HF_HOME"] = os.environ["HF_HOME"]
    # CivitAI is off unless a test turns it on with the fake (`fake_civitai_env`); even on,
    # nothing listens at this endpoint, so a stray call fails at once instead of going out.
    env["MODELIMPORT_CIVITAI"] = "0"
    env["CIVITAI_ENDPOINT"] = "http://127.0.0.1:9"
    env.pop("CIVITAI_API_TOKEN", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    # A test that runs `modelimport` by name (the console script) gets this install's.
    env["PATH"] = os.pathsep.join([str(SCRIPTS), env.get("PATH", os.defpath)])
    # And the CLI runs the very code this process imports (under mutmut, the mutated copy).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE_ROOT), env.get("PYTHONPATH")]))
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


def run_cli_here(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> CliRun:
    """`run_cli` without the process: `modelimport.cli.app:main` in this process, with the
    environment, working folder, argv and standard streams a subprocess would have, all put
    back afterwards. About 0.25 s less a call than starting Python.

    For what reads only its arguments, files and environment. Use `run_cli` where the
    process is the point: signals, the pseudo-terminal, kills, concurrency. A run with
    MODELIMPORT_FAULTS (read once a process; a crash ends the process) goes to `run_cli`.
    A hang is caught by pytest-timeout, not by `timeout`.
    """
    full_env = cli_env(env)
    if full_env.get("MODELIMPORT_FAULTS"):
        return run_cli(*args, env=env, timeout=timeout, cwd=cwd)
    from modelimport.cli.app import main

    stdout, stderr = _stream(), _stream()
    with _isolated(full_env, cwd, ["modelimport", *map(str, args)], stdout, stderr):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code, stderr)
    return CliRun(code, _text(stdout), _text(stderr))


def _stream() -> io.TextIOWrapper:
    # A text stream over bytes, like a pipe's: code that writes to `.buffer` works too.
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace", write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    raw = stream.buffer.getvalue()  # type: ignore[attr-defined]
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


def _exit_code(code: object, stderr: io.TextIOWrapper) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    stderr.write(f"{code}\n")  # sys.exit("message"), as the interpreter would print it
    return 1


def set_hub_endpoint(endpoint: str) -> None:
    """What huggingface_hub derives from HF_ENDPOINT when imported (its API calls and its
    file downloads), as a process started with that HF_ENDPOINT would have it."""
    import huggingface_hub.constants as hf_constants

    endpoint = endpoint.rstrip("/")
    hf_constants.ENDPOINT = endpoint
    hf_constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"


@contextlib.contextmanager
def _isolated(
    env: dict[str, str],
    cwd: Path | None,
    argv: list[str],
    stdout: io.TextIOWrapper,
    stderr: io.TextIOWrapper,
) -> Iterator[None]:
    """Swap in what a fresh process would have, and put everything back, even on error."""
    import huggingface_hub.constants as hf_constants

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr, sys.argv
    saved_endpoint = hf_constants.ENDPOINT, hf_constants.HUGGINGFACE_CO_URL_TEMPLATE
    os.environ.clear()
    os.environ.update(env)
    # huggingface_hub reads HF_ENDPOINT at import: a fresh process would see this one.
    set_hub_endpoint(env.get("HF_ENDPOINT") or saved_endpoint[0])
    _clear_process_caches()
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")  # like /dev/null
    sys.stdout, sys.stderr, sys.argv = stdout, stderr, argv
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr, sys.argv = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        hf_constants.ENDPOINT, hf_constants.HUGGINGFACE_CO_URL_TEMPLATE = saved_endpoint
        _clear_process_caches()
        # What the command left open (SQLite connections above all) is closed now, as the
        # end of a process would: an open WAL connection would serve a later command pages
        # of an index file that has since been replaced.
        gc.collect()


def _clear_process_caches() -> None:
    """Forget what modelimport computes once a process (functools caches: the fault plan,
    the catalog, ...), so that each run reads its environment afresh."""
    for name, module in list(sys.modules.items()):
        if name == "modelimport" or name.startswith("modelimport."):
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear) and getattr(value, "__module__", None) == name:
                    clear()


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
