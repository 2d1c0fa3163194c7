"""How each app is served: by links (symlinks, hard links, junctions), by its own config
file, or not at all where no link can be made; told per app and per model type.

Where a folder refuses every kind of link (an app on exFAT, or on another disk than the
library while symlinks are refused), `sync` tries once, remembers the folder, and reports
one sentence per model type instead of one failure per model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.apps import comfy_config
from modelimport.apps.plan import DesiredLink
from modelimport.apps.targets import AppsConfigError, AppTarget

# What an app whose folders take no link can use instead, by kind: its own way of reading
# models from another folder. The library's `<type>/<family>/<slug>/<file>` tree suits them:
# ComfyUI and A1111 list their folders recursively, and LM Studio reads
# `<models dir>/<publisher>/<model>/<file>.gguf`, which the library's llm folder is.
INSTEAD = {
    "comfyui": "ComfyUI can read the library with no link: `modelimport apps remove {app}`, "
    "then `modelimport apps add {app} {path} --kind comfyui --via config`.",
    "lmstudio": "LM Studio can use {library}/llm as its models directory (My Models, "
    "Models Directory).",
}
# A1111/Forge's command-line options naming a folder per model type.
A1111_OPTIONS = {
    "checkpoint": "--ckpt-dir", "diffusion_model": "--ckpt-dir", "lora": "--lora-dir",
    "vae": "--vae-dir", "embedding": "--embeddings-dir", "hypernetwork": "--hypernetwork-dir",
    "upscaler": "--esrgan-models-path",
}  # fmt: skip
INSTEAD_DEFAULT = (
    "Keep the library on the app's disk, on a filesystem with links (NTFS, APFS, ext4), "
    "or on Windows turn on Developer Mode for symlinks."
)


def instead(app: str, app_kind: str, app_path: str, library: str, model_type: str) -> str:
    """What to do when an app gets no link for `model_type`, in one sentence."""
    option = A1111_OPTIONS.get(model_type) if app_kind == "a1111" else None
    if option:
        folder = f"{library}/{model_type}"
        return f"A1111/Forge can read them from the library: start it with {option} {folder}."
    return INSTEAD.get(app_kind, INSTEAD_DEFAULT).format(app=app, path=app_path, library=library)


@dataclass
class NoLinks:
    """Models of one type that an app gets no link for, and why."""

    app: str
    app_kind: str
    app_path: str
    library: str
    model_type: str
    folder: str
    reason: str
    models: set[str] = field(default_factory=set)

    def sentence(self) -> str:
        return (
            f"{self.app}: no links possible for {self.model_type} models in {self.folder} "
            f"({self.reason}); {len(self.models)} not linked. "
            + instead(self.app, self.app_kind, self.app_path, self.library, self.model_type)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "model_type": self.model_type,
            "folder": self.folder,
            "reason": self.reason,
            "models": sorted(self.models),
        }


@dataclass
class Refusals:
    """The folders of one app found to take no link in this run, and the models left out."""

    app: str
    app_kind: str
    app_path: Path
    library: Path
    folders: dict[Path, str] = field(default_factory=dict)  # folder -> why
    by_type: dict[str, NoLinks] = field(default_factory=dict)

    def known(self, link: DesiredLink) -> bool:
        """The link's folder already refused one: do not try again, just count it."""
        reason = self.folders.get(link.link_path.parent)
        if reason is not None:
            self.add(link, reason)
        return reason is not None

    def add(self, link: DesiredLink, reason: str) -> None:
        folder = link.link_path.parent
        self.folders.setdefault(folder, reason)
        model_type = link.model_type or "unknown"
        entry = self.by_type.setdefault(
            model_type,
            NoLinks(self.app, self.app_kind, str(self.app_path), str(self.library), model_type,
                    str(folder), reason),  # fmt: skip
        )
        entry.models.add(link.model_id)


def served_by(kind_counts: Counter[str], via: str, config_file: str | None) -> str:
    """`status`'s words for how an app gets the models: "config file <path>", or the kinds
    of the links it has ("symlinks 12, hard links 3"), or "no links yet"."""
    if via == "config":
        return f"config file {config_file}" if config_file else "config file"
    names = {"symlink": "symlinks", "hardlink": "hard links", "junction": "junctions"}
    parts = [f"{names.get(k, k)} {n}" for k, n in sorted(kind_counts.items()) if n]
    return ", ".join(parts) if parts else "no links yet"


def serve_by_config(
    target: AppTarget, library_root: Path, dry_run: bool
) -> tuple[dict[str, str] | None, str | None]:
    """Bring an app served by its config file in line with the library: (what was done, for
    the report; a problem sentence). A dry run only says whether the file is current."""
    path = comfy_config.config_file(target)
    try:
        if dry_run:
            state = comfy_config.read_state(target, library_root)
            if state == "current":
                return None, None
            what = "has no modelimport section" if state == "missing" else (
                "points at another library or other folders")  # fmt: skip
            return None, f"{target.name}: {path} {what}; `modelimport sync` writes it."
        done = comfy_config.write_section(target, library_root)
    except AppsConfigError as exc:
        return None, f"{target.name}: {exc}"
    return {"app": target.name, "file": str(path), "result": done}, None
