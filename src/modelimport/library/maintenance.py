"""Library-wide operations: open (with recovery), status, rescan, mark-manual.

Rescan progress is written to `.modelimport/rescan.json` while the `rescan` lock is held,
so `status` in another process can tell whether a rescan is running and how far it is.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelimport.errors import LibraryError
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.faults import fault_point
from modelimport.library import index, index_file
from modelimport.library.contained import OutsideLibrary, inside, model_file, read_no_link
from modelimport.library.filesystems import filesystem_type, is_network
from modelimport.library.index_file import NotOurIndex
from modelimport.library.layout import Library, validate_model_id, write_json_atomic
from modelimport.library.metadata import now_iso
from modelimport.library.reconcile import index_lists_folders, reconcile_index
from modelimport.library.staging import RecoveryReport

RESCAN_PROGRESS_EVERY = 200


@dataclass
class OpenLibrary:
    library: Library
    db: sqlite3.Connection
    recovery: RecoveryReport
    rebuilt: int | None = None  # models indexed because the index was missing
    read_only: bool = False  # this process may not change the library; nothing is written
    filesystem: str | None = None  # fstype of the library's mount (/proc/mounts)
    damaged_index: Path | None = None  # where a damaged index was set aside (rescan)
    disk_full: bool = False  # opened for reading only because the disk is full
    reconciled: tuple[int, int] | None = None  # (indexed, forgotten) to match the folders


def open_library(
    root: Path,
    create: bool = True,
    read_only_ok: bool = False,
    rebuild_damaged: bool = False,
    reconcile: bool = True,
) -> OpenLibrary:
    """Open (or create) the library, then finish or roll back imports whose process died.

    `read_only_ok`: the command only reads, so a library this process may not write (a
    read-only mount, another user's library, a full disk) is opened for reading instead of
    refused. `rebuild_damaged`: the command is `rescan`, whose job is rebuilding the index,
    so a damaged index file (or one that is not ours) is set aside, kept for a look, and a
    new one created; never an index that only could not be opened (a full disk, a lock).
    `reconcile`: make the index list the model folders on disk (reconcile_index); off for
    `check`, which reports where they disagree.
    """
    from modelimport.importer.pipeline import recover_library

    library = Library(root)
    if not create:
        _require_existing(library)
    if read_only_ok and library.exists and not library.writable:
        return _open_read_only(library)
    library.ensure()
    fstype = filesystem_type(library.root)
    network = is_network(fstype)
    index_missing = not os.path.lexists(library.index_path)
    damaged: Path | None = None
    try:
        try:
            db = index.connect(library.index_path, network)
            if rebuild_damaged and not index.is_healthy(db):
                db.close()
                raise sqlite3.DatabaseError("SQLite's quick_check found damaged pages")
        except (sqlite3.DatabaseError, NotOurIndex) as exc:
            kind = index_file.error_kind(exc, library.index_path)
            if not (rebuild_damaged and kind in ("damaged", "not_ours")):
                raise
            damaged = index.set_aside(library.index_path, f"damaged-{_stamp()}")
            db = index.connect(library.index_path, network)
        recovery = recover_library(library, db)
        opened = OpenLibrary(library, db, recovery, damaged_index=damaged, filesystem=fstype)
        if index_missing and next(library.iter_metadata_paths(), None) is not None:
            # The index is a cache of the metadata.json files. Working without it would
            # import every model again as new (no duplicate could be found): rebuild it.
            opened.rebuilt = _rebuild_index(opened)
        elif reconcile:
            opened.reconciled = reconcile_index(library, db)
    except (sqlite3.DatabaseError, NotOurIndex) as exc:
        if read_only_ok and not rebuild_damaged and _is_full(exc, library):
            return _open_read_only(library, disk_full=True)
        raise index_file.as_library_error(exc, library.index_path, library.root) from exc
    except OSError as exc:
        if _is_full(exc, library):
            if read_only_ok and not rebuild_damaged:
                return _open_read_only(library, disk_full=True)
            raise index_file.disk_full_error(library.root) from exc
        raise
    return opened


def _is_full(exc: BaseException, library: Library) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return index_file.error_kind(exc, library.index_path) == "full"


def _stamp() -> str:
    return now_iso().replace(":", "").replace("-", "").split("+")[0]


def _open_read_only(library: Library, disk_full: bool = False) -> OpenLibrary:
    """A library this process may not write (or not now: a full disk): read its index as it
    is when it lists the model folders on disk, or else index the metadata.json files in
    memory (nothing is written either way)."""
    db: sqlite3.Connection | None = None
    if os.path.lexists(library.index_path):
        try:
            db = index.connect_read_only(library.index_path, immutable_only=disk_full)
            if not index_lists_folders(library, db):
                db.close()  # stale: the metadata.json files say otherwise
                db = None
        except (sqlite3.DatabaseError, NotOurIndex):
            db = None
    rebuilt = None
    if db is None:
        db = index.connect(Path(":memory:"))
        scan = _scan_records(library, ignore_progress)
        rebuilt = index.replace_all(db, scan.models)
    problems: tuple[str, ...] = ()
    try:
        pending = any(p.is_dir() for p in library.staging_dir.iterdir())
    except OSError:
        pending = False
    if pending:
        problems = (
            f"The library at {library.root} is "
            + ("on a full disk" if disk_full else "read-only here")
            + f", so interrupted imports in {library.staging_dir} are not recovered; a "
            "command that may write it recovers them.",
        )
    return OpenLibrary(
        library,
        db,
        RecoveryReport(problems=problems),
        rebuilt=rebuilt,
        read_only=True,
        filesystem=filesystem_type(library.root),
        disk_full=disk_full,
    )


class RescanRunning(LibraryError):
    """Another process is rebuilding the index right now."""


def _rebuild_index(opened: OpenLibrary) -> int:
    try:
        return rescan(opened)["models"]
    except RescanRunning:
        # Another process is already rebuilding it: wait for that, then use its result.
        with opened.library.lock("rescan"):
            return index.summary(opened.db)["models"]


def _require_existing(library: Library) -> None:
    """Commands that only read or maintain a library never create one, so a mistyped
    --library is reported instead of showing an empty new library."""
    root = library.root
    try:
        if not stat.S_ISDIR(root.stat().st_mode):
            raise LibraryError(f"The library path {root} is not a folder.")
        found = library.exists
    except FileNotFoundError:
        found = False
    except PermissionError as exc:
        raise LibraryError(f"Permission denied reading the library at {root}.") from exc
    except OSError as exc:
        raise LibraryError(f"The library at {root} cannot be read: {exc.strerror or exc}.") from exc
    if not found:
        raise LibraryError(
            f"There is no model library at {root} yet; `modelimport import` creates one "
            "(or pass --library to name another)."
        )


def rescan_state(library: Library) -> dict[str, Any] | None:
    """The running rescan's progress, or None when no rescan is running."""
    with library.lock("rescan", blocking=False) as got:
        if got:
            return None
    try:
        return json.loads(read_no_link(library.meta_dir / "rescan.json"))
    except (OSError, ValueError, OutsideLibrary):
        return {"done": 0, "total": None}


def library_status(opened: OpenLibrary) -> dict[str, Any]:
    data = {"library": str(opened.library.root), **index.summary(opened.db)}
    data["schema_version"] = index.schema_version(opened.db)
    data["read_only"] = opened.read_only
    data["disk_full"] = opened.disk_full  # read only because the disk is full
    data["filesystem"] = opened.filesystem
    data["network_filesystem"] = is_network(opened.filesystem)
    data["index_journal_mode"] = str(
        opened.db.execute("PRAGMA journal_mode").fetchone()[0]
    ).lower()
    data["rescan"] = rescan_state(opened.library)
    from modelimport.library.integrity import last_verified

    data["last_verified"] = last_verified(opened.library)
    data["apps"], data["apps_problem"] = _apps_status(opened)
    data["recovered"] = {
        "rolled_back": opened.recovery.rolled_back,
        "completed": opened.recovery.completed,
        "problems": list(opened.recovery.problems),
    }
    return data


@dataclass
class RecordScan:
    """What reading every metadata.json found (the input of an index rebuild)."""

    models: list[tuple[str, dict[str, Any]]]
    unreadable: list[str]
    damaged: list[str]  # readable, but files are missing or not their recorded size
    problems: list[str]


def _scan_records(
    library: Library,
    progress: ProgressSink,
    on_progress: Any = None,
) -> RecordScan:
    paths = list(library.iter_metadata_paths())
    total = len(paths)
    scan = RecordScan([], [], [], [])
    for done, path in enumerate(paths, 1):
        model_id = library.model_id_of(path)
        record, problem = _read_record(path)
        if problem is None:
            scan.models.append((model_id, record))
            missing = _files_not_whole(path.parent, record)
            if missing:
                scan.damaged.append(model_id)
                scan.problems.append(f"{model_id}: {'; '.join(missing)}.")
        else:
            scan.unreadable.append(model_id)
            scan.problems.append(f"{path} {problem}; it was skipped.")
        if done % RESCAN_PROGRESS_EVERY == 0 or done in (1, total):
            progress(ProgressEvent(Stage.SCANNING, "rescan", done, total))
            if on_progress is not None:
                on_progress(done, total)
            fault_point("rescan.progress", done)
    return scan


def _apps_status(opened: OpenLibrary) -> tuple[list[dict[str, Any]], str | None]:
    """Per configured app: links ok / broken / missing (reads every record only when some
    app is configured; with none it costs one file lookup)."""
    from modelimport.apps import app_status
    from modelimport.apps.targets import AppsConfigError

    try:
        return app_status(opened.library, opened.db), None
    except AppsConfigError as exc:
        return [], str(exc)


def rescan(opened: OpenLibrary, progress: ProgressSink = ignore_progress) -> dict[str, Any]:
    """Rebuild the index from every metadata.json; records are read, never changed.

    On a read-only library the records are read and checked the same way, and the index
    (which cannot be written) is left as it is; the result says so.
    """
    library = opened.library
    if opened.read_only:
        scan = _scan_records(library, progress)
        count = len(scan.models)
    else:
        with library.lock("rescan", blocking=False) as got:
            if not got:
                raise RescanRunning("Another rescan of this library is already running.")
            scan, count = _rebuild_from_records(opened, progress)
    return {
        "library": str(library.root),
        "models": count,
        "unreadable": scan.unreadable,
        "damaged": scan.damaged,
        "problems": scan.problems,
        "read_only": opened.read_only,
        "damaged_index_kept_at": str(opened.damaged_index) if opened.damaged_index else None,
    }


def _rebuild_from_records(
    opened: OpenLibrary, progress: ProgressSink
) -> tuple[RecordScan, int]:
    """Read every record and replace the index's rows with them in one transaction: on any
    failure (a full disk, a busy index) the index stays exactly as it was."""
    library = opened.library
    state_path = library.meta_dir / "rescan.json"
    started = now_iso()

    def on_progress(done: int, total: int | None) -> None:
        write_json_atomic(state_path, {"done": done, "total": total, "started": started})

    try:
        try:
            on_progress(0, None)
            scan = _scan_records(library, progress, on_progress)
            count = index.replace_all(opened.db, scan.models)
        finally:
            state_path.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise index_file.disk_full_error(library.root) from exc
        raise
    except sqlite3.DatabaseError as exc:
        raise index_file.as_library_error(exc, library.index_path, library.root) from exc
    return scan, count


def _files_not_whole(model_dir: Path, record: dict[str, Any]) -> list[str]:
    """What is wrong with a model's files on disk (deleted or changed by hand), if anything.
    A size check only: a stat per file keeps a rescan of 10,000 models bounded by reading
    their metadata.json, not their gigabytes."""
    found = []
    for entry in record.get("files") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        try:
            size = inside(model_dir, entry["name"], "metadata.json").stat().st_size
        except OutsideLibrary as exc:
            found.append(str(exc).rstrip("."))
            continue
        except OSError:
            found.append(f"{entry['name']} is missing")
            continue
        if size != entry.get("size"):
            found.append(f"{entry['name']} is {size} bytes, metadata.json says {entry.get('size')}")
    return found


# What the index copies from a record into its columns (index._model_row): SQLite binds only
# scalars, so a record with another shape here is skipped rather than failing the rebuild.
INDEXED_FIELDS = (
    "model_type", "family", "official_name", "cleaned_name", "precision", "repo_id",
    "match_source", "match_method", "match_confidence", "trust_level", "added_at", "updated_at",
)  # fmt: skip
INDEXED_FILE_FIELDS = ("sha256", "blake3", "fast_hash")
JSON_TYPE_NAMES = {
    list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
    type(None): "null",
}  # fmt: skip
SQLITE_INT_MAX = 2**63 - 1


def _read_record(path: Path) -> tuple[dict[str, Any], str | None]:
    """A metadata.json's record, or why it cannot be indexed (the end of a sentence)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, f"could not be read ({exc.strerror or exc})"
    except (ValueError, RecursionError):
        return {}, "is not valid JSON"
    if not isinstance(record, dict):
        return {}, f"holds {JSON_TYPE_NAMES.get(type(record), 'a value')}, not a JSON object"
    return record, _record_shape_problem(record)


def _record_shape_problem(record: dict[str, Any]) -> str | None:
    for key in INDEXED_FIELDS:
        if not _is_sql_scalar(record.get(key)):
            return f"has a {key} that is not a single value"
    files = record.get("files")
    if files is None:
        return None
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        return "has files that are not a list of objects"
    for f in files:
        if not isinstance(f.get("name"), str) or not _is_sql_scalar(f["name"]):
            return "lists a file without a usable name"
        size = f.get("size")
        if size is not None and not (
            isinstance(size, int) and 0 <= size <= SQLITE_INT_MAX and not isinstance(size, bool)
        ):
            return f"lists {f['name']} with a size that is not a byte count"
        if not all(_is_sql_scalar(f.get(key)) for key in INDEXED_FILE_FIELDS):
            return f"lists {f['name']} with a hash that is not a single value"
    return None


def _is_sql_scalar(value: Any) -> bool:
    if isinstance(value, int):
        return -SQLITE_INT_MAX - 1 <= value <= SQLITE_INT_MAX
    if isinstance(value, str):
        return value.isascii() or _is_utf8(value)  # JSON allows lone surrogates; SQLite not
    return value is None or isinstance(value, float)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def model_details(opened: OpenLibrary, model_id: str) -> dict[str, Any]:
    """Everything about one model for `show`: its whole record, each file with its path in
    the library (and whether it is there), its app links with their state, its trust level."""
    from modelimport.apps.links import link_state

    model_id = validate_model_id(model_id)
    record = opened.library.read_metadata(model_id)
    model_dir = opened.library.root / model_id
    files = []
    for entry in record.get("files") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        try:
            path = model_file(opened.library.root, model_id, entry["name"])
        except OutsideLibrary as exc:
            files.append({**entry, "path": None, "present": False, "problem": str(exc)})
            continue
        files.append({**entry, "path": str(path), "present": path.is_file()})
    links = [
        {**row, "state": str(link_state(Path(row["link_path"]), Path(row["target"])))}
        for row in index.links(opened.db, model_id=model_id)
    ]
    return {
        "model_id": model_id,
        "path": str(model_dir),
        "trust_level": record.get("trust_level"),
        "indexed": index.model_exists(opened.db, model_id),
        "files": files,
        "links": links,
        "record": record,
    }
