"""The publisher file index on disk: one SQLite file under the user cache folder.

Tables: `repos` (one row per indexed repo: its publisher, the Hub's lastModified and commit
at listing time, when and from which endpoint it was listed, the listing itself as JSON) and
`files` (one row per file of those repos: lower-case base name, size, LFS SHA256), indexed by
SHA256 and by name, so a lookup costs two indexed queries and no Hub call.

Invariants:
- Everything in the file is untrusted (it is the Hub's answer, and the cache folder is the
  user's to edit): listings are read back through `RepoListing.from_json` and the same checks
  as a live answer (`identify.hub.answers`); a row that does not read is skipped.
- An index that is absent, unreadable, of another schema or built against another endpoint
  (HF_ENDPOINT) is an empty index, never an error: identification goes on without it.
- Lookups never write. Writers (`update`) replace a repo's rows in one transaction, so a
  reader sees a repo's old listing or its new one, never half of each.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelimport.errors import ModelImportError
from modelimport.identify.hub.answers import MalformedAnswer, repo_listing
from modelimport.identify.hub.cache import default_cache_dir
from modelimport.identify.hub.records import LocalFile, RepoListing
from modelimport.names import is_generic_name

INDEX_FILE = "publisher-index.sqlite"
SCHEMA_VERSION = 1
# Repos one lookup may take from the index: a name many repos hold (a LoRA re-uploaded by
# ten people) costs nothing to list, but each is compared with every local file.
MAX_CANDIDATES = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS publishers (
    name TEXT PRIMARY KEY, updated_at REAL NOT NULL, repos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS repos (
    repo_id TEXT PRIMARY KEY, publisher TEXT NOT NULL, last_modified TEXT, sha TEXT,
    listed_at REAL NOT NULL, listing TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    repo_id TEXT NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL, size INTEGER,
    sha256 TEXT);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_by_name ON files (name);
CREATE INDEX IF NOT EXISTS files_by_repo ON files (repo_id);
"""


def index_path(cache_dir: Path | None = None) -> Path:
    """Where the index lives: beside the Hub lookup cache (MODELIMPORT_CACHE_DIR)."""
    return (cache_dir or default_cache_dir()) / INDEX_FILE


@dataclass(frozen=True)
class IndexStats:
    path: Path
    endpoint: str | None
    publishers: int
    repos: int
    files: int
    bytes_on_disk: int
    oldest_update: float | None  # time.time() of the least recently refreshed publisher

    @property
    def age_s(self) -> float | None:
        return None if self.oldest_update is None else max(0.0, time.time() - self.oldest_update)

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "endpoint": self.endpoint,
            "publishers": self.publishers,
            "repos": self.repos,
            "files": self.files,
            "bytes_on_disk": self.bytes_on_disk,
            "age_s": None if self.age_s is None else round(self.age_s),
        }


def _base_name(path: str) -> str:
    return PurePosixPath(path).name.lower()


class PublisherIndex:
    """Read access to the index (`open_index`), and the writes `update` makes."""

    def __init__(self, path: Path, endpoint: str, db: sqlite3.Connection) -> None:
        self.path = path
        self.endpoint = endpoint
        self._db = db
        self._lock = threading.Lock()  # one connection, shared by a batch's lookup threads

    # -- reading ------------------------------------------------------------------------------

    def repos_holding(self, files: Sequence[LocalFile]) -> list[str]:
        """Repos holding one of these files: by SHA256 first (exact), then by name and size,
        then by name alone (each a candidate the scoring judges like any listed repo)."""
        by_hash: list[str] = []
        by_name_size: list[str] = []
        by_name: list[str] = []
        try:
            with self._lock:
                rows_by_file = [(local, self._rows(local)) for local in files]
        except sqlite3.Error:
            return []
        for local, (hashed, rows) in rows_by_file:
            by_hash += hashed
            by_name_size += [r for r, size in rows if size == local.size]
            # A generic name (model.safetensors) in a repo says nothing unless size or hash do.
            if not is_generic_name(local.name):
                by_name += [r for r, _ in rows]
        return list(dict.fromkeys(by_hash + by_name_size + by_name))[:MAX_CANDIDATES]

    def _rows(self, local: LocalFile) -> tuple[list[str], list[tuple[str, int | None]]]:
        hashed = (
            self._column(
                "SELECT DISTINCT repo_id FROM files WHERE sha256 = ?", (local.sha256.lower(),)
            )
            if local.sha256
            else []
        )
        rows = self._db.execute(
            "SELECT DISTINCT repo_id, size FROM files WHERE name = ? LIMIT 200",
            (_base_name(local.name),),
        ).fetchall()
        return hashed, [(str(r), s if isinstance(s, int) else None) for r, s in rows]

    def listing(self, repo_id: str) -> RepoListing | None:
        """The repo's listing as indexed; None when absent or unreadable."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT listing FROM repos WHERE repo_id = ?", (repo_id,)
                ).fetchone()
            if row is None or not isinstance(row[0], str):
                return None
            return repo_listing(repo_id, json.loads(row[0]))
        except (sqlite3.Error, ValueError, RecursionError, MalformedAnswer):
            return None

    def listed_at(self, repo_id: str) -> float | None:
        with contextlib.suppress(sqlite3.Error), self._lock:
            row = self._db.execute(
                "SELECT listed_at FROM repos WHERE repo_id = ?", (repo_id,)
            ).fetchone()
            if row and isinstance(row[0], int | float):
                return float(row[0])
        return None

    def known_repos(self, publisher: str) -> dict[str, str | None]:
        """repo id -> the lastModified it was listed at, for one publisher."""
        rows = self._db.execute(
            "SELECT repo_id, last_modified FROM repos WHERE publisher = ?", (publisher,)
        ).fetchall()
        return {str(r): (str(m) if m is not None else None) for r, m in rows}

    def publishers_by_age(self, publishers: Sequence[str]) -> list[str]:
        """`publishers`, never updated first, then least recently updated first."""
        with contextlib.suppress(sqlite3.Error), self._lock:
            rows = self._db.execute("SELECT name, updated_at FROM publishers").fetchall()
            when = {str(n): float(u) for n, u in rows if isinstance(u, int | float)}
            return sorted(publishers, key=lambda p: when.get(p, 0.0))
        return list(publishers)

    def stats(self) -> IndexStats:
        def one(sql: str) -> int:
            with contextlib.suppress(sqlite3.Error):
                return int(self._db.execute(sql).fetchone()[0] or 0)
            return 0

        oldest = None
        with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
            value = self._db.execute("SELECT MIN(updated_at) FROM publishers").fetchone()[0]
            oldest = float(value) if value is not None else None
        size = sum(p.stat().st_size for p in self.path.parent.glob(INDEX_FILE + "*"))
        return IndexStats(
            self.path,
            self.endpoint,
            one("SELECT COUNT(*) FROM publishers"),
            one("SELECT COUNT(*) FROM repos"),
            one("SELECT COUNT(*) FROM files"),
            size,
            oldest,
        )

    def _column(self, sql: str, args: tuple[object, ...]) -> list[str]:
        return [str(row[0]) for row in self._db.execute(sql, args).fetchall()]

    # -- writing (update) ---------------------------------------------------------------------

    def put_repo(
        self, publisher: str, listing: RepoListing, last_modified: str | None
    ) -> None:
        """Replace one repo's rows by this listing, in one transaction."""
        with self._db:
            self._drop(listing.repo_id)
            self._db.execute(
                "INSERT INTO repos VALUES (?, ?, ?, ?, ?, ?)",
                (
                    listing.repo_id,
                    publisher,
                    last_modified,
                    listing.sha,
                    time.time(),
                    json.dumps(_as_answer(listing)),
                ),
            )
            self._db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        listing.repo_id,
                        f.path,
                        _base_name(f.path),
                        f.size,
                        f.sha256.lower() if f.sha256 else None,
                    )
                    for f in listing.files
                ],
            )

    def drop_repos(self, repo_ids: Sequence[str]) -> None:
        """Forget repos the publisher no longer has (deleted, renamed, made private)."""
        with self._db:
            for repo_id in repo_ids:
                self._drop(repo_id)

    def publisher_done(self, publisher: str, repos: int) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO publishers VALUES (?, ?, ?)",
                (publisher, time.time(), repos),
            )

    def _drop(self, repo_id: str) -> None:
        self._db.execute("DELETE FROM files WHERE repo_id = ?", (repo_id,))
        self._db.execute("DELETE FROM repos WHERE repo_id = ?", (repo_id,))

    def close(self) -> None:
        self._db.close()


def _as_answer(listing: RepoListing) -> dict[str, Any]:
    """A listing in the shape of the Hub's answer, so that reading it back goes through the
    same checks as a live answer (`repo_listing`)."""
    return {
        "id": listing.repo_id,
        "sha": listing.sha,
        "downloads": listing.downloads,
        "tags": list(listing.tags),
        "pipeline_tag": listing.pipeline_tag,
        "library_name": listing.library_name,
        "gated": listing.gated,
        "cardData": listing.card_data,
        "siblings": [
            {"rfilename": f.path, "size": f.size}
            | ({"lfs": {"sha256": f.sha256, "size": f.size}} if f.sha256 else {})
            for f in listing.files
        ],
    }


def _read_meta(db: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta").fetchall()}


def open_index(
    endpoint: str, cache_dir: Path | None = None, *, write: bool = False
) -> PublisherIndex | None:
    """The index built against `endpoint`, or None when there is none to read (absent,
    unreadable, another schema or another endpoint). `write=True` creates it (and starts
    afresh when it was built against another endpoint or schema)."""
    path = index_path(cache_dir)
    endpoint = endpoint.rstrip("/")
    if not write and not path.is_file():
        return None
    if write and os.path.islink(path):
        # SQLite would write its tables into whatever the link names (another program's
        # database, or a new file wherever a dangling link points)
        raise ModelImportError(
            f"{path} is a link, which the publisher index is never written through; remove "
            "it and run `modelimport index update` again."
        )
    try:
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            meta = _meta_or_empty(db)
            if meta and (
                meta.get("endpoint") != endpoint or meta.get("schema") != str(SCHEMA_VERSION)
            ):
                db.close()
                path.unlink()
                db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            db.executescript(_SCHEMA)
            with db:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('endpoint', ?)", (endpoint,))
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            return PublisherIndex(path, endpoint, db)
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             check_same_thread=False)
        meta = _read_meta(db)
        if meta.get("endpoint") != endpoint or meta.get("schema") != str(SCHEMA_VERSION):
            db.close()
            return None
        return PublisherIndex(path, endpoint, db)
    except (sqlite3.Error, OSError):
        return None


def _meta_or_empty(db: sqlite3.Connection) -> dict[str, str]:
    try:
        return _read_meta(db)
    except sqlite3.Error:
        return {}
