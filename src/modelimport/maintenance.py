"""Library-wide operations: open (with recovery), status, rescan, mark-manual.

Rescan progress is written to `.modelimport/rescan.json` while the `rescan` lock is held,
so `status` in another process can tell whether a rescan is running and how far it is.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelimport import index
from modelimport.errors import LibraryError, ModelNotFound
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.faults import fault_point
from modelimport.library import Library, validate_model_id, write_json_atomic
from modelimport.metadata import now_iso
from modelimport.staging import RecoveryReport

RESCAN_PROGRESS_EVERY = 200


@dataclass
class OpenLibrary:
    library: Library
    db: sqlite3.Connection
    recovery: RecoveryReport


def open_library(root: Path, create: bool = True) -> OpenLibrary:
    """Open (or create) the library, then finish or roll back imports whose process died."""
    from modelimport.importer import recover_library

    library = Library(root)
    if not library.exists and not create:
        raise LibraryError(
            f"There is no model library at {root} yet; import something first or pass --library."
        )
    library.ensure()
    try:
        db = index.connect(library.index_path)
    except sqlite3.DatabaseError as exc:
        raise LibraryError(
            f"The index at {library.index_path} is damaged ({exc}); delete it and run "
            "`modelimport rescan` to rebuild it from metadata.json."
        ) from exc
    recovery = recover_library(library, db)
    return OpenLibrary(library, db, recovery)


def rescan_state(library: Library) -> dict[str, Any] | None:
    """The running rescan's progress, or None when no rescan is running."""
    with library.lock("rescan", blocking=False) as got:
        if got:
            return None
    try:
        return json.loads((library.meta_dir / "rescan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"done": 0, "total": None}


def library_status(opened: OpenLibrary) -> dict[str, Any]:
    data = {"library": str(opened.library.root), **index.summary(opened.db)}
    data["schema_version"] = index.schema_version(opened.db)
    data["rescan"] = rescan_state(opened.library)
    data["recovered"] = {
        "rolled_back": opened.recovery.rolled_back,
        "completed": opened.recovery.completed,
        "problems": list(opened.recovery.problems),
    }
    return data


def rescan(opened: OpenLibrary, progress: ProgressSink = ignore_progress) -> dict[str, Any]:
    """Rebuild the index from every metadata.json; records are read, never changed."""
    library = opened.library
    with library.lock("rescan", blocking=False) as got:
        if not got:
            raise LibraryError("Another rescan of this library is already running.")
        state_path = library.meta_dir / "rescan.json"
        paths = list(library.iter_metadata_paths())
        total = len(paths)
        models: list[tuple[str, dict[str, Any]]] = []
        unreadable: list[str] = []
        started = now_iso()
        write_json_atomic(state_path, {"done": 0, "total": total, "started": started})
        for done, path in enumerate(paths, 1):
            model_id = library.model_id_of(path)
            try:
                models.append((model_id, json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                unreadable.append(model_id)
            if done % RESCAN_PROGRESS_EVERY == 0 or done in (1, total):
                progress(ProgressEvent(Stage.SCANNING, "rescan", done, total))
                write_json_atomic(state_path, {"done": done, "total": total, "started": started})
                fault_point("rescan.progress", done)
        count = index.replace_all(opened.db, models)
        state_path.unlink(missing_ok=True)
    return {"library": str(library.root), "models": count, "unreadable": unreadable}


def mark_manual(opened: OpenLibrary, model_ids: list[str]) -> list[dict[str, Any]]:
    """Protect records from automatic updates: match_source = manual, in file and index."""
    results = []
    for raw in model_ids:
        try:
            model_id = validate_model_id(raw)
            record = opened.library.read_metadata(model_id)
        except ModelNotFound as exc:
            results.append({"model_id": raw, "status": "failed", "error": str(exc)})
            continue
        record["match_source"] = "manual"
        record["updated_at"] = now_iso()
        with opened.library.lock("commit"):
            opened.library.write_metadata(model_id, record)
            index.upsert_model(opened.db, model_id, record)
        results.append({"model_id": model_id, "status": "marked", "error": None})
    return results
