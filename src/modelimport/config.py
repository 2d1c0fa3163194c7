"""Configuration: where the library lives and where caches and settings go.

Precedence for the library root: `--library PATH`, then env `MODELIMPORT_LIBRARY`, then
`platformdirs.user_data_path("modelimport") / "models"`.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "modelimport"
# Windows only: no "author" folder above ours (platformdirs would make it
# %LOCALAPPDATA%\modelimport\modelimport); every character counts against MAX_PATH there.
APP_AUTHOR = False


def default_library_root() -> Path:
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, APP_AUTHOR) / "models"


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

    return platformdirs.user_cache_path(APP_NAME, APP_AUTHOR)


def user_config_dir() -> Path:
    env = os.environ.get("MODELIMPORT_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_config_path(APP_NAME, APP_AUTHOR)


def hub_offline_by_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# Identity sources a person can switch off: name -> environment variable ("0", "off", "no",
# "false" switch it off). The config file says the same in `config.toml`:
#     [sources]
#     civitai = false
SOURCE_SWITCHES = {"civitai": "MODELIMPORT_CIVITAI"}
CONFIG_FILE = "config.toml"


def disabled_sources(*, no_flags: dict[str, bool] | None = None) -> frozenset[str]:
    """Sources switched off for this run: by `--no-<name>` (`no_flags`), the environment or
    the config file (in that order of precedence; a bad config file is no switch at all)."""
    import tomllib

    disabled = {name for name, off in (no_flags or {}).items() if off}
    try:
        with open(user_config_dir() / CONFIG_FILE, "rb") as fh:
            table = tomllib.load(fh).get("sources")
    except (OSError, ValueError):
        table = None
    for name, env in SOURCE_SWITCHES.items():
        value = os.environ.get(env, "").strip().lower()
        by_file = isinstance(table, dict) and table.get(name) is False
        if value in {"0", "off", "no", "false"} or (not value and by_file):
            disabled.add(name)
    return frozenset(disabled)
