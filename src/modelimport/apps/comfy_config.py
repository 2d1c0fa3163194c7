"""ComfyUI served by its own config, with no link at all: one section of the
`extra_model_paths.yaml` in ComfyUI's folder points ComfyUI at the library's type folders.

    # >>> modelimport: this section is written by modelimport (apps add --via config, sync)
    modelimport:
      base_path: "/home/me/models"
      checkpoints: checkpoint
      controlnet: |
        controlnet
        t2i_adapter
    # <<< modelimport

ComfyUI (utils/extra_config.py) reads every top-level section: `base_path`, then each
folder name of folder_paths.py with one path, or several in a `|` block, relative to it.
Its folder lists are recursive, so `loras: lora` shows every LoRA of the library as
`<family>/<slug>/<file>`. `is_default` is left out (false): ComfyUI's downloads keep
going to its own folders, never into the library.

Invariants:
- Only the text between our two marker lines is ever written; every other line of the
  file (the user's sections, comments, blank lines) stays byte for byte. A `modelimport`
  section without our markers is the user's: refused, never replaced.
- The file is checked before and after: it must parse (PyYAML's safe loader, as ComfyUI
  reads it), every other section must read exactly as before, and ours as intended; else
  nothing is written. Writes are atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from modelimport.apps.layouts import COMFYUI, folder_for
from modelimport.apps.targets import AppsConfigError, AppTarget, write_text_atomic

CONFIG_NAME = "extra_model_paths.yaml"
SECTION = "modelimport"
BEGIN = f"# >>> {SECTION}: this section is written by modelimport (apps add --via config, sync)"
END = f"# <<< {SECTION}"
# Library model types whose ComfyUI folder name is not the name of their folder:
# T2I-Adapters are read through `controlnet` (folder_paths.py lists models/t2i_adapter
# among controlnet's paths); a diffusers pipeline folder is found by ComfyUI's
# DiffusersLoader walking `diffusers` paths for model_index.json, and the library keeps
# pipelines under their model type (checkpoint).
FOLDER_NAME_OF = {"t2i_adapter": "controlnet"}
DIFFUSERS_TYPES = ("checkpoint",)


def config_file(target: AppTarget) -> Path:
    return target.path / CONFIG_NAME


def folders(target: AppTarget) -> dict[str, list[str]]:
    """ComfyUI folder name -> the library's type folders it should read, in table order."""
    keys: dict[str, list[str]] = {}
    for model_type in COMFYUI:
        if model_type == "diffusers":
            keys.setdefault("diffusers", []).extend(DIFFUSERS_TYPES)
            continue
        # The app's --map says where links go; ComfyUI reads the config by its own names.
        folder = folder_for("comfyui", model_type, target.path, {}) or ""
        name = FOLDER_NAME_OF.get(model_type) or folder.removeprefix("models/")
        if name and "/" not in name:
            keys.setdefault(name, []).append(model_type)
    return keys


def section_text(target: AppTarget, library_root: Path) -> str:
    # JSON's double-quoted string is YAML's too: a Windows path's backslashes stay whole.
    base = json.dumps(str(library_root), ensure_ascii=False)
    lines = [BEGIN, f"{SECTION}:", f"  base_path: {base}"]
    for name, paths in folders(target).items():
        if len(paths) == 1:
            lines.append(f"  {name}: {paths[0]}")
        else:
            lines += [f"  {name}: |", *(f"    {p}" for p in paths)]
    return "\n".join([*lines, END]) + "\n"


def _intended(target: AppTarget, library_root: Path) -> dict[str, Any]:
    keys: dict[str, Any] = {"base_path": str(library_root)}
    for name, paths in folders(target).items():
        keys[name] = paths[0] if len(paths) == 1 else "".join(f"{p}\n" for p in paths)
    return keys


def _read(path: Path) -> str | None:
    """The file's text; None when there is no file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise AppsConfigError(f"{path} cannot be read: {why.lower()}.") from exc


def _load(path: Path, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise AppsConfigError(
            f"{path} is not valid YAML{where}; fix it, then run `modelimport sync`."
        ) from exc
    if data is None:  # empty, or comments only
        return {}
    if not isinstance(data, dict):
        raise AppsConfigError(f"{path} is not a YAML mapping of sections, as ComfyUI reads it.")
    return data


def _split(path: Path, text: str) -> tuple[str, str | None, str]:
    """(before, our section or None, after) of the file's text, by the marker lines."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == END]
    if not starts and not ends:
        return text, None, ""
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise AppsConfigError(
            f"{path} has modelimport's marker lines out of order; remove its modelimport "
            "section, then run `modelimport sync`."
        )
    start, end = starts[0], ends[0]
    return "".join(lines[:start]), "".join(lines[start : end + 1]), "".join(lines[end + 1 :])


def read_state(target: AppTarget, library_root: Path) -> str:
    """missing | current | stale (our section points elsewhere or lists other folders)."""
    path = config_file(target)
    text = _read(path)
    _, ours, _ = _split(path, text or "")
    if ours is None:
        return "missing"
    current = ours.replace("\r\n", "\n") == section_text(target, library_root)
    return "current" if current else "stale"


def _refuse_link(path: Path) -> None:
    """The file is edited only where it is ComfyUI's own: a link would be replaced by a copy
    of whatever it points at (another config, a token file), and the person's link lost."""
    if os.path.islink(path):
        raise AppsConfigError(
            f"{path} is a link (to {os.readlink(path)}), which modelimport does not write "
            f"through: add the {SECTION!r} section by hand (`modelimport apps add --help`)."
        )


def write_section(target: AppTarget, library_root: Path) -> str:
    """Make our section say `library_root`: returns written | updated | unchanged."""
    path = config_file(target)
    _refuse_link(path)
    text = _read(path) or ""
    before = _load(path, text)
    head, ours, tail = _split(path, text)
    wanted = section_text(target, library_root)
    if ours is not None and ours.replace("\r\n", "\n") == wanted:
        return "unchanged"
    if ours is None and SECTION in before:
        raise AppsConfigError(
            f"{path} already has a {SECTION!r} section that modelimport did not write; rename "
            "it, then run `modelimport sync`."
        )
    if ours is None:
        head = head if not head or head.endswith("\n") else head + "\n"
        new_text = head + ("\n" if head.strip() else "") + wanted
    else:
        new_text = head + wanted + tail
    after = _load(path, new_text)
    others_before = {k: v for k, v in before.items() if k != SECTION}
    others_after = {k: v for k, v in after.items() if k != SECTION}
    if others_after != others_before or after.get(SECTION) != _intended(target, library_root):
        raise AppsConfigError(
            f"{path} is laid out so that a section added at its end would change how it "
            f"reads; add the {SECTION!r} section by hand (`modelimport apps add --help`)."
        )
    write_text_atomic(path, new_text, "ComfyUI's model paths file")
    return "written" if ours is None else "updated"


def remove_section(target: AppTarget) -> bool:
    """Take our section out of the file (the rest stays as it is); False if it had none."""
    path = config_file(target)
    _refuse_link(path)
    head, ours, tail = _split(path, _read(path) or "")
    if ours is None:
        return False
    if head.endswith("\n\n"):
        head = head[:-1]  # the blank line we put before the section
    if not (head + tail).strip():
        # Ours was all of it: an empty file would stop ComfyUI from starting (it reads the
        # file as a mapping), so the file goes.
        try:
            path.unlink()
        except OSError as exc:
            raise AppsConfigError(f"Cannot remove {path}: {exc.strerror or exc}.") from exc
        return True
    write_text_atomic(path, head + tail, "ComfyUI's model paths file")
    return True
