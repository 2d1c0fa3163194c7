"""Which links a model should have in an app: pure computation from its record and layout.

Nothing here touches the disk except `folder_for`'s check of which folder name an install
already has. Every path component of a link comes from a sanitised name (library file
names already are; families, publishers and repos from files or the Hub are sanitised
here), and every user folder was checked to be relative without `..`, so no link can be
placed outside the app's folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from modelimport.apps.layouts import (
    BUNDLE_FOLDER_KEYS,
    LMSTUDIO_EXTENSIONS,
    LOCAL_PUBLISHER,
    folder_for,
)
from modelimport.apps.targets import AppTarget
from modelimport.names import is_generic_name, sanitize_component

# A Hugging Face cache snapshot folder: models--<org>--<name>/snapshots/<commit>/.
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class DesiredLink:
    app: str
    model_id: str
    link_path: Path  # absolute, inside the app's folder
    target: Path  # absolute, inside the library
    is_dir: bool = False  # a bundle linked as one folder
    model_type: str = ""  # what the model is, for a report per type


def desired_links(
    target: AppTarget, library_root: Path, model_id: str, record: dict[str, Any]
) -> list[DesiredLink]:
    """The links `model_id` should have in `target` ([] when the app has no place for it)."""
    model_dir = library_root / model_id
    names = [
        f["name"]
        for f in record.get("files") or []
        if isinstance(f, dict) and isinstance(f.get("name"), str)
    ]
    bundle = record.get("bundle") if isinstance(record.get("bundle"), dict) else None
    if target.kind == "lmstudio":
        return _lmstudio_links(target, model_dir, model_id, record, names)
    model_type = str(record.get("model_type") or "unknown")
    if bundle is not None and bundle.get("kind") != "gguf-folder":
        # A folder the app loads as a whole: one directory link. (A GGUF with its mmproj is
        # a bundle too, but apps read its .gguf files one by one: linked as files below.)
        key = BUNDLE_FOLDER_KEYS.get(str(bundle.get("kind")), model_type)
        folder = folder_for(target.kind, key, target.path, target.mapping)
        if folder is None:
            return []
        name = _bundle_link_name(str(bundle.get("root") or ""), model_dir.name)
        base = _with_family(target, target.path / folder, record)
        root = _bundle_root(model_dir, names)
        return [DesiredLink(target.name, model_id, base / name, root, True, model_type)]
    folder = folder_for(target.kind, model_type, target.path, target.mapping)
    if folder is None:
        return []
    base = _with_family(target, target.path / folder, record)
    single = len(names) == 1
    links = []
    for name in names:
        file_name = PurePosixPath(name).name
        if single and is_generic_name(file_name):
            # `model.safetensors` from ten repos would collide in one app folder.
            file_name = sanitize_component(model_dir.name + PurePosixPath(file_name).suffix)
        link = DesiredLink(target.name, model_id, base / file_name, model_dir / name)
        links.append(replace(link, model_type=model_type))
    return links


def _bundle_link_name(root: str, slug: str) -> str:
    """A bundle is linked under its folder's name, as people name it after the repo, unless
    that name says nothing: a Hugging Face cache snapshot's 40-hex commit, or a generic
    `model`, `snapshots`, `vae`. Then under the model's name (the slug of its id)."""
    if not root or COMMIT_HASH.fullmatch(root) or is_generic_name(root):
        return sanitize_component(slug, "model")
    return sanitize_component(root, slug)


def renamed(link: DesiredLink) -> list[DesiredLink]:
    """Other names for `link` when another model's link has its name, most readable first:
    the model's slug, then `family-slug`, then `type-family-slug` (unique, as model ids
    are), each with the file's extension; in the same folder."""
    parts = PurePosixPath(link.model_id).parts
    suffix = "" if link.is_dir else PurePosixPath(link.link_path.name).suffix
    names = []
    for n in range(1, len(parts) + 1):
        name = sanitize_component("-".join(parts[-n:]) + suffix, "")
        if name and name != link.link_path.name and name not in names:
            names.append(name)
    return [replace(link, link_path=link.link_path.with_name(name)) for name in names]


def _with_family(target: AppTarget, base: Path, record: dict[str, Any]) -> Path:
    family = str(record.get("family") or "unknown")
    if target.subfolders == "family" and family not in ("unknown", "?"):
        return base / sanitize_component(family.lower(), "unknown")
    return base


def _bundle_root(model_dir: Path, names: list[str]) -> Path:
    """The folder to link for a bundle: its one top folder if every file is inside one, else
    the model folder itself."""
    tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        return model_dir / tops.pop()
    return model_dir


def _lmstudio_links(
    target: AppTarget, model_dir: Path, model_id: str, record: dict[str, Any], names: list[str]
) -> list[DesiredLink]:
    gguf = [n for n in names if n.lower().endswith(LMSTUDIO_EXTENSIONS)]
    if not gguf:
        return []
    publisher, repo = lmstudio_folder(model_id, record)
    folder = target.path / publisher / repo
    model_type = str(record.get("model_type") or "llm")
    return [
        DesiredLink(target.name, model_id, folder / PurePosixPath(n).name, model_dir / n,
                    False, model_type)
        for n in gguf
    ]  # fmt: skip


def lmstudio_folder(model_id: str, record: dict[str, Any]) -> tuple[str, str]:
    """`<publisher>/<repo>` for LM Studio: the matched Hub repo, else the repo the file names
    as its source, else `local/<model>`."""
    candidates = [record.get("repo_id"), *(record.get("embedded_repos") or [])]
    for repo in candidates:
        if isinstance(repo, str) and repo.count("/") == 1:
            publisher, name = repo.split("/")
            publisher, name = sanitize_component(publisher, ""), sanitize_component(name, "")
            if publisher and name:
                return publisher, name
    return LOCAL_PUBLISHER, sanitize_component(model_id.rsplit("/", 1)[-1], "model")
