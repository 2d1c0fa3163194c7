"""Keeping the index honest: it is believed only while it lists the model folders on disk.

The index is a cache of the metadata.json files (the truth). Every command that opens the
library compares the two cheaply (one listing of three folder levels, one SELECT of ids) and,
where they disagree, indexes the folders the index misses and forgets rows whose folder is
gone. So an empty, zero-byte, restored-from-backup or otherwise stale index is never
believed, and dedup (which reads the index) never imports a second copy of a model whose row
is missing. A read-only library (or one on a full disk) with a stale index is read from its
metadata.json files in memory instead (maintenance._open_read_only).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from modelimport.library import index
from modelimport.library.layout import META_DIR, METADATA_NAME, Library


def reconcile_index(library: Library, db: sqlite3.Connection) -> tuple[int, int] | None:
    """Make the index list exactly the model folders on disk, if it does not: index the
    folders it misses from their metadata.json, forget rows whose folder is gone. Returns
    (indexed, forgotten), or None when the index already agreed.

    The check runs at every open, so an empty, zero-byte, swapped or stale index is never
    believed and dedup never misses a model because its row is missing. It is cheap: one
    listing of three folder levels (no stat of each metadata.json) and one SELECT of the ids
    (docs/library.md has its cost at 10,000 models). Only when that disagrees are the
    metadata.json files looked at, under the commit lock, so an import between its rename and
    its index row is not mistaken for staleness. A record that cannot be read is left out
    (`check` reports it).
    """
    from modelimport.library.maintenance import _read_record as read_record

    if index_lists_folders(library, db):
        return None
    with library.lock("commit"):
        missing, orphaned = folders_and_rows(library, db)
        if missing is None:
            return None
        add = []
        for model_id in missing:
            record, problem = read_record(library.root / model_id / METADATA_NAME)
            if problem is None:
                add.append((model_id, record))
        if not add and not orphaned:
            return None
        index.reconcile(db, add, orphaned)
    return len(add), len(orphaned)


def _folder_ids(root: Path) -> set[str]:
    """`type/family/slug` of every folder three levels down (not links): the model folders,
    as far as a listing without a stat per model can tell."""
    found: set[str] = set()
    for type_name, type_path in _dirs(str(root)):
        if type_name == META_DIR:
            continue
        for family_name, family_path in _dirs(type_path):
            found.update(f"{type_name}/{family_name}/{slug}" for slug, _ in _dirs(family_path))
    return found


def _dirs(path: str) -> list[tuple[str, str]]:
    try:
        with os.scandir(path) as entries:
            return [(e.name, e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def folders_and_rows(
    library: Library, db: sqlite3.Connection
) -> tuple[list[str] | None, list[str]]:
    """(model folders the index misses, rows without a folder); (None, []) when they agree.
    Exact: a model folder is one holding a metadata.json."""
    on_disk = {library.model_id_of(p) for p in library.iter_metadata_paths()}
    indexed = set(index.model_ids(db))
    if on_disk == indexed:
        return None, []
    return sorted(on_disk - indexed), sorted(indexed - on_disk)


def index_lists_folders(library: Library, db: sqlite3.Connection) -> bool:
    """The cheap listing first; the exact one only when that disagrees."""
    if _folder_ids(library.root) == set(index.model_ids(db)):
        return True
    return folders_and_rows(library, db)[0] is None
