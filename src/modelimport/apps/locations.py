"""Where each app keeps its models by default on each system: what `apps add` uses when the
person names only a kind. Read from each app's own code, not guessed:

- LM Studio: `~/.lmstudio/models` on Linux, macOS and Windows (its models folder).
- ComfyUI Desktop (Comfy-Org/desktop): its settings live in `%APPDATA%\\ComfyUI\\config.json`
  (macOS `~/Library/Application Support/ComfyUI/config.json`, Linux `~/.config/ComfyUI`),
  whose `basePath` is the folder the person chose at install (it holds `models/`); the
  installer proposes `Documents/ComfyUI`.
- Stability Matrix (LykosAI/StabilityMatrix): its settings home is .NET's ApplicationData +
  StabilityMatrix (`Compat.AppDataHome`: `%APPDATA%\\StabilityMatrix` on Windows,
  `~/.config/StabilityMatrix` on macOS and Linux), where `library.json`'s `LibraryPath` names
  the data folder the person chose (`SettingsManager.TryFindLibrary`). Without it the data
  folder is the one its first start proposes (`SelectDataDirectoryViewModel.
  DefaultInstallLocation`): that settings home, but `~/StabilityMatrix` on Linux. The data
  folder holds the shared `Models/`; ComfyUI installed by it is `<data>/Packages/ComfyUI`.
  (A portable install keeps `Data/` beside its program, which nothing here can know.) Its
  `settings.json` there may move the shared models elsewhere (`ModelDirectoryOverride`,
  read by `SettingsManager.ModelsDirectory`).

What these files say is untrusted like any input: only an absolute path in a string is used,
and a candidate is offered only if it is a folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

# JSON settings files of other apps are small; a bigger one is not what we look for.
_SETTINGS_LIMIT = 1 << 20


def default_folders(
    kind: str,
    system: str = sys.platform,
    home: Path | None = None,
    env: Mapping[str, str] = os.environ,
) -> list[tuple[str, Path]]:
    """(which app, folder) candidates for `kind` on `system`, most likely first; each may or
    may not exist here."""
    home = home or Path.home()
    if kind == "lmstudio":
        return [("LM Studio", home / ".lmstudio" / "models")]
    if kind == "stabilitymatrix":
        return [("Stability Matrix", stability_matrix_data(system, home, env))]
    if kind != "comfyui":
        return []
    if system == "win32":
        app_data = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        desktop_settings = app_data / "ComfyUI"
    elif system == "darwin":
        desktop_settings = home / "Library" / "Application Support" / "ComfyUI"
    else:
        desktop_settings = home / ".config" / "ComfyUI"
    found = []
    chosen = _setting(desktop_settings / "config.json", "basePath")
    if chosen is not None:
        found.append(("ComfyUI Desktop", chosen))
    found.append(("ComfyUI Desktop", home / "Documents" / "ComfyUI"))
    matrix_data = stability_matrix_data(system, home, env)
    found.append(("Stability Matrix", matrix_data / "Packages" / "ComfyUI"))
    return found


def stability_matrix_data(system: str, home: Path, env: Mapping[str, str]) -> Path:
    """Stability Matrix's data folder (the one holding Models/ and Packages/)."""
    if system == "win32":
        settings_home = Path(env.get("APPDATA") or home / "AppData" / "Roaming") / "StabilityMatrix"
    elif system == "darwin":
        settings_home = home / ".config" / "StabilityMatrix"
    else:  # .NET's ApplicationData on Linux is XDG_CONFIG_HOME, else ~/.config
        config_home = env.get("XDG_CONFIG_HOME") or ""
        base = Path(config_home) if os.path.isabs(config_home) else home / ".config"
        settings_home = base / "StabilityMatrix"
    chosen = _setting(settings_home / "library.json", "LibraryPath")
    if chosen is not None:
        return chosen
    return home / "StabilityMatrix" if system not in ("win32", "darwin") else settings_home


def stability_matrix_models_override(data: Path) -> Path | None:
    """The models folder Stability Matrix uses instead of `<data>/Models`, if its settings
    say so (absolute paths only, as everywhere here)."""
    chosen = _setting(data / "settings.json", "ModelDirectoryOverride")
    if chosen is None or chosen == data / "Models":
        return None
    return chosen


def existing_default(kind: str) -> tuple[str, Path] | None:
    """The first default folder of `kind` that exists on this machine."""
    return next(((app, p) for app, p in default_folders(kind) if p.is_dir()), None)


def _setting(path: Path, key: str) -> Path | None:
    """An absolute folder named by `key` in another app's JSON settings file, if it says so."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(_SETTINGS_LIMIT + 1)[:_SETTINGS_LIMIT])
    except (OSError, ValueError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or "\x00" in value or not os.path.isabs(value):
        return None
    return Path(value)
