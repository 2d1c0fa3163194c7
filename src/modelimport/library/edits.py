"""Changing a model by hand: `edit` (fields, and the model id that follows them) and
`mark-manual` / `mark-manual --undo`; and the move itself (`id_for_record`, the rename, the
re-index, `relink_moved_model`), which an identity source's late answer uses too
(`refile_record`, called by `identify.enrich`).

Invariants:
- An edited record is manual (match_source "manual"), so retry-pending and rescan leave it
  alone; each edited field says it came from the person ("user" in field_sources).
- When the id changes, the model folder moves by one rename on the same filesystem, under
  the commit lock, after its metadata.json already names the new id; the index rows follow
  in one transaction and app links are re-pointed. A model never lands on another: the new
  id is made unique first. A crash between the rename and the index leaves a complete model
  at its new place whose index row `rescan` (or the next missing-index rebuild) restores;
  a crash between the metadata write and the rename leaves it whole at its old place.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from modelimport.errors import FileInUse, UsageError, raise_if_in_use
from modelimport.faults import fault_point
from modelimport.library import index
from modelimport.library.contained import inside
from modelimport.library.ids import model_slug, unique_model_id
from modelimport.library.layout import Library, fsync_dir, validate_model_id
from modelimport.library.maintenance import OpenLibrary
from modelimport.library.metadata import MERGED_FIELDS, now_iso, resolve_fields, set_candidate
from modelimport.names import sanitize_component
from modelimport.probe.tables import MODEL_TYPES


@dataclass(frozen=True)
class EditableField:
    label: str  # as asked in the review
    record_key: str  # the metadata.json key it sets
    is_list: bool = False


# What a person may edit (in the import review, and later with `edit`), in the order asked.
EDITABLE_FIELDS: dict[str, EditableField] = {
    "name": EditableField("Name", "cleaned_name"),
    "type": EditableField("Type", "model_type"),
    "family": EditableField("Family", "family"),
    "subtype": EditableField("Subtype", "subtype"),
    "tags": EditableField("Tags (comma-separated)", "tags", is_list=True),
    "notes": EditableField("Notes", "notes"),
}
# Fields that become components of the model id: one safe lower-case word each.
PATH_FIELDS = ("model_type", "family")
FAMILY_WORD = re.compile(r"[a-z0-9][a-z0-9._+-]{0,39}")


def normalise_edit(field: str, value: str | list[str]) -> Any:
    """The value a person gave for `field`, as the record stores it; bad input raises
    UsageError with one sentence."""
    spec = EDITABLE_FIELDS.get(field)
    if spec is None:
        raise UsageError(f"{field!r} cannot be edited; choose one of {', '.join(EDITABLE_FIELDS)}.")
    if spec.is_list:
        items = value if isinstance(value, list) else value.split(",")
        return [t.strip() for t in items if t.strip()]
    text = str(value).strip()
    if spec.record_key in PATH_FIELDS:
        if not text:
            raise UsageError(f"{spec.label} cannot be empty.")
        word = text.lower().replace(" ", "-")
        if spec.record_key == "model_type" and word not in MODEL_TYPES:
            raise UsageError(
                f"{text!r} is not a model type; choose one of {', '.join(sorted(MODEL_TYPES))}."
            )
        if spec.record_key == "family" and not FAMILY_WORD.fullmatch(word):
            raise UsageError(
                f"{text!r} is not a family: one word of letters, digits, '.', '_' or '-' "
                "(sd15, sdxl, flux, llama)."
            )
        return sanitize_component(word, fallback="unknown")
    if spec.record_key == "cleaned_name" and not text:
        raise UsageError("The name cannot be empty.")
    return text


def apply_user_edits(record: dict[str, Any], edits: dict[str, Any]) -> None:
    """Put already-normalised edits (metadata.json keys) into a record; it becomes manual."""
    for key, value in edits.items():
        if key in MERGED_FIELDS:
            set_candidate(record, key, "user", value)
        else:
            record[key] = value  # subtype, tags, notes: no other source competes here
            record.setdefault("field_sources", {})[key] = "user"
    if edits:
        # A person said what this model is: automatic lookups must not undo it.
        record["match_source"] = "manual"
    resolve_fields(record)


def edit_model(
    opened: OpenLibrary, model_id: str, changes: dict[str, str | list[str]]
) -> dict[str, Any]:
    """Apply `changes` (EDITABLE_FIELDS names -> values) to a model; move it if its id
    follows. Returns {"model_id", "previous_model_id", "changed", "path"}."""
    library, db = opened.library, opened.db
    old_id = validate_model_id(model_id)
    edits = {EDITABLE_FIELDS[f].record_key: normalise_edit(f, v) for f, v in changes.items()}
    with library.lock("commit"):
        record = library.read_metadata(old_id)
        apply_user_edits(record, edits)
        record["updated_at"] = now_iso()
        new_id = old_id
        if {"cleaned_name", "model_type", "family"} & edits.keys():
            new_id = id_for_record(library, db, old_id, record)
        commit_record(library, db, old_id, new_id, record)
    if new_id != old_id:
        relink_moved_model(library, db, old_id, new_id)  # under the links lock, not the commit one
    return {
        "model_id": new_id,
        "previous_model_id": old_id,
        "changed": sorted(changes),
        "path": str(library.root / new_id),
        "match_source": record["match_source"],
    }


def id_for_record(
    library: Library, db: sqlite3.Connection, old_id: str, record: dict[str, Any]
) -> str:
    """The id a model at `old_id` gets for what its record now says (type, family, name):
    `old_id` when that is where it already is, else a free id (never another model's)."""
    # The slug's format is the weights' (a GGUF's quantisation joins its slug), as the
    # import's is: a folder's README or config may come first in `files`.
    files = [
        f
        for f in record.get("files") or []
        if f.get("format") != "index-json" and f.get("role", "weights") == "weights"
    ]
    slug = model_slug(
        record.get("cleaned_name") or old_id.rsplit("/", 1)[-1],
        record.get("precision"),
        files[0].get("format") if files else None,
    )
    wanted = "/".join((record["model_type"] or "unknown", record["family"] or "unknown", slug))
    if wanted == old_id:
        return old_id
    return unique_model_id(library, db, record["model_type"], record["family"], slug)


def commit_record(
    library: Library, db: sqlite3.Connection, old_id: str, new_id: str, record: dict[str, Any]
) -> None:
    """Write a record a person changed and, when its id changes, move the model to `new_id`;
    the caller holds the commit lock. The record names its new id first (the person's edit
    is never lost), then the folder moves by one rename (the model is whole at one place or
    the other), then the index follows in one transaction. App links follow with
    `relink_moved_model`, outside the commit lock."""
    before = library.read_metadata(old_id)
    record["model_id"] = new_id
    library.write_metadata(old_id, record)
    if new_id == old_id:
        index.upsert_model(db, old_id, record)
        return
    try:
        _move_model_dir(library, old_id, new_id)
    except FileInUse:
        library.write_metadata(old_id, before)  # the edit is all or nothing
        raise
    _reindex_moved(db, old_id, new_id, record)


def refile_record(
    library: Library, db: sqlite3.Connection, old_id: str, new_id: str, record: dict[str, Any]
) -> None:
    """Move a model to the id an identity source's answer gives it, then write that answer;
    the caller holds the commit lock. The other order from `commit_record`, because the
    decision is made again from the record: a crash before the rename leaves the model as it
    was, still pending, and one after it leaves it whole at `new_id` with its record from
    before the answer, still pending, which the next `retry-pending` (after `rescan`
    re-indexes it) completes in place. The index follows in one transaction."""
    _move_model_dir(library, old_id, new_id)
    fault_point("refile.after_rename")
    record["model_id"] = new_id
    library.write_metadata(new_id, record)
    fault_point("refile.record_written")
    _reindex_moved(db, old_id, new_id, record)


def _move_model_dir(library: Library, old_id: str, new_id: str) -> None:
    root = library.root
    # Both ends inside the library: a type or family folder made a link would move a folder
    # from elsewhere in (or the model out).
    source, dest = inside(root, old_id), inside(root, new_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, dest)  # one rename: the model is whole at one place or the other
    except OSError as exc:
        raise_if_in_use(exc, source)
        raise
    fsync_dir(dest.parent)
    fsync_dir(source.parent)
    for empty in (source.parent, source.parent.parent):  # family, then type folder
        try:
            empty.rmdir()
        except OSError:
            break  # not empty: other models live there


def _reindex_moved(
    db: sqlite3.Connection, old_id: str, new_id: str, record: dict[str, Any]
) -> None:
    index.delete_model(db, old_id)
    index.upsert_model(db, new_id, record)


def relink_moved_model(library: Library, db: sqlite3.Connection, old_id: str, new_id: str) -> None:
    """Call point for app links (the apps package): links into apps follow a moved model.
    A library without the apps package has no links to follow."""
    try:
        from modelimport.apps import relink_model  # type: ignore[attr-defined]
    except ImportError:
        return
    relink_model(library, db, old_id, new_id)


def set_manual(opened: OpenLibrary, model_ids: list[str], manual: bool) -> list[dict[str, Any]]:
    """match_source = manual (protected from retry-pending and rescan), or back to auto."""
    from modelimport.errors import ModelNotFound

    results = []
    for raw in model_ids:
        try:
            model_id = validate_model_id(raw)
            record = opened.library.read_metadata(model_id)
        except ModelNotFound as exc:
            results.append({"model_id": raw, "status": "failed", "error": str(exc)})
            continue
        record["match_source"] = "manual" if manual else "auto"
        record["updated_at"] = now_iso()
        with opened.library.lock("commit"):
            opened.library.write_metadata(model_id, record)
            index.upsert_model(opened.db, model_id, record)
        status = "marked" if manual else "unmarked"
        results.append({"model_id": model_id, "status": status, "error": None})
    return results
