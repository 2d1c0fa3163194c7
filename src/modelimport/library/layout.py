"""The library on disk: layout, model ids, metadata.json, and the locks that guard them.

Layout:
    <root>/<model_type>/<family>/<slug>/metadata.json   source of truth
    <root>/<model_type>/<family>/<slug>/<model files>
    <root>/.modelimport/index.sqlite                    rebuildable from metadata.json
    <root>/.modelimport/staging/<txn>/                  in-flight imports (same filesystem)

Invariants:
- A model directory in the library is complete: it appears only by one atomic rename of a
  staged directory that already holds every file and metadata.json.
- metadata.json is only ever replaced atomically (temp file, fsync, rename, fsync dir).
- Every path component comes from `sanitize_component`; a model id is exactly three such
  components, so no id can point outside the root.
- Destinations are chosen and claimed under the commit lock (an flock), never by checking
  first and writing later without it (`modelimport.locks`: flock, or LockFileEx on Windows).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelimport.errors import LibraryError, ModelNotFound
from modelimport.library.contained import (
    OutsideLibrary,
    inside,
    own_folder,
    planted_file_problem,
    planted_folder_problem,
)
from modelimport.locks import try_lock, unlock_and_close
from modelimport.names import sanitize_component

METADATA_NAME = "metadata.json"
SCHEMA_VERSION = 1
META_DIR = ".modelimport"


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON so readers see the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            # ASCII with \u escapes: a file name that is not UTF-8 (lone surrogates from
            # os.fsdecode) is written as \udcXX and json.loads gives the very same str back.
            json.dump(data, fh, indent=2, sort_keys=False, default=str, ensure_ascii=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
            # mkstemp makes the file 0600; a record is as readable as the model beside it.
            if hasattr(os, "fchmod"):  # not on Windows before Python 3.13 (no modes there)
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@functools.cache
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def is_within(path: Path | str, root: Path) -> bool:
    """Does `path`, its links followed, lead to `root` or below it? (False if it cannot be
    resolved.) What keeps the library's own files from being taken as new sources, deleted
    as originals, or made an app's folder."""
    try:
        target, base = Path(path).resolve(), root.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return False
    return target == base or base in target.parents


def fsync_dir(path: Path) -> None:
    """Make the names in `path` (a rename, a new file) durable. Windows has no O_DIRECTORY and
    cannot open a folder as a file: there NTFS's journal keeps a rename whole or undone (it
    may reach the disk a moment later), which is all the invariants need."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_model_id(model_type: str, family: str, slug: str) -> str:
    return "/".join(
        (
            sanitize_component(model_type.lower(), "unknown"),
            sanitize_component(family.lower(), "unknown"),
            sanitize_component(slug, "model"),
        )
    )


def validate_model_id(model_id: str) -> str:
    # Ids hold NFC text (see sanitize_component); a terminal may hand us another form.
    parts = unicodedata.normalize("NFC", model_id).strip("/").split("/")
    if len(parts) != 3 or any(sanitize_component(p, "") != p for p in parts):
        raise ModelNotFound(f"{model_id!r} is not a model id (expected type/family/slug).")
    return "/".join(parts)


class Library:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta_dir = root / META_DIR
        self.staging_dir = self.meta_dir / "staging"
        self.index_path = self.meta_dir / "index.sqlite"

    def ensure(self) -> Library:
        """Create the library folders; a person-readable error if that is impossible."""
        try:
            # Path.exists raises (not False) when a folder above the root cannot be entered.
            if self.root.exists() and not self.root.is_dir():
                raise LibraryError(f"The library path {self.root} is not a folder.")
            if os.path.lexists(self.meta_dir) and not own_folder(self.meta_dir):
                # Everything the library keeps (index, locks, staging) would go through it.
                raise OutsideLibrary(planted_folder_problem(self.meta_dir))
            if not os.path.lexists(self.staging_dir):  # a link there: recovery reports it
                self.staging_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise LibraryError(f"The library path {self.root} is not a folder.") from exc
        except PermissionError as exc:
            raise LibraryError(
                f"Permission denied creating or entering the library at {self.root} "
                f"({exc.filename or self.root} cannot be written or entered)."
            ) from exc
        except OSError as exc:
            raise LibraryError(
                f"Cannot create the library at {self.root}: {exc.strerror or exc}."
            ) from exc
        if not os.access(self.meta_dir, os.W_OK):
            raise LibraryError(f"The library at {self.root} is not writable.")
        return self

    @property
    def exists(self) -> bool:
        return self.meta_dir.is_dir()

    @property
    def writable(self) -> bool:
        """Whether this process may change the library (a read-only mount, another user's
        library): commands that only read still work on one that is not."""
        if not os.access(self.meta_dir, os.W_OK):
            return False
        return not self.index_path.exists() or os.access(self.index_path, os.W_OK)

    def model_dir(self, model_id: str) -> Path:
        # Ids come from the index and from records, which anyone who can write the library
        # can edit: a type or family folder made a link is refused (OutsideLibrary).
        return inside(self.root, validate_model_id(model_id), "the library")

    def metadata_path(self, model_id: str) -> Path:
        return self.model_dir(model_id) / METADATA_NAME

    def read_metadata(self, model_id: str) -> dict[str, Any]:
        path = self.metadata_path(model_id)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelNotFound(f"No model {model_id} in the library at {self.root}.") from exc
        except (OSError, ValueError) as exc:
            raise LibraryError(f"The metadata of {model_id} cannot be read: {exc}.") from exc

    def write_metadata(self, model_id: str, data: dict[str, Any]) -> None:
        write_json_atomic(self.metadata_path(model_id), data)

    def iter_metadata_paths(self) -> Iterator[Path]:
        """Every `<type>/<family>/<slug>/metadata.json`, found by listing three levels."""
        for type_dir in _subdirs(self.root):
            if type_dir.name == META_DIR:
                continue
            for family_dir in _subdirs(type_dir):
                for model_dir in _subdirs(family_dir):
                    meta = model_dir / METADATA_NAME
                    if meta.is_file():
                        yield meta

    def model_id_of(self, metadata_path: Path) -> str:
        return metadata_path.parent.relative_to(self.root).as_posix()

    @contextlib.contextmanager
    def lock(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """Exclusive lock on `.modelimport/<name>.lock`; yields False if non-blocking and busy."""
        path = self.meta_dir / f"{name}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)  # a planted link: ELOOP
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutsideLibrary(planted_file_problem(path)) from exc
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A read-only library: a lock works on a descriptor opened for reading, and a
            # lock file nobody could create is a lock nobody holds.
            try:
                fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
            except FileNotFoundError:
                yield True
                return
        try:
            yield try_lock(fd, path, blocking)
        finally:
            unlock_and_close(fd)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a lock file is never opened through a link


def _subdirs(path: Path) -> Iterator[Path]:
    try:
        with os.scandir(path) as it:
            entries = [e for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        yield Path(entry.path)
