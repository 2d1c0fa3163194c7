"""Removing models from the library: files, metadata.json, index rows and app links.

Order, so that a crash at any moment leaves either the whole model listed and in place, or
nothing of it listed (never half a model the index still shows):
1. its registered app links are removed (harmless: `sync` would make them again);
2. under the commit lock, a staging transaction journals the removal, then the model
   directory is renamed into the transaction (one atomic rename: the library no longer
   has it), then its index rows are deleted;
3. the files are deleted with the transaction (or, with `keep_files`, moved out first).
Recovery (`staging.recover`) finishes step 2-3 for a process that died after the rename.

A file with other hard links (st_nlink above 1, not counting the app links removed in
step 1) frees no space when deleted; `plan_removal` says so before anything is done.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.errors import (
    DiskFull,
    FileInUse,
    LibraryBusy,
    ModelImportError,
    UsageError,
    held_open,
    raise_if_in_use,
)
from modelimport.faults import fault_point
from modelimport.library import index, index_file, staging
from modelimport.library.contained import OutsideLibrary, inside
from modelimport.library.layout import METADATA_NAME, fsync_dir, validate_model_id
from modelimport.library.maintenance import OpenLibrary
from modelimport.locks import held_open_elsewhere


@dataclass
class PlannedRemoval:
    model_id: str
    record: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # name, path, size, nlink
    links: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def size(self) -> int:
        return sum(int(f.get("size") or 0) for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "files": self.files,
            "links": [r["link_path"] for r in self.links],
            "warnings": self.warnings,
            "error": self.error,
        }


def plan_removal(opened: OpenLibrary, model_ids: list[str]) -> list[PlannedRemoval]:
    """What removing each model would delete, and what deserves a warning first."""
    plans = []
    for raw in dict.fromkeys(model_ids):
        try:
            model_id = validate_model_id(raw)
            record = opened.library.read_metadata(model_id)
        except ModelImportError as exc:
            plans.append(PlannedRemoval(raw, error=str(exc)))
            continue
        try:
            # The model folder goes whole; a link on the way would take a folder elsewhere.
            model_dir = inside(opened.library.root, model_id)
        except OutsideLibrary as exc:
            plans.append(PlannedRemoval(model_id, error=str(exc)))
            continue
        plan = PlannedRemoval(model_id, record, links=index.links(opened.db, model_id=model_id))
        ours = [Path(r["link_path"]) for r in plan.links if r["kind"] == "hardlink"]
        for entry in record.get("files") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            try:
                path = inside(model_dir, entry["name"], f"the metadata.json of {model_id}")
            except OutsideLibrary as exc:
                plan.warnings.append(f"{exc} It stays where it is.")
                continue
            others = _other_hard_links(path, ours)
            plan.files.append(
                {"name": entry["name"], "path": str(path), "size": entry.get("size"),
                 "other_hard_links": others}
            )  # fmt: skip
            if others:
                plan.warnings.append(
                    f"{path} has {others} other hard link(s): deleting it frees no space "
                    "until they are removed too."
                )
        plans.append(plan)
    return plans


def _other_hard_links(path: Path, our_links: list[Path]) -> int:
    try:
        nlink = path.stat().st_nlink
    except OSError:
        return 0
    ours = 0
    for link in our_links:
        try:
            ours += os.path.samefile(link, path)
        except OSError:
            continue
    return max(0, nlink - 1 - ours)


def remove_models(
    opened: OpenLibrary, plans: list[PlannedRemoval], keep_to: Path | None = None
) -> list[dict[str, Any]]:
    """Remove the planned models; with `keep_to`, each model's files are moved to
    `keep_to/<slug>/` instead of deleted. One result per model, failures included."""
    from modelimport.apps import link_new_models, unlink_model

    results = []
    for plan in plans:
        if plan.error:
            results.append(_failed(plan))
            continue
        kept = keep_to / plan.model_id.rsplit("/", 1)[-1] if keep_to else None
        try:
            if kept is not None and os.path.lexists(kept):
                raise UsageError(f"{kept} already exists; the files of {plan.model_id} stay.")
            _refuse_if_held_open(opened.library.root / plan.model_id)
            changes = unlink_model(opened.library, opened.db, plan.model_id)
            try:
                _remove_one(opened, plan.model_id, kept)
            except FileInUse:
                # Windows: an app holds one of its files; the model stays, and so do its links.
                link_new_models(opened.library, opened.db, [plan.model_id])
                raise
        except sqlite3.Error as exc:  # the index busy or full while unlinking
            library = opened.library
            error = index_file.as_library_error(exc, library.index_path, library.root)
            results.append(_failed(plan, str(error)))
            continue
        except (LibraryBusy, DiskFull) as exc:  # a sentence about the library, not the model
            results.append(_failed(plan, str(exc)))
            continue
        except (OSError, ModelImportError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            results.append(_failed(plan, f"Removing {plan.model_id} failed: {reason}"))
            continue
        results.append(
            {**plan.to_json(), "status": "removed", "kept_in": str(kept) if kept else None,
             "links_removed": [c.link_path for c in changes if c.action == "removed"],
             "links_left": [c.sentence() for c in changes if c.action in ("forgotten", "failed")
                            and c.reason != "already gone"]}
        )  # fmt: skip
    return results


def _refuse_if_held_open(model_dir: Path) -> None:
    """Windows: a file another program holds open cannot be deleted, so the model is left
    whole, links included, before anything is touched (a no-op elsewhere)."""
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and held_open_elsewhere(path):
            raise held_open(path)


def _failed(plan: PlannedRemoval, error: str | None = None) -> dict[str, Any]:
    """A failed removal has the keys of a done one (docs/json.md), with nothing done."""
    return {**plan.to_json(), "status": "failed", "kept_in": None, "links_removed": [],
            "links_left": [], **({"error": error} if error else {})}  # fmt: skip


def _remove_one(opened: OpenLibrary, model_id: str, kept: Path | None) -> None:
    library = opened.library
    model_dir = inside(library.root, model_id)
    with library.lock("commit"):
        txn = staging.begin(library, staging.REMOVE)
        txn.extra.update(removing=model_id, keep_to=str(kept) if kept else None)
        txn.save()
        fault_point("remove.before_rename")
        renamed = False
        try:
            # The index's write lock first: while another process holds it, the removal
            # fails here, before anything has moved (not half done after a long wait).
            with index.write_transaction(opened.db):
                try:
                    os.rename(model_dir, txn.model_path)
                except OSError as exc:
                    raise_if_in_use(exc, model_dir)  # Windows: an app holds a file of it
                    raise
                renamed = True
                fsync_dir(model_dir.parent)
                fault_point("remove.after_rename")
                index.delete_rows(opened.db, model_id)
        except BaseException as exc:
            if renamed and not _put_back(txn.model_path, model_dir):
                txn.release()  # the journal stays: the next command finishes the removal
                raise
            txn.close()
            if isinstance(exc, sqlite3.Error):
                raise index_file.as_library_error(exc, library.index_path, library.root) from exc
            raise
    if kept is not None:
        move_kept_files(txn.model_path, kept)
    txn.close()  # deletes what is left: the model's files and metadata.json
    _prune_empty(model_dir.parent, library.root)


def _put_back(moved: Path, model_dir: Path) -> bool:
    """Undo the removal's rename (the index kept the model's rows); False if impossible."""
    try:
        os.rename(moved, model_dir)
        fsync_dir(model_dir.parent)
    except OSError:
        return False
    return True


def move_kept_files(model: Path, kept: Path) -> None:
    """Move a removed model's files (not its metadata.json) to `kept`, keeping their
    relative paths; across filesystems a copy, then the staged file goes with its staging."""
    for path in sorted(model.rglob("*")):
        if path.is_dir() or path == model / METADATA_NAME:
            continue
        dest = kept / path.relative_to(model)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):  # rename would replace it: whatever is there stays
            raise FileExistsError(errno.EEXIST, "a file is already there", str(dest))
        try:
            os.rename(path, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copy2(path, dest)


def _prune_empty(folder: Path, root: Path) -> None:
    """The family and type folders a removed model leaves empty (never the root)."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
