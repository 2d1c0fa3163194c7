"""Model ids: `<model_type>/<family>/<slug>`, made from a model's name and kept unique.

Invariants:
- An id given to a new or renamed model is free both on disk and in the index (or in the
  ids a plan has already promised), so no model is ever placed over another.
- Free means free on every filesystem: ids that differ only in case (after Unicode case
  folding: `Straße`, `STRASSE`) are one folder on a case-insensitive disk (macOS APFS,
  Windows NTFS, exFAT), so they count as taken everywhere, and a library gets the same
  ids whatever disk it is made on, and can be copied to any other.
"""

from __future__ import annotations

import os
import sqlite3

from modelimport.library import index
from modelimport.library.layout import Library, make_model_id
from modelimport.names import slugify


def model_slug(name: str, precision: str | None, fmt: str | None) -> str:
    """The last component of a model id. Two quantisations of one GGUF model are two
    models, so a GGUF's precision joins its slug unless the name already says it."""
    slug = slugify(name)
    precision = str(precision or "")
    if fmt == "gguf" and precision not in ("", "unknown") and precision.lower() not in slug:
        slug = slugify(f"{slug}-{precision}")
    return slug


def unique_model_id(
    library: Library,
    db: sqlite3.Connection,
    model_type: str,
    family: str,
    slug: str,
    also_taken: set[str] | frozenset[str] = frozenset(),
) -> str:
    """`type/family/slug`, or with -2, -3... when that id is in the library, in the index
    or in `also_taken` (ids a plan will give to the models before this one)."""
    base = make_model_id(model_type, family, slug)
    folder = base.rsplit("/", 1)[0]
    taken = {t.casefold() for t in also_taken}
    taken |= {model_id.casefold() for model_id in index.model_ids_under(db, folder)}
    taken |= {f"{folder}/{name}".casefold() for name in _names_in(library.root / folder)}
    candidate, n = base, 1
    while candidate.casefold() in taken or (library.root / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _names_in(folder: os.PathLike[str]) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:  # not there yet
        return []
