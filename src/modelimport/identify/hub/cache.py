"""The persistent lookup cache: Hub search results, repo listings and known local SHA256s.

One JSON file per entry under `<cache>/<kind>/<sha256(key)>.json`, written atomically
(temp file + rename). Keys are hashed, so a repo id or query from the Hub never becomes a path.
A CLI is a new process every time: only a disk cache saves calls between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import platformdirs

CACHE_ENV = "MODELIMPORT_CACHE_DIR"

# kind -> time to live in seconds (None: never expires).
TTL: dict[str, float | None] = {
    "search": 3600.0,  # what the Hub finds for a query changes; keep it short
    "repo": 24 * 3600.0,  # a repo's file listing
    # (fast hash, path, size, mtime) -> sha256 of a local file read whole before. Keyed by
    # the fast hash alone it lent one file's sha256 to any other with the same ends and size.
    "known_sha256": None,
}


def default_cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return platformdirs.user_cache_path("modelimport") / "hub"


class HubCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_cache_dir()

    def _path(self, kind: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.root / kind / f"{digest}.json"

    def get(self, kind: str, key: str) -> Any | None:
        """The cached value, or None when absent, expired or unreadable."""
        path = self._path(kind, key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        ttl = TTL.get(kind)
        stored = entry.get("stored_at")
        if ttl is not None and (not isinstance(stored, int | float) or time.time() - stored > ttl):
            return None
        return entry.get("value")

    def put(self, kind: str, key: str, value: Any) -> None:
        """Store a value; a cache that cannot be written is not an error, only a slower next run."""
        path = self._path(kind, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"key": key, "stored_at": time.time(), "value": value}, fh)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass
