"""Shared pytest fixtures. Keep each fixture small and documented; append new ones below."""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Hermetic from the first line: HOME, the XDG folders, HF_HOME and our own folders point into
# a folder of this test process before any library reads them (huggingface_hub computes its
# paths when imported, platformdirs whenever asked). Each test then gets its own copies under
# its tmp_path (`_isolated_home`). Nothing a test does reads or writes the user's real ones.
HERMETIC_ROOT = Path(tempfile.mkdtemp(prefix="modelimport-tests-"))
HOME_FOLDERS = {
    "HOME": "home",
    "XDG_CONFIG_HOME": "home/.config",
    "XDG_CACHE_HOME": "home/.cache",
    "XDG_DATA_HOME": "home/.local/share",
    "XDG_STATE_HOME": "home/.local/state",
    "XDG_RUNTIME_DIR": "run",
    "HF_HOME": "home/.cache/huggingface",
    "MODELIMPORT_CACHE_DIR": "home/.cache/modelimport",
    "MODELIMPORT_CONFIG_DIR": "home/.config/modelimport",
}


def _point_home_at(root: Path, setenv) -> None:
    for var, sub in HOME_FOLDERS.items():
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        setenv(var, str(folder))


NO_HUB = "http://127.0.0.1:9"  # nothing listens there: a stray Hub call fails at once

_point_home_at(HERMETIC_ROOT, os.environ.__setitem__)
for _var in list(os.environ):
    # What the user's shell may carry that changes what the CLI does (their library, tokens,
    # an offline switch, faults): the tests set what they need themselves.
    if _var.startswith(("MODELIMPORT_", "HF_", "HUGGING_FACE_", "CIVITAI_")) and (
        _var not in HOME_FOLDERS
    ):
        del os.environ[_var]
# huggingface_hub derives its API and download addresses from HF_ENDPOINT when imported:
# nothing in this process may ever reach huggingface.co.
os.environ["HF_ENDPOINT"] = NO_HUB
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import huggingface_hub.constants  # noqa: E402  (after HF_HOME is set, on purpose)
import pytest  # noqa: E402
from cli import CliRun, cli_env, set_hub_endpoint  # noqa: E402
from fakecivitai import FakeCivitai  # noqa: E402
from fakehub import FakeHub  # noqa: E402

# Removed when this process ends, not when a pytest session does: a tool that runs several
# sessions in one process (mutmut) keeps the folders huggingface_hub computed at import.
atexit.register(shutil.rmtree, HERMETIC_ROOT, ignore_errors=True)


# What some tests need that only Linux and macOS offer. On Windows (CI) those are skipped
# with the reason and the rest of the suite runs: whole modules where every test needs it,
# else each test whose own code uses one of the calls below.
_POSIX_ONLY_MODULES = {
    "test_crash_matrix.py": "kills the CLI with SIGKILL at every fault point",
    "test_crash_recovery.py": "kills or interrupts the CLI with SIGKILL / SIGINT",
    "test_bundle_crash.py": "kills the CLI with SIGKILL",
    "test_clone.py": "XFS loop mount, statvfs, SIGKILL",
    "test_cli_errors.py": "runs the CLI as another user, with chmod-ed folders",
    "test_examples.py": "drives a terminal (pty) with pexpect",
    "test_network_fs.py": "reads /proc/mounts",
    "test_simulated_windows.py": "simulates Windows on Linux (libc flock through ctypes)",
}
_POSIX_ONLY_CALLS = {
    "signal.SIGKILL": "kills the CLI with SIGKILL",
    "_kill_at(": "kills the CLI with SIGKILL",
    "pexpect": "drives a terminal (pty) with pexpect",
    "os.sync()": "os.sync",
    "chmod(": "file modes (chmod)",
}


# Modules that import a POSIX-only module at their top cannot even be collected on Windows.
collect_ignore = ["test_hostile_corpus.py", "test_review.py"] if sys.platform == "win32" else []
# Linux itself (not macOS): /proc.
_LINUX_ONLY_CALLS = {"/proc/mounts": "reads /proc/mounts"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.platform.startswith("linux"):
        return
    windows = sys.platform == "win32"
    calls = {**_POSIX_ONLY_CALLS, **_LINUX_ONLY_CALLS} if windows else _LINUX_ONLY_CALLS
    for item in items:
        reason = _POSIX_ONLY_MODULES.get(item.path.name) if windows else None
        if reason is None:
            try:
                source = inspect.getsource(item.function)  # type: ignore[attr-defined]
            except (AttributeError, OSError, TypeError):
                continue
            reason = next((why for call, why in calls.items() if call in source), None)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"not on {sys.platform}: {reason}"))


def _is_root() -> bool:
    """Root on Linux (loop mounts, other users); never on Windows, which has no geteuid."""
    return getattr(os, "geteuid", lambda: -1)() == 0


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test has its own empty HOME, XDG folders and HF_HOME (what the CLI, a
    subprocess of it, and huggingface_hub would write into), beside its tmp_path."""
    home = tmp_path_factory.mktemp("home")
    _point_home_at(home, monkeypatch.setenv)
    return home / "home"


@pytest.fixture(autouse=True)
def _isolated_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path
) -> Path:
    """No test reaches huggingface.co, and each gets its own Hub lookup cache.

    huggingface_hub reads HF_ENDPOINT into `constants.ENDPOINT` at import time and uses it
    for calls of its own (e.g. its daily agent-registry fetch), so that is patched too.
    """
    monkeypatch.setenv("HF_ENDPOINT", NO_HUB)
    _set_hub_endpoint(monkeypatch, NO_HUB)
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("MODELIMPORT_CACHE_DIR", str(cache))
    # Nor civitai.com: CivitAI is off unless a test uses `fake_civitai`.
    monkeypatch.setenv("CIVITAI_ENDPOINT", NO_HUB)
    monkeypatch.setenv("MODELIMPORT_CIVITAI", "0")
    monkeypatch.delenv("CIVITAI_API_TOKEN", raising=False)
    return cache


@pytest.fixture(autouse=True)
def _isolated_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path
) -> Path:
    """Each test has its own config folder (apps.toml), never the user's real one."""
    config = tmp_path / "config"
    monkeypatch.setenv("MODELIMPORT_CONFIG_DIR", str(config))
    return config


def _set_hub_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    constants = huggingface_hub.constants
    for name in ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE"):
        monkeypatch.setattr(constants, name, getattr(constants, name))  # put back after
    set_hub_endpoint(endpoint)


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub; HF_ENDPOINT points at it for in-process sessions.

    Add repos with `fake_hub.add_repo(...)`; read `fake_hub.counts[...]`; inject faults with
    `fake_hub.fail(...)` and `fake_hub.latency`. For subprocesses pass `fake_hub_env`.
    """
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    _set_hub_endpoint(monkeypatch, hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def fake_hub_env(fake_hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """Environment for a `modelimport` subprocess (tests/cli.py `run_cli(env=...)`) that talks
    to the fake Hub with its own cache."""
    return {
        "HF_ENDPOINT": fake_hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "MODELIMPORT_CACHE_DIR": str(tmp_path / "hub-cache"),
    }


@pytest.fixture
def fake_civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCivitai]:
    """A running fake CivitAI (tests/fakecivitai.py); CIVITAI_ENDPOINT points at it and
    CivitAI lookups are on for in-process sessions. For subprocesses pass
    `fake_civitai_env`."""
    civitai = FakeCivitai().start()
    monkeypatch.setenv("CIVITAI_ENDPOINT", civitai.url)
    monkeypatch.setenv("MODELIMPORT_CIVITAI", "1")
    try:
        yield civitai
    finally:
        civitai.stop()


@pytest.fixture
def fake_civitai_env(fake_civitai: FakeCivitai, fake_hub_env: dict[str, str]) -> dict[str, str]:
    """`fake_hub_env` plus CivitAI switched on and pointed at the fake."""
    return {**fake_hub_env, "CIVITAI_ENDPOINT": fake_civitai.url, "MODELIMPORT_CIVITAI": "1"}


@pytest.fixture(scope="session")
def reflink_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on a filesystem that can clone files (XFS with reflink).

    Made as a sparse XFS image mounted on a loop device, which needs root and mkfs.xfs
    (Debian package xfsprogs); or given as MODELIMPORT_TEST_REFLINK_DIR. Skips otherwise.
    """
    given = os.environ.get("MODELIMPORT_TEST_REFLINK_DIR")
    if given:
        yield Path(given)
        return
    if not _is_root() or not shutil.which("mkfs.xfs"):
        pytest.skip("needs root and mkfs.xfs (apt-get install xfsprogs) for an XFS loop mount")
    base = tmp_path_factory.mktemp("xfs")
    image, mount = base / "xfs.img", base / "mnt"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(512 << 20)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    mounted = made.returncode == 0 and (
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True)
    ).returncode == 0
    if not mounted:
        pytest.skip("could not make and loop-mount an XFS image here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# One user per test run, made when a permission test first needs it and removed when the
# run ends, passed or failed (`pytest_sessionfinish`): runs side by side never delete each
# other's user, and none is left behind. xdist's workers inherit the name from the
# controller's environment.
TEST_USER = os.environ.setdefault("MODELIMPORT_TEST_USER", f"mi-test-{os.getpid()}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without xdist) removes this run's test user, if made."""
    if hasattr(session.config, "workerinput") or os.geteuid() != 0:
        return
    if subprocess.run(["id", "-u", TEST_USER], capture_output=True).returncode != 0:
        return
    for _ in range(20):  # userdel fails while another process holds /etc/passwd's lock
        if subprocess.run(["userdel", TEST_USER], capture_output=True).returncode in (0, 6):
            return  # 6: no such user
        time.sleep(0.25)


class OtherUser:
    """A user who is not root, for permission tests (the suite runs as root, and root may
    read and write anything). `home` is a fresh folder the user owns; `run` runs the real
    CLI as that user."""

    def __init__(self, name: str, home: Path) -> None:
        self.name = name
        self.home = home

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> CliRun:
        import sys

        extra = {
            **{var: str(self.home / sub.removeprefix("home").lstrip("/"))
               for var, sub in HOME_FOLDERS.items()},
            "MODELIMPORT_CACHE_DIR": str(self.home / ".cache"),
            **(env or {}),
        }  # fmt: skip
        proc = subprocess.run(
            ["setpriv", f"--reuid={self.name}", f"--regid={self.name}", "--clear-groups",
             sys.executable, "-m", "modelimport", *map(str, args)],
            capture_output=True,
            text=True,
            env=cli_env(extra),
            stdin=subprocess.DEVNULL,
            cwd=self.home,
            timeout=120,
        )  # fmt: skip
        return CliRun(proc.returncode, proc.stdout, proc.stderr)

    def owns(self, path: Path) -> Path:
        subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(path)], check=True)
        return path


@pytest.fixture
def other_user() -> Iterator[OtherUser]:
    """A non-root user made for the tests (useradd; needs root and setpriv, skips otherwise)."""
    import tempfile

    if not _is_root() or not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.skip("needs root, useradd and setpriv to run the CLI as a non-root user")
    for _ in range(20):  # useradd fails while another process holds /etc/passwd's lock
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            capture_output=True,
            text=True,
        )
        if made.returncode in (0, 9):  # 9: the user exists already (another test made it)
            break
        time.sleep(0.25)
    else:
        pytest.skip(f"could not create a test user: {made.stderr.strip()}")
    # Not under tmp_path: pytest's folders are root's alone (0700), the user could not enter.
    home = Path(tempfile.mkdtemp(prefix="modelimport-user-", dir="/tmp"))
    home.chmod(0o755)
    user = OtherUser(TEST_USER, home)
    user.owns(home)
    probe = user.run("--version")
    if probe.code != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"the test user cannot run this Python: {probe.stderr.strip()[:200]}")
    try:
        yield user
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(home)], check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real, small (64 MiB) ext4 filesystem, loop-mounted, for disk-full tests (needs
    root and mkfs.ext4; falls back to a 64 MiB tmpfs; skips where neither can be mounted)."""
    if not _is_root():
        pytest.skip("needs root to mount a small filesystem")
    mount = tmp_path / "small"
    mount.mkdir()
    image = tmp_path / "small.img"
    mounted = False
    if shutil.which("mkfs.ext4"):
        with open(image, "wb") as fh:
            fh.truncate(64 << 20)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True)
        mounted = made.returncode == 0 and subprocess.run(
            ["mount", "-o", "loop", str(image), str(mount)], capture_output=True
        ).returncode == 0
    if not mounted:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
        ).returncode == 0
    if not mounted:
        pytest.skip("could not mount a small ext4 image or tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def exfat_dir() -> Iterator[Path]:
    """A real exFAT filesystem (case-insensitive, no links of any kind), loop-mounted under
    /tmp for this test; skips with the reason where it cannot be made (tests/mounts.py)."""
    import mounts

    with mounts.exfat() as mount:
        yield mount


@pytest.fixture
def ntfs_dir() -> Iterator[Path]:
    """A real NTFS filesystem through ntfs-3g, mounted under /tmp for this test."""
    import mounts

    with mounts.ntfs() as mount:
        yield mount


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the crash matrix's kill points that ran (tests/test_crash_matrix.py)."""
    import sys

    ran = getattr(sys.modules.get("test_crash_matrix"), "RAN", None)
    if ran:
        terminalreporter.write_sep("-", f"crash matrix: {len(ran)} kill points recovered")
        for line in ran:
            terminalreporter.write_line(line)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def sshfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on a real network filesystem: sshfs (FUSE, `fuse.sshfs` in /proc/mounts)
    over SSH to an sshd of the test's own on 127.0.0.1. Needs root, /dev/fuse and the
    Debian packages sshfs and openssh-server; skips, saying which is missing, otherwise."""
    import socket

    tools = ("sshfs", "ssh-keygen", "fusermount")
    missing = [t for t in tools if not shutil.which(t)] + (
        [] if Path("/usr/sbin/sshd").exists() else ["sshd"]
    )
    if os.geteuid() != 0 or missing or not Path("/dev/fuse").exists():
        pytest.skip(f"needs root, /dev/fuse, sshfs and openssh-server (missing: {missing})")
    base = tmp_path_factory.mktemp("sshfs")
    export, mount = base / "export", base / "mnt"
    export.mkdir()
    mount.mkdir()
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)],
                       check=True, capture_output=True)  # fmt: skip
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"AuthorizedKeysFile {base / 'user_key.pub'}\nPidFile {base / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        "StrictModes no\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for _ in range(100):  # until it listens (or has died)
            with socket.socket() as sock:
                if sshd.poll() is not None or sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        mounted = sshd.poll() is None and subprocess.run(
            ["sshfs", "-p", str(port), f"root@127.0.0.1:{export}", str(mount), "-o",
             f"IdentityFile={base / 'user_key'},StrictHostKeyChecking=no,"
             "UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR"],
            capture_output=True, text=True, timeout=30,
        ).returncode == 0  # fmt: skip
        if not mounted:
            pytest.skip("could not start an sshd on 127.0.0.1 and mount it with sshfs here")
        try:
            yield mount
        finally:
            subprocess.run(["fusermount", "-u", "-z", str(mount)], check=False)
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
