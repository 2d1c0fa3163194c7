"""Configuration: where the library lives and where caches and settings go.

Precedence for the library root: `--library PATH`, then env `MODELIMPORT_LIBRARY`, then
`platformdirs.user_data_path("modelimport") / "models"`.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "modelimport"


def default_library_root() -> Path:
    import platformdirs

    return platformdirs.user_data_path(APP_NAME) / "models"


def resolve_library_root(given: Path | None) -> Path:
    if given is not None:
        return given.expanduser().resolve()
    env = os.environ.get("MODELIMPORT_LIBRARY")
    if env:
        return Path(env).expanduser().resolve()
    return default_library_root()


def user_cache_dir() -> Path:
    env = os.environ.get("MODELIMPORT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME)


def user_config_dir() -> Path:
    env = os.environ.get("MODELIMPORT_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_config_path(APP_NAME)


def hub_offline_by_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
