"""App targets: the apps a library is linked into, kept in `apps.toml` in the user config dir.

    [apps.comfy]
    kind = "comfyui"
    path = "/home/me/ComfyUI"
    subfolders = "family"          # optional: loras/sdxl/..., checkpoints/flux/...
    [apps.comfy.map]               # optional: model type -> folder, overrides the kind's table
    upscaler = "models/upscale_models"
    [apps.comfy-usb]
    kind = "comfyui"
    path = "E:/ComfyUI"
    via = "config"                 # optional: served by its extra_model_paths.yaml, no links

The file is read with tomlkit and written back through it, so comments and layout a person
added survive `apps add` and `apps remove`. Writes are atomic (temp file, fsync, rename).
`MODELIMPORT_CONFIG_DIR` overrides the folder (tests use it to stay isolated).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.apps.layouts import KINDS, MODELS_FOLDER, TABLES, is_relative_subdir
from modelimport.config import user_config_dir
from modelimport.errors import ModelImportError, UsageError
from modelimport.probe.tables import MODEL_TYPES

CONFIG_NAME = "apps.toml"
SUBFOLDER_MODES = ("none", "family")
# How an app gets the models: links in its folders, or its own config file pointing at the
# library (kinds that read one: ComfyUI's extra_model_paths.yaml).
VIA_MODES = ("links", "config")
CONFIG_KINDS = ("comfyui",)
APP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# What --map may name: the model types the probe records, and the apps' own folder keys
# (`diffusers` for a pipeline folder, `hypernetwork`, `vae_approx`, ...).
MAP_TYPES = frozenset(MODEL_TYPES) | {key for table in TABLES.values() for key in table}


class AppsConfigError(ModelImportError):
    """The apps config file cannot be read or written."""


@dataclass(frozen=True)
class AppTarget:
    name: str
    kind: str
    path: Path
    subfolders: str = "none"
    mapping: dict[str, str] = field(default_factory=dict)
    via: str = "links"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "subfolders": self.subfolders,
            "map": dict(self.mapping),
            "via": self.via,
        }


def config_path() -> Path:
    return user_config_dir() / CONFIG_NAME


def _read_document(path: Path) -> Any:
    import tomlkit

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return tomlkit.document()
    except OSError as exc:  # permission denied on it or its folder, a folder in its place
        raise AppsConfigError(
            f"The apps config {path} cannot be read: {(exc.strerror or str(exc)).lower()}."
        ) from exc
    try:
        return tomlkit.parse(text)
    except Exception as exc:  # tomlkit raises its own ParseError family
        raise AppsConfigError(f"The apps config {path} is not valid TOML ({exc}).") from exc


def load_targets(path: Path | None = None) -> list[AppTarget]:
    """Every configured app, in file order; no file means no apps."""
    path = path or config_path()
    apps = _read_document(path).get("apps") or {}
    targets = []
    for name, table in apps.items():
        targets.append(_target_from(path, str(name), table))
    return targets


def _target_from(path: Path, name: str, table: Any) -> AppTarget:
    where = f"The app {name!r} in {path}"
    if not isinstance(table, dict):
        raise AppsConfigError(f"{where} is not a table.")
    kind, app_path = table.get("kind"), table.get("path")
    if kind not in KINDS:
        raise AppsConfigError(f"{where} has kind {kind!r}; expected one of {', '.join(KINDS)}.")
    if not isinstance(app_path, str) or not app_path:
        raise AppsConfigError(f"{where} has no path.")
    subfolders = table.get("subfolders", "none")
    if subfolders not in SUBFOLDER_MODES:
        raise AppsConfigError(f"{where} has subfolders {subfolders!r}; expected none or family.")
    mapping = table.get("map") or {}
    if not isinstance(mapping, dict) or not all(
        isinstance(v, str) and is_relative_subdir(v) for v in mapping.values()
    ):
        raise AppsConfigError(f"{where} has a map whose folders are not relative subfolders.")
    mapping = {str(k): str(v) for k, v in mapping.items()}
    via = table.get("via", "links")
    if via not in VIA_MODES or (via == "config" and kind not in CONFIG_KINDS):
        raise AppsConfigError(f"{where} has via {via!r}; expected links, or config for comfyui.")
    return AppTarget(name, str(kind), Path(app_path), str(subfolders), mapping, str(via))


def parse_mappings(items: list[str]) -> dict[str, str]:
    """`TYPE=SUBDIR` strings from the command line, checked."""
    mapping = {}
    for item in items:
        model_type, sep, subdir = item.partition("=")
        model_type, subdir = model_type.strip().lower(), subdir.strip().strip("/")
        if not sep or not model_type or not is_relative_subdir(subdir):
            raise UsageError(
                f"--map {item!r} is not TYPE=SUBDIR with a relative SUBDIR (e.g. lora=loras)."
            )
        if model_type not in MAP_TYPES:
            raise UsageError(
                f"--map {item!r}: {model_type!r} is not a model type; use one of "
                f"{', '.join(sorted(MAP_TYPES))}."
            )
        mapping[model_type] = subdir
    return mapping


def add_target(target: AppTarget, path: Path | None = None) -> Path:
    """Add one app to the config file; returns the file's path.

    An app is never replaced silently: a name already registered with other settings, or a
    folder already registered under another name (two names for one folder would each
    remove the other's links), is refused. Adding the same app again changes nothing."""
    import tomlkit

    if not APP_NAME_RE.match(target.name):
        raise UsageError(
            f"{target.name!r} is not a usable app name (letters, digits, . _ -; up to 64)."
        )
    if target.kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}.")
    if target.via not in VIA_MODES:
        raise UsageError("--via must be links or config.")
    if target.via == "config" and target.kind not in CONFIG_KINDS:
        raise UsageError(
            f"--via config needs an app that reads a config file of model folders "
            f"({', '.join(CONFIG_KINDS)}); a {target.kind} app is served by links."
        )
    if target.kind == "folder" and not target.mapping:
        raise UsageError("A folder app needs at least one --map TYPE=SUBDIR (e.g. lora=loras).")
    if not target.path.is_dir():
        raise UsageError(f"{target.path} is not a folder.")
    if target.kind == "stabilitymatrix":  # before Models/: a moved one may leave none here
        _refuse_moved_matrix_models(target.path)
    models = MODELS_FOLDER.get(target.kind)
    if models is not None and not (target.path / models).is_dir():
        # Links would land in <path>/models/models/...: the app would never see them.
        hint = (
            f" (give {target.path.parent}, the folder that holds it)"
            if target.path.name.lower() == models.lower()
            else ""
        )
        which = "data folder" if target.kind == "stabilitymatrix" else "install folder"
        raise UsageError(
            f"{target.path} has no {models}/ folder; a {target.kind} app is its {which}, "
            f"the one holding {models}/{hint}."
        )
    if target.kind == "lmstudio" and (target.path / "models").is_dir():
        # ~/.lmstudio itself: LM Studio reads <publisher>/<repo>/ folders from its models/
        # folder only; links beside it would never be seen.
        raise UsageError(
            f"{target.path} holds LM Studio's models/ folder; give {target.path / 'models'}, "
            "the folder LM Studio reads models from."
        )
    path = path or config_path()
    existing = {t.name: t for t in load_targets(path)}
    if _refuse_duplicate(target, existing):
        return path  # the very same app, registered again: nothing to change
    doc = _read_document(path)
    apps = doc.get("apps")
    if apps is None:
        apps = tomlkit.table(is_super_table=True)
        doc["apps"] = apps
    table = tomlkit.table()
    table["kind"] = target.kind
    table["path"] = str(target.path)
    if target.subfolders != "none":
        table["subfolders"] = target.subfolders
    if target.mapping:
        table["map"] = dict(target.mapping)
    if target.via != "links":
        table["via"] = target.via
    apps[target.name] = table
    write_text_atomic(path, tomlkit.dumps(doc))
    return path


def _refuse_moved_matrix_models(data: Path) -> None:
    """Stability Matrix set to read its models from another folder would never see links in
    <data>/Models: say which folder it reads, and what to give instead."""
    from modelimport.apps.locations import stability_matrix_models_override

    moved = stability_matrix_models_override(data)
    if moved is None:
        return
    hint = (
        f"give {moved.parent}, the folder that holds it"
        if moved.name.lower() == "models"
        else "add it as --kind folder with a --map TYPE=SUBDIR for each of its folders"
    )
    raise UsageError(
        f"Stability Matrix reads its models from {moved} (ModelDirectoryOverride in "
        f"{data / 'settings.json'}), not {data / 'Models'}; {hint}."
    )


def _refuse_duplicate(target: AppTarget, existing: dict[str, AppTarget]) -> bool:
    """True if `target` is already registered exactly so; raises if it clashes with an app."""
    same = existing.get(target.name)
    if same is not None:
        if same.kind == target.kind and _same_folder(same.path, target.path) and (
            same.subfolders, same.mapping, same.via) == (
            target.subfolders, target.mapping, target.via):  # fmt: skip
            return True
        raise UsageError(
            f"An app named {target.name!r} is already registered ({same.kind} at {same.path}); "
            f"to change it, run `modelimport apps remove {target.name} --unlink` first, then "
            "add it again and run `modelimport sync`."
        )
    for other in existing.values():
        if _same_folder(other.path, target.path):
            raise UsageError(
                f"The folder {target.path} is already registered as the app {other.name!r}; "
                "one folder can be registered once (`modelimport apps list` shows the apps)."
            )
    return False


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def remove_target(name: str, path: Path | None = None) -> AppTarget:
    """Drop one app from the config file; returns what it was."""
    import tomlkit

    path = path or config_path()
    found = {t.name: t for t in load_targets(path)}
    if name not in found:
        raise UsageError(f"No app named {name!r} in {path}; `modelimport apps list` shows them.")
    doc = _read_document(path)
    del doc["apps"][name]
    write_text_atomic(path, tomlkit.dumps(doc))
    return found[name]


def write_text_atomic(path: Path, text: str, what: str = "the apps config") -> None:
    """Replace `path` with `text` so readers see the old file or the new, never half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise AppsConfigError(f"Cannot write {what} {path}: {exc.strerror}.") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # keep who may read it (mkstemp makes it 0600)
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise AppsConfigError(f"Cannot write {what} {path}: {exc.strerror or exc}.") from exc
        raise
