"""The catalog of well-known files: file name -> the repos that publish it, shipped as data.

For files whose names share nothing with their repo (`sd_xl_base_1.0.safetensors` lives in
stabilityai/stable-diffusion-xl-base-1.0, `t5xxl_fp16.safetensors` in
comfyanonymous/flux_text_encoders, ComfyUI's files in Comfy-Org/*_repackaged): no search of
the name finds them. The data is `well_known.json` beside this module, written by
`scripts/refresh_catalog.py` from public model lists; every entry says which list it came from.

Invariant: a catalog entry is only a candidate. It names a repo to list; the Hub's listing and
the file's hash decide the trust level, exactly as for a repo found by search. A catalog that
cannot be read is an empty catalog, never an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

CATALOG_FILE = "well_known.json"
CATALOG_ENV = "MODELIMPORT_CATALOG"
MAX_CATALOG_REPOS = 3  # per file: each one costs a listing


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # the file name as published
    repo_id: str
    path: str  # path of the file in the repo
    size: int | None  # exact size in bytes when the source states it
    source: str  # which public list the entry came from


@cache
def load_catalog() -> dict[str, tuple[CatalogEntry, ...]]:
    """Entries by lower-case file name, from MODELIMPORT_CATALOG (a file in the same format:
    a newer or a local catalog) when set, else the one shipped with the package."""
    override = os.environ.get(CATALOG_ENV)
    try:
        if override:
            text = Path(override).read_text(encoding="utf-8")
        else:
            text = resources.files(__package__).joinpath(CATALOG_FILE).read_text("utf-8")
        raw = json.loads(text)
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    sources = raw.get("sources") if isinstance(raw.get("sources"), dict) else {}
    files = raw.get("files") if isinstance(raw.get("files"), list) else []
    by_name: dict[str, list[CatalogEntry]] = {}
    for item in files:
        entry = _entry(item, sources)
        if entry is not None:
            by_name.setdefault(entry.name.lower(), []).append(entry)
    return {name: tuple(entries) for name, entries in by_name.items()}


def _entry(item: Any, sources: dict[str, Any]) -> CatalogEntry | None:
    if not isinstance(item, dict):
        return None
    name, repo, path = item.get("name"), item.get("repo"), item.get("path")
    if not (isinstance(name, str) and isinstance(repo, str) and isinstance(path, str)):
        return None
    size = item.get("size")
    source = item.get("source")
    about = sources.get(source) if isinstance(source, str) else None
    described = about.get("url") if isinstance(about, dict) else None
    return CatalogEntry(
        name,
        repo,
        path,
        size if isinstance(size, int) and size > 0 else None,
        str(described or source or "unknown"),
    )


def catalog_candidates(request: Any) -> list[CatalogEntry]:
    """Catalog entries for the files of a lookup request (`files[*].name`, `.size`): the
    entries whose size equals the file's first, then those whose size is not known, then the
    rest (another version of the file under the same name: still worth one listing)."""
    catalog = load_catalog()
    found: list[tuple[int, CatalogEntry]] = []
    for local in getattr(request, "files", ()):
        for entry in catalog.get(local.name.lower(), ()):
            rank = 0 if entry.size == local.size else 1 if entry.size is None else 2
            found.append((rank, entry))
    found.sort(key=lambda pair: pair[0])
    seen: set[str] = set()
    entries: list[CatalogEntry] = []
    for _, entry in found:
        if entry.repo_id not in seen:
            seen.add(entry.repo_id)
            entries.append(entry)
    return entries[:MAX_CATALOG_REPOS]
