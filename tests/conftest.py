"""Shared pytest fixtures. Keep each fixture small and documented; append new ones below."""

from __future__ import annotations

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
