"""The SQLite index: a fast, rebuildable view of every metadata.json in the library.

Invariants:
- metadata.json is the source of truth; the index can always be rebuilt from it (`rescan`),
  and nothing is stored only here except the rescan bookkeeping.
- WAL mode with a busy timeout, so two processes can import into one library at once;
  each model's rows are written in one transaction. On a network filesystem (NFS, SMB,
  sshfs) the rollback journal instead: WAL's shared memory does not work across machines.
- The schema grows by small named migrations, applied once each, in order, and recorded in
  `schema_migrations`.
- Only valid UTF-8 reaches SQLite (it refuses lone surrogates): a name from a file name that
  is not UTF-8 is stored with U+FFFD; metadata.json keeps the exact original.
- Only the regular file we made is opened (never a link, never another program's database:
  library/index_file.py); the file carries our application_id from migration 004 on.
- The index is believed only while it lists the model folders on disk: opening the library
  compares the two and indexes what is missing (maintenance.reconcile_index), so an empty,
  zero-byte or stale index never makes dedup import a second copy.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from modelimport.library import index_file
from modelimport.names import valid_text

BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def _run_statements(db: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, which would break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_models_and_files(db: sqlite3.Connection) -> None:
    _run_statements(
        db,
        """
        CREATE TABLE models (
            model_id TEXT PRIMARY KEY,
            model_type TEXT NOT NULL,
            family TEXT NOT NULL,
            official_name TEXT,
            cleaned_name TEXT,
            precision TEXT,
            repo_id TEXT,
            match_source TEXT,
            match_method TEXT,
            match_confidence REAL,
            trust TEXT,
            pending_online_lookup INTEGER NOT NULL DEFAULT 0,
            is_sharded_set INTEGER NOT NULL DEFAULT 0,
            incomplete INTEGER NOT NULL DEFAULT 0,
            total_size INTEGER NOT NULL DEFAULT 0,
            file_count INTEGER NOT NULL DEFAULT 0,
            added_at TEXT,
            updated_at TEXT
        );
        CREATE TABLE files (
            model_id TEXT NOT NULL REFERENCES models(model_id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT,
            blake3 TEXT,
            fast_hash TEXT,
            PRIMARY KEY (model_id, name)
        );
        CREATE INDEX files_sha256 ON files(sha256);
        CREATE INDEX files_size_fast_hash ON files(size, fast_hash);
        CREATE INDEX models_type ON models(model_type);
        CREATE INDEX models_pending ON models(pending_online_lookup);
        """,
    )


def _m002_app_links(db: sqlite3.Connection) -> None:
    # No foreign key to models: a rescan rebuilds `models`, and the registry must survive it
    # (it is how `sync` knows which links in an app's folders are ours to repair or remove).
    _run_statements(
        db,
        """
        CREATE TABLE links (
            app TEXT NOT NULL,
            link_path TEXT NOT NULL,
            model_id TEXT NOT NULL,
            target TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('symlink', 'hardlink')),
            is_dir INTEGER NOT NULL DEFAULT 0,
            created_at TEXT,
            PRIMARY KEY (app, link_path)
        );
        CREATE INDEX links_model ON links(model_id);
        """,
    )


def _m003_model_tags(db: sqlite3.Connection) -> None:
    # Tags as a JSON list, so `list --search` finds a model by tag without reading its
    # metadata.json. Rows indexed before this step have none until the next `rescan`.
    # (002 is app links, taken by the apps package.)
    _run_statements(db, "ALTER TABLE models ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';")


def _m004_application_id(db: sqlite3.Connection) -> None:
    # Marks the file as modelimport's index in SQLite's own header, so a database that is
    # not ours is recognised before anything is written into it (index_file.ensure_ours).
    db.execute(f"PRAGMA application_id = {index_file.APPLICATION_ID}")


# Append new migrations here; never edit or reorder an applied one.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_models_and_files", _m001_models_and_files),
    ("002_app_links", _m002_app_links),
    ("003_model_tags", _m003_model_tags),
    ("004_application_id", _m004_application_id),
]


def journal_mode_for(network: bool) -> str:
    """WAL locally; on a network filesystem the rollback journal, because WAL's shared-memory
    index (-shm) cannot be shared between machines (library/filesystems.py)."""
    return "delete" if network else "wal"


def connect(path: Path, network: bool = False) -> sqlite3.Connection:
    """Open (or create) the index for writing. Raises index_file.NotOurIndex when the file
    is a link or another program's database (nothing is written into it)."""
    in_memory = str(path) == ":memory:"
    found = None if in_memory else index_file.inspect(path)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        _prepare(db, path, found, network, in_memory)
    except BaseException:
        # Closed at once: a damaged index is then renamed aside, which Windows refuses for
        # a file still open.
        db.close()
        raise
    return db


def _prepare(
    db: sqlite3.Connection, path: Path, found: Any, network: bool, in_memory: bool
) -> None:
    db.row_factory = sqlite3.Row
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    _while_locked(lambda: db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"), deadline)
    if not in_memory:
        _while_locked(lambda: index_file.ensure_ours(db, path), deadline)
        index_file.ensure_same_file(path, found)
    # The journal mode is a property of the file, set once. Asking for WAL again makes
    # SQLite take a lock without its busy handler, so a second process opening the index
    # while the first closes it (and checkpoints the WAL) failed at once with "database is
    # locked".
    wanted = journal_mode_for(network)
    mode = _while_locked(lambda: db.execute("PRAGMA journal_mode").fetchone()[0], deadline)
    if str(mode).lower() != wanted and not in_memory:
        _while_locked(lambda: db.execute(f"PRAGMA journal_mode = {wanted.upper()}"), deadline)
    # Without WAL, NORMAL could lose the last transaction on a power cut; FULL does not.
    db.execute(f"PRAGMA synchronous = {'FULL' if network else 'NORMAL'}")
    db.execute("PRAGMA foreign_keys = ON")
    _while_locked(lambda: migrate(db), deadline)


def connect_read_only(path: Path, immutable_only: bool = False) -> sqlite3.Connection:
    """Open an index this process may not write (a read-only library, a full disk) for
    reading.

    A WAL database needs its -shm file, which a reader cannot create in a read-only folder
    (nor grow on a full disk); there SQLite can still read the file as immutable. Immutable
    reading ignores the -wal file, so it is only tried when that file is absent or empty
    (nothing committed is missing from the main file). Raises sqlite3.DatabaseError when the
    file is not a usable index, index_file.NotOurIndex when it is not ours.
    """
    found = index_file.inspect(path)
    uri = "file:" + urllib.parse.quote(str(path.absolute()))
    last: sqlite3.DatabaseError | None = None
    modes = ["mode=ro&immutable=1"] if _wal_is_empty(path) else []
    if not immutable_only:
        modes.insert(0, "mode=ro")
    for params in modes:
        db = sqlite3.connect(f"{uri}?{params}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            index_file.ensure_ours(db, path)
            index_file.ensure_same_file(path, found)
            db.execute("SELECT COUNT(*) FROM models").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            db.close()
            last = exc
        except BaseException:
            db.close()
            raise
    raise last or sqlite3.DatabaseError("the index's WAL file holds changes not yet in it")


def _wal_is_empty(path: Path) -> bool:
    try:
        return path.with_name(path.name + "-wal").stat().st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def is_healthy(db: sqlite3.Connection) -> bool:
    """SQLite's own quick check of every page (used by `rescan` before trusting the file)."""
    try:
        return db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False


set_aside = index_file.set_aside


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked"/"busy": another process holds the index right now."""
    return isinstance(exc, sqlite3.OperationalError) and any(
        word in str(exc).lower() for word in ("locked", "busy")
    )


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: the write lock is taken first (BEGIN IMMEDIATE), so a caller
    that must also change files can wait for a busy index before it changes anything."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite has already rolled back by itself after some errors (a full disk: SQLITE_FULL);
    # a second ROLLBACK would raise and hide the error that matters.
    if db.in_transaction:
        db.execute("ROLLBACK")


def _while_locked(step: Callable[[], T], deadline: float) -> T:
    """Run `step`, retrying while the index is locked by another process (until `deadline`):
    the lock SQLite takes when opening or recovering a WAL file does not wait by itself."""
    delay = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def migrate(db: sqlite3.Connection) -> None:
    # Only written when something is missing: a CREATE ... IF NOT EXISTS still waits for the
    # write lock, so every open would wait for another process's long transaction.
    exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    if db.execute(exists).fetchone() is None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
        )
    applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    for name, step in MIGRATIONS:
        if name in applied:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            if db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)).fetchone():
                db.execute("ROLLBACK")
                continue
            step(db)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, _now()))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sqlite_row(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(valid_text(v) if isinstance(v, str) else v for v in values)


MODEL_COLUMNS = (
    "model_id",
    "model_type",
    "family",
    "official_name",
    "cleaned_name",
    "precision",
    "repo_id",
    "match_source",
    "match_method",
    "match_confidence",
    "trust",
    "pending_online_lookup",
    "is_sharded_set",
    "incomplete",
    "total_size",
    "file_count",
    "added_at",
    "updated_at",
    "tags",
)


def _model_row(model_id: str, meta: dict[str, Any]) -> tuple[Any, ...]:
    files = meta.get("files") or []
    return (
        model_id,
        meta.get("model_type") or "unknown",
        meta.get("family") or "unknown",
        meta.get("official_name"),
        meta.get("cleaned_name"),
        meta.get("precision"),
        meta.get("repo_id"),
        meta.get("match_source"),
        meta.get("match_method"),
        meta.get("match_confidence"),
        meta.get("trust_level"),
        # A manual record is never looked up again (retry-pending leaves it alone), so it is
        # not pending, whatever its flag still says (kept, so mark-manual can be undone).
        int(bool(meta.get("pending_online_lookup")) and meta.get("match_source") != "manual"),
        int(bool(meta.get("is_sharded_set"))),
        int(bool(meta.get("incomplete_set"))),
        sum(int(f.get("size") or 0) for f in files),
        len(files),
        meta.get("added_at"),
        meta.get("updated_at"),
        json.dumps([str(t) for t in meta.get("tags") or []], ensure_ascii=False),
    )


def _write_model(db: sqlite3.Connection, model_id: str, meta: dict[str, Any]) -> None:
    db.execute("DELETE FROM files WHERE model_id = ?", (model_id,))
    db.execute(
        f"INSERT OR REPLACE INTO models ({', '.join(MODEL_COLUMNS)}) "
        f"VALUES ({','.join('?' * len(MODEL_COLUMNS))})",
        _sqlite_row(_model_row(model_id, meta)),
    )
    db.executemany(
        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
        file_rows(model_id, meta),
    )


def upsert_model(db: sqlite3.Connection, model_id: str, meta: dict[str, Any]) -> None:
    """Insert or replace one model's rows in a single transaction."""
    with write_transaction(db):
        _write_model(db, model_id, meta)


def replace_all(db: sqlite3.Connection, models: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Rebuild: every model's rows replaced by `models`, atomically."""
    count = 0
    with write_transaction(db):
        db.execute("DELETE FROM files")
        db.execute("DELETE FROM models")
        for model_id, meta in models:
            _write_model(db, model_id, meta)
            count += 1
    return count


def delete_model(db: sqlite3.Connection, model_id: str) -> None:
    """Forget one model's rows (its app links are the apps package's to remove)."""
    with write_transaction(db):
        delete_rows(db, model_id)


def delete_rows(db: sqlite3.Connection, model_id: str) -> None:
    """One model's rows, inside a transaction the caller holds (write_transaction)."""
    db.execute("DELETE FROM files WHERE model_id = ?", (model_id,))
    db.execute("DELETE FROM models WHERE model_id = ?", (model_id,))


def reconcile(
    db: sqlite3.Connection, add: Iterable[tuple[str, dict[str, Any]]], drop: Iterable[str]
) -> None:
    """Index the models in `add` and forget those in `drop`, in one transaction."""
    with write_transaction(db):
        for model_id, meta in add:
            _write_model(db, model_id, meta)
        for model_id in drop:
            delete_rows(db, model_id)


# --- The link registry: every link modelimport made in an app's folders (apps package).

LINK_COLUMNS = ("app", "link_path", "model_id", "target", "kind", "is_dir", "created_at")


def add_link(
    db: sqlite3.Connection,
    app: str,
    link_path: str,
    model_id: str,
    target: str,
    kind: str,
    is_dir: bool = False,
) -> None:
    db.execute(
        "INSERT OR REPLACE INTO links VALUES (?, ?, ?, ?, ?, ?, ?)",
        _sqlite_row((app, link_path, model_id, target, kind, int(is_dir), _now())),
    )


def delete_link(db: sqlite3.Connection, app: str, link_path: str) -> None:
    db.execute("DELETE FROM links WHERE app = ? AND link_path = ?", _sqlite_row((app, link_path)))


def links(
    db: sqlite3.Connection, app: str | None = None, model_id: str | None = None
) -> list[dict[str, Any]]:
    """Registered links, optionally of one app and/or one model, in a stable order."""
    where, args = [], []
    if app is not None:
        where.append("app = ?")
        args.append(app)
    if model_id is not None:
        where.append("model_id = ?")
        args.append(model_id)
    sql = "SELECT * FROM links" + (" WHERE " + " AND ".join(where) if where else "")
    try:
        rows = [dict(r) for r in db.execute(sql + " ORDER BY app, link_path", _sqlite_row(args))]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # an index read (read-only) before migration 002 was applied to it
        raise
    for row in rows:
        row["is_dir"] = bool(row["is_dir"])
    return rows


def model_ids(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT model_id FROM models ORDER BY model_id")]


def find_by_sha256(db: sqlite3.Connection, sha256: str) -> str | None:
    row = db.execute("SELECT model_id FROM files WHERE sha256 = ? LIMIT 1", (sha256,)).fetchone()
    return row[0] if row else None


def find_by_fast_hash(db: sqlite3.Connection, size: int, fast_hash: str) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT model_id, name, sha256 FROM files WHERE size = ? AND fast_hash = ?",
        (size, fast_hash),
    ).fetchall()


def model_exists(db: sqlite3.Connection, model_id: str) -> bool:
    return db.execute("SELECT 1 FROM models WHERE model_id = ?", (model_id,)).fetchone() is not None


def model_ids_under(db: sqlite3.Connection, folder: str) -> list[str]:
    """The ids of the models in one `<type>/<family>` folder (a range of the primary key)."""
    low = folder.rstrip("/") + "/"
    high = low[:-1] + chr(ord("/") + 1)
    rows = db.execute(
        "SELECT model_id FROM models WHERE model_id >= ? AND model_id < ?", (low, high)
    ).fetchall()
    return [row[0] for row in rows]


# Also for rows written before manual records stopped counting as pending (see _model_row).
PENDING = "(pending_online_lookup = 1 AND COALESCE(match_source, '') != 'manual')"


def summary(db: sqlite3.Connection) -> dict[str, Any]:
    row = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(total_size), 0),"
        f" COALESCE(SUM({PENDING}), 0),"
        " COALESCE(SUM(incomplete), 0), COALESCE(SUM(match_source = 'manual'), 0) FROM models"
    ).fetchone()
    by_type = {
        r[0]: r[1]
        for r in db.execute(
            "SELECT model_type, COUNT(*) FROM models GROUP BY model_type ORDER BY 2 DESC, 1"
        )
    }
    return {
        "models": row[0],
        "total_bytes": row[1],
        "pending_lookups": row[2],
        "incomplete_sets": row[3],
        "manual_records": row[4],
        "by_type": by_type,
    }


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_models(
    db: sqlite3.Connection,
    model_type: str | None = None,
    family: str | None = None,
    pending_only: bool = False,
    search: str | None = None,
) -> list[dict[str, Any]]:
    """Models in the index, by id. `search` matches, ignoring case, a substring of the id,
    the names, the repo, a file name or a tag."""
    where: list[str] = []
    args: list[Any] = []
    if search:
        fields = ["model_id", "cleaned_name", "official_name", "repo_id"]
        if _has_column(db, "models", "tags"):  # a read-only library not yet migrated
            fields.append("tags")
        clauses = [f"{f} LIKE ? ESCAPE '\\'" for f in fields]
        clauses.append(
            "EXISTS (SELECT 1 FROM files WHERE files.model_id = models.model_id "
            "AND files.name LIKE ? ESCAPE '\\')"
        )
        where.append("(" + " OR ".join(clauses) + ")")
        args += [_like(search)] * len(clauses)
    if model_type:
        where.append("model_type = ?")
        args.append(model_type)
    if family:
        where.append("family = ?")
        args.append(family)
    if pending_only:
        where.append(PENDING)
    sql = "SELECT * FROM models" + (" WHERE " + " AND ".join(where) if where else "")
    rows = [dict(r) for r in db.execute(sql + " ORDER BY model_id", _sqlite_row(args))]
    for row in rows:  # SQLite has no booleans; the JSON a person reads should
        for flag in BOOLEAN_COLUMNS:
            row[flag] = bool(row[flag])
        row["tags"] = json.loads(row.get("tags") or "[]")
    return rows


BOOLEAN_COLUMNS = ("pending_online_lookup", "is_sharded_set", "incomplete")


def pending_model_ids(db: sqlite3.Connection) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            f"SELECT model_id FROM models WHERE {PENDING} ORDER BY model_id"
        )
    ]


def file_rows(model_id: str, meta: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The `files` rows of one record, as stored: what `check` compares the index with."""
    return [
        _sqlite_row(
            (
                model_id,
                f["name"],
                int(f.get("size") or 0),
                f.get("sha256"),
                f.get("blake3"),
                f.get("fast_hash"),
            )
        )
        for f in meta.get("files") or []
    ]
