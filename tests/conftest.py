"""Shared pytest fixtures. Keep each fixture small and documented; append new ones below."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from fakehub import FakeHub

NO_HUB = "http://127.0.0.1:9"  # nothing listens there: a stray Hub call fails at once


@pytest.fixture(autouse=True)
def _isolated_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reaches huggingface.co, and each gets its own Hub lookup cache.

    huggingface_hub reads HF_ENDPOINT into `constants.ENDPOINT` at import time and uses it
    for calls of its own (e.g. its daily agent-registry fetch), so that is patched too.
    """
    monkeypatch.setenv("HF_ENDPOINT", NO_HUB)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", NO_HUB)
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("MODELIMPORT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub; HF_ENDPOINT points at it for in-process sessions.

    Add repos with `fake_hub.add_repo(...)`; read `fake_hub.counts[...]`; inject faults with
    `fake_hub.fail(...)` and `fake_hub.latency`. For subprocesses pass `fake_hub_env`.
    """
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
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
    if os.geteuid() != 0 or not shutil.which("mkfs.xfs"):
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
