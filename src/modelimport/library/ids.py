"""Model ids: `<model_type>/<family>/<slug>`, made from a model's name and kept unique.

Invariant: an id given to a new or renamed model is free both on disk and in the index (or
in the ids a plan has already promised), so no model is ever placed over another.
"""

from __future__ import annotations

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
    candidate, n = base, 1
    while (
        candidate in also_taken
        or (library.root / candidate).exists()
        or index.model_exists(db, candidate)
    ):
        n += 1
        candidate = f"{base}-{n}"
    return candidate
