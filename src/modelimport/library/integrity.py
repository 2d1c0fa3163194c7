"""`check` and `verify`: the library proves its own invariants.

`check` (cheap: metadata and stat calls, no file contents):
- every index row names a model directory whose metadata.json exists and agrees with it;
- every metadata.json is indexed, and every file it lists exists with its recorded size;
- no transaction is left in staging once recovery has run (a live import's is fine);
- nothing else is in the library: a stray file is reported, and a model file dropped in by
  hand is adopted as a model by `--repair` (imported by a same-filesystem move);
- every app link the index records resolves (when the apps package offers `check_links`).

`verify` re-reads library files and compares their BLAKE3 with metadata.json.

Invariants: neither ever changes a model's files or a metadata.json; `--repair` only
rewrites index rows from metadata.json (the source of truth), removes rows whose model is
gone and our own leftover temporary files, and adopts stray model files through the normal
import (so a kill during a repair is recovered like any import).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.library import index, index_file
from modelimport.library.contained import (
    OutsideLibrary,
    model_file,
    open_no_link,
    own_folder,
    planted_folder_problem,
    read_no_link,
)
from modelimport.library.layout import META_DIR, METADATA_NAME, Library, write_json_atomic
from modelimport.library.maintenance import OpenLibrary, _read_record
from modelimport.library.metadata import now_iso
from modelimport.locks import try_lock, unlock_and_close
from modelimport.readers.collect import is_candidate_name

VERIFIED_STATE = "verified.json"  # in .modelimport: when the whole library was last verified


@dataclass
class Problem:
    kind: str  # index_row_orphaned, index_disagrees, not_indexed, missing_file, ...
    message: str  # one sentence for a person
    model_id: str | None = None
    path: str | None = None
    repaired: bool = False
    repair: str | None = None  # what --repair did (or why it could not)
    # Not a fault of the library: a state it chose and reports (a person's own file where
    # a link would go). Shown, never counted against `ok`.
    warning: bool = False


# kind -> whether `check --repair` can fix it from what metadata.json says
REPAIRABLE = {
    "index_row_orphaned": True,  # drop the row: the model directory is gone
    "index_disagrees": True,  # rewrite the row from metadata.json
    "not_indexed": True,  # index the model from metadata.json
    "temp_file": True,  # our own interrupted atomic write: remove it
    "stray_model_file": True,  # adopt it: import it as a model
    "unreadable_record": False,
    "missing_file": False,
    "size_mismatch": False,
    "staging_left": False,
    "stray_file": False,
    "model_id_mismatch": False,
    "outside_library": False,  # a name in metadata.json leads out of the library: not followed
    "app_link": False,
}


def check_library(
    opened: OpenLibrary, repair: bool = False, progress: ProgressSink = ignore_progress
) -> dict[str, Any]:
    library, db = opened.library, opened.db
    if repair and opened.disk_full:
        raise index_file.disk_full_error(library.root)  # a repair writes; read-only is no help
    problems: list[Problem] = []
    indexed = {r[0]: r for r in db.execute("SELECT * FROM models").fetchall()}
    on_disk: dict[str, dict[str, Any]] = {}
    listed: set[Path] = set()
    for path in library.iter_metadata_paths():
        model_id = library.model_id_of(path)
        progress(ProgressEvent(Stage.SCANNING, model_id))
        listed.add(path)
        record, problem = _read_record(path)
        if problem is not None:
            problems.append(
                Problem("unreadable_record", f"{path} {problem}.", model_id, str(path))
            )
            continue
        on_disk[model_id] = record
        problems += _check_model_files(library, model_id, record, listed)
        if record.get("model_id") not in (None, model_id):
            problems.append(
                Problem(
                    "model_id_mismatch",
                    f"{model_id}: metadata.json says it is {record.get('model_id')} (the folder "
                    "was moved or renamed by hand).",
                    model_id,
                    str(path),
                )
            )
        if model_id not in indexed:
            problems.append(
                Problem("not_indexed", f"{model_id} is not in the index.", model_id, str(path))
            )
        elif not _index_agrees(db, model_id, record, indexed[model_id]):
            problems.append(
                Problem(
                    "index_disagrees",
                    f"{model_id}: the index disagrees with metadata.json.",
                    model_id,
                    str(path),
                )
            )
    unreadable = {p.model_id for p in problems if p.kind == "unreadable_record"}
    for model_id in sorted(set(indexed) - set(on_disk) - unreadable):
        problems.append(
            Problem(
                "index_row_orphaned",
                f"{model_id} is in the index but its folder or metadata.json is gone.",
                model_id,
            )
        )
    problems += _check_staging(library)
    problems += _strays(library, listed)
    problems += _app_link_problems(opened)
    if repair:
        if opened.read_only:
            for p in problems:
                p.repair = "not repaired: the library is read-only here"
        else:
            _repair(opened, problems, on_disk, progress)
    remaining = [p for p in problems if not p.repaired and not p.warning]
    return {
        "library": str(library.root),
        "models": len(on_disk),
        "ok": not remaining,
        "problems": [asdict(p) for p in problems],
        "remaining": len(remaining),
    }


def _check_model_files(
    library: Library, model_id: str, record: dict[str, Any], listed: set[Path]
) -> list[Problem]:
    problems = []
    for entry in record.get("files") or []:
        name = entry["name"]
        try:
            path = model_file(library.root, model_id, name)
        except OutsideLibrary as exc:
            problems.append(Problem("outside_library", f"{model_id}: {exc}", model_id))
            continue
        listed.add(path)
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(
                Problem("missing_file", f"{model_id}: {name} is missing.", model_id, str(path))
            )
            continue
        if size != entry.get("size"):
            problems.append(
                Problem(
                    "size_mismatch",
                    f"{model_id}: {name} is {size} bytes, metadata.json says {entry.get('size')}.",
                    model_id,
                    str(path),
                )
            )
    return problems


def _index_agrees(
    db: sqlite3.Connection, model_id: str, record: dict[str, Any], row: sqlite3.Row
) -> bool:
    expected = index._sqlite_row(index._model_row(model_id, record))
    if tuple(row) != expected:
        return False
    files = {
        tuple(r) for r in db.execute("SELECT * FROM files WHERE model_id = ?", (model_id,))
    }
    wanted = set(index.file_rows(model_id, record))
    return files == wanted


def _check_staging(library: Library) -> list[Problem]:
    """Recovery ran when the library was opened; what is left is a live import's (its lock
    is held) or one recovery could not finish (already reported, kept on purpose)."""
    problems = []
    if os.path.lexists(library.staging_dir) and not own_folder(library.staging_dir):
        return [Problem("staging_left", planted_folder_problem(library.staging_dir))]
    try:
        with os.scandir(library.staging_dir) as entries:
            # A link in staging is reported as left, never entered (recovery left it too).
            txns = sorted(Path(e.path) for e in entries)
    except OSError:
        return []
    for txn in txns:
        fd = -1
        if own_folder(txn):  # a link is reported below, never entered
            with contextlib.suppress(OSError):
                fd = os.open(txn / "lock", os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            if fd >= 0 and not try_lock(fd, txn / "lock", blocking=False):
                continue  # a running import
        finally:
            if fd >= 0:
                unlock_and_close(fd)
        problems.append(
            Problem(
                "staging_left",
                f"An interrupted import is still in {txn} (recovery could not finish it).",
                path=str(txn),
            )
        )
    return problems


def _strays(library: Library, listed: set[Path]) -> list[Problem]:
    """Every file under the root that no metadata.json lists."""
    problems = []
    model_dirs = {p.parent for p in listed if p.name == METADATA_NAME}
    for folder, dirnames, filenames in os.walk(library.root):
        here = Path(folder)
        if here == library.root:
            dirnames[:] = [d for d in dirnames if d != META_DIR]
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            if path in listed:
                continue
            inside = next((d for d in model_dirs if d == here or d in here.parents), None)
            if name.startswith(f".{METADATA_NAME}.") and name.endswith(".tmp"):
                kind, what = "temp_file", "a temporary file left by an interrupted write"
            elif (
                inside is None
                and is_candidate_name(name)
                and path.is_file()
                and not path.is_symlink()  # adopting it would copy what it points at
            ):
                kind, what = "stray_model_file", "a model file that no model lists"
            else:
                kind, what = "stray_file", "a file that no model lists"
            where = f" (inside {library.model_id_of(inside / METADATA_NAME)})" if inside else ""
            problems.append(
                Problem(
                    kind,
                    f"{path.relative_to(library.root)} is {what}{where}.",
                    path=str(path),
                )
            )
    return problems


def _app_link_problems(opened: OpenLibrary) -> list[Problem]:
    try:
        from modelimport import apps  # type: ignore[attr-defined]
    except ImportError:
        return []
    check_links = getattr(apps, "check_links", None)
    if check_links is None:
        return []
    found = check_links(opened.library, opened.db)
    return [
        Problem("app_link", _sentence(p), path=_link_path(p),
                warning=isinstance(p, dict) and p.get("warning") is True)
        for p in found
    ]


def _sentence(problem: Any) -> str:
    if isinstance(problem, str):
        return problem
    if isinstance(problem, dict):
        return str(problem.get("message") or problem)
    return str(getattr(problem, "message", problem))


def _link_path(problem: Any) -> str | None:
    if isinstance(problem, dict):
        value = problem.get("link") or problem.get("path")
    else:
        value = getattr(problem, "link", None) or getattr(problem, "path", None)
    return str(value) if value is not None else None


def _repair(
    opened: OpenLibrary,
    problems: list[Problem],
    records: dict[str, dict[str, Any]],
    progress: ProgressSink,
) -> None:
    library, db = opened.library, opened.db
    adopted_folders: list[tuple[Path, str | None]] = []
    for p in problems:
        if not REPAIRABLE.get(p.kind):
            continue
        if p.kind in ("index_disagrees", "not_indexed"):
            with library.lock("commit"):
                index.upsert_model(db, p.model_id, records[p.model_id])  # type: ignore[index,arg-type]
            p.repaired, p.repair = True, "indexed from metadata.json"
        elif p.kind == "index_row_orphaned":
            with library.lock("commit"):
                db.execute("DELETE FROM models WHERE model_id = ?", (p.model_id,))
            p.repaired, p.repair = True, "removed from the index"
        elif p.kind == "temp_file":
            Path(p.path).unlink(missing_ok=True)  # type: ignore[arg-type]
            p.repaired, p.repair = True, "removed"
        elif p.kind == "stray_model_file":
            folder = _adopt(opened, p, progress)
            if folder is not None and p.repaired:
                adopted_folders.append((folder, p.model_id))
    # The other files of a folder adopted whole (its config, tokenizer) went with it.
    for p in problems:
        if p.kind != "stray_file" or not p.path or Path(p.path).exists():
            continue
        for folder, model_id in adopted_folders:
            if Path(p.path).is_relative_to(folder):
                p.repaired, p.repair = True, f"adopted with its folder as {model_id}"
                break


def _bundle_folder_of(root: Path, path: Path) -> Path | None:
    """The folder a hand-dropped model file is part of, when that folder is one model (a
    Hugging Face folder with its config and tokenizer, a diffusers pipeline): adopted
    whole, as an import would take it, so the library copy still loads."""
    from modelimport.readers.bundles import detect_bundle

    for folder in path.parents:
        if folder == root or root not in folder.parents:
            return None
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return None
        files = [e.name for e in entries if e.is_file()]
        dirs = [e.name for e in entries if e.is_dir()]
        if detect_bundle(folder, files, dirs) is not None:
            return folder
    return None


def _adopt(opened: OpenLibrary, problem: Problem, progress: ProgressSink) -> Path | None:
    """Import a model file dropped into the library by hand, by the normal import (moved:
    a rename on this filesystem), so it gets hashes, a record and an index row; the
    folder it was adopted with, when that folder is one model."""
    from modelimport.importer.pipeline import (
        DUPLICATE,
        IMPORTED,
        ImportOptions,
        execute_plan,
        plan_import,
    )

    options = ImportOptions(move=True, offline=True)
    path = Path(problem.path)  # type: ignore[arg-type]
    if not path.exists():  # a file of a folder adopted whole a moment ago
        problem.repaired, problem.repair = True, "adopted with its folder"
        return None
    folder = _bundle_folder_of(opened.library.root, path)
    plan = plan_import([folder or path], opened.library, opened.db, options, progress)
    [result] = execute_plan(plan, opened.library, opened.db, options, progress) or [None]
    if result is not None and result.status == IMPORTED:
        problem.repaired = True
        problem.model_id = result.model_id
        problem.repair = f"adopted as {result.model_id}"
    elif result is not None and result.status == DUPLICATE:
        problem.repair = (
            f"not adopted: it is a copy of {result.model_id}; delete it if you do not need it"
        )
    else:
        problem.repair = f"not adopted: {result.error if result else 'nothing to import'}"
    return folder


# -- verify ---------------------------------------------------------------------------------


def verify_library(
    opened: OpenLibrary,
    model_ids: list[str] | None = None,
    progress: ProgressSink = ignore_progress,
) -> dict[str, Any]:
    """Re-read every file of the given models (all by default) and compare its BLAKE3.

    A model removed while it is being verified (`remove` in another process) is reported
    as `removed`, not as a problem; a metadata.json whose shape is not a record's (a file
    name that is a number, an object, missing) fails that model with one sentence.
    """
    from modelimport.errors import ModelImportError, ModelNotFound
    from modelimport.library.layout import validate_model_id

    library = opened.library
    if model_ids:
        wanted = list(model_ids)
    else:
        wanted = [library.model_id_of(p) for p in library.iter_metadata_paths()]
    results = []
    mismatches = files_read = bytes_read = 0
    for model_id in wanted:
        try:
            model_id = validate_model_id(model_id)
            record = library.read_metadata(model_id)
            _require_record_shape(model_id, record)
        except ModelNotFound as exc:
            if not model_ids:  # listed a moment ago: removed since
                results.append(_removed_meanwhile(model_id))
                continue
            results.append({"model_id": model_id, "status": "failed", "error": str(exc)})
            mismatches += 1
            continue
        except ModelImportError as exc:
            results.append({"model_id": model_id, "status": "failed", "error": str(exc)})
            mismatches += 1
            continue
        bad = []
        for entry in record.get("files") or []:
            problem, size = _verify_file(library.root, entry, model_id, progress)
            if problem is None:
                files_read += 1
                bytes_read += size
            else:
                bad.append({"name": entry["name"], "problem": problem})
        if bad and not (library.root / model_id / METADATA_NAME).exists():
            results.append(_removed_meanwhile(model_id))
            continue
        mismatches += len(bad)
        results.append(
            {
                "model_id": model_id,
                "status": "corrupted" if bad else "ok",
                "files": bad,
                "error": "; ".join(f"{b['name']}: {b['problem']}" for b in bad) or None,
            }
        )
    summary = {
        "at": now_iso(),
        "models": len(wanted),
        "files": files_read,
        "bytes": bytes_read,
        "problems": mismatches,
        "whole_library": not model_ids,
    }
    if not opened.read_only:
        write_json_atomic(library.meta_dir / VERIFIED_STATE, summary)
    return {"library": str(library.root), "results": results, "summary": summary}


def _require_record_shape(model_id: str, record: Any) -> None:
    """Raise DamagedRecord unless `record` has the shape verify reads (types only)."""
    from modelimport.errors import DamagedRecord
    from modelimport.library.maintenance import JSON_TYPE_NAMES, _record_shape_problem

    if not isinstance(record, dict):
        what = JSON_TYPE_NAMES.get(type(record), "a value")
        problem: str | None = f"holds {what}, not a JSON object"
    else:
        problem = _record_shape_problem(record)
    if problem is not None:
        raise DamagedRecord(f"The metadata.json of {model_id} is damaged: it {problem}.")


def _removed_meanwhile(model_id: str) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "status": "removed",
        "files": [],
        "error": f"{model_id} was removed from the library while it was being verified.",
    }


def _verify_file(
    library_root: Path, entry: dict[str, Any], model_id: str, progress: ProgressSink
) -> tuple[str | None, int]:
    """(why the file fails, None when it is intact; the bytes read). A name that leads out
    of the library (`../`, a link on the way) is not followed: that is its problem."""
    from modelimport.hashing import blake3_file

    name = entry["name"]
    item = f"{model_id}/{name}"
    total = entry.get("size") or 0
    read = 0  # counted as it is read: the file may be gone (removed) by the time it is done

    def on_bytes(done: int) -> None:
        nonlocal read
        read = done
        progress(ProgressEvent(Stage.VERIFYING, item, done, total))

    on_bytes(0)
    try:
        fd = open_no_link(model_file(library_root, model_id, name))
    except OutsideLibrary as exc:
        progress(ProgressEvent(Stage.ERROR, item, message="not followed"))
        return str(exc), 0
    except OSError as exc:
        progress(ProgressEvent(Stage.ERROR, item, message="unreadable"))
        return f"cannot be read ({exc.strerror or exc})", 0
    try:
        digest = blake3_file(fd, on_bytes)
    except OSError as exc:
        progress(ProgressEvent(Stage.ERROR, item, message="unreadable"))
        return f"cannot be read ({exc.strerror or exc})", 0
    finally:
        os.close(fd)
    if digest != entry.get("blake3"):
        progress(ProgressEvent(Stage.ERROR, item, message="CORRUPTED"))
        return "its BLAKE3 differs from metadata.json", read
    progress(ProgressEvent(Stage.COMPLETE, item, message="ok"))
    return None, read


def last_verified(library: Library) -> dict[str, Any] | None:
    """What the last `verify` found and when, or None if it never ran."""
    try:
        data = json.loads(read_no_link(library.meta_dir / VERIFIED_STATE))
    except (OSError, ValueError, OutsideLibrary):
        return None
    return data if isinstance(data, dict) else None
