"""The index's file on disk: opened only when it is the regular file modelimport made, and
what an SQLite error on it means for a person (full disk, busy, damaged).

Everything under `.modelimport/` may have been written by someone else. So:
- `index.sqlite` (and its `-wal`/`-shm`) must be regular files, never links: SQLite follows
  a link and would write our tables (and WAL mode) into whatever database it points at.
  The file is checked with lstat and opened with O_NOFOLLOW, and after SQLite has opened it
  the path must still be that same file (device and inode), or the connection is dropped.
- A non-empty index must be ours: SQLite's header carries our `application_id` (set by the
  index's migration 004); an index from before that step is recognised by its
  `schema_migrations` table. Anything else is another program's database, left alone.
- A zero-byte file is an index whose creating process died before its first write: SQLite
  treats it as a new empty database, and so do we (the open then finds the model folders it
  does not list: maintenance.reconcile_index).

Error kinds (`error_kind`): "busy" (another process holds the write lock), "full" (SQLite
says so, or an I/O error while the filesystem has no room: on a full tmpfs opening a WAL
index fails growing its -shm file with "disk I/O error"), "damaged" (SQLite's corrupt/not a
database, or our own quick_check), "io" (any other error, which a rebuild would not fix).
Only "damaged" may lead `rescan` to set the file aside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
from pathlib import Path

from modelimport.errors import LibraryError

APPLICATION_ID = 0x4D494D58  # "MIMX" in SQLite's header (offset 68): this file is our index
JOURNAL_SUFFIXES = ("-wal", "-shm", "-journal")
# Less free space than this on the index's filesystem turns an SQLite I/O error into "full":
# SQLite needs 32 KiB for a WAL index's -shm file and a few pages for any write.
FULL_BELOW_BYTES = 1 << 20


class NotOurIndex(LibraryError):
    """`index.sqlite` is a link, not a regular file, or another program's database."""


def inspect(path: Path) -> os.stat_result | None:
    """The index file's identity, or None if there is none yet. Raises NotOurIndex when
    it (or one of its journal files) is a link or not a regular file."""
    for extra in JOURNAL_SUFFIXES:
        side = path.with_name(path.name + extra)
        try:
            mode = os.lstat(side).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise NotOurIndex(
                f"{side} is {_what(mode)}, not a file modelimport made; it is left alone. "
                "Remove it, then `modelimport rescan` rebuilds the index from metadata.json."
            )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        with contextlib.suppress(OSError):
            mode = os.lstat(path).st_mode
            if not stat.S_ISREG(mode):
                raise NotOurIndex(_not_ours_sentence(path, _what(mode))) from exc
        raise
    try:
        found = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(found.st_mode):
        raise NotOurIndex(_not_ours_sentence(path, _what(found.st_mode)))
    return found


def ensure_same_file(path: Path, expected: os.stat_result | None) -> None:
    """After SQLite opened `path`: it is still the file `inspect` saw (nobody swapped a link
    in between). A new index (expected None) must now be a regular file."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        if expected is None:
            return  # SQLite creates the file on its first write
        raise NotOurIndex(f"{path} disappeared while it was being opened.") from None
    if not stat.S_ISREG(now.st_mode):
        raise NotOurIndex(_not_ours_sentence(path, _what(now.st_mode)))
    if expected is not None and (now.st_dev, now.st_ino) != (expected.st_dev, expected.st_ino):
        raise NotOurIndex(f"{path} was replaced while it was being opened; it is left alone.")


def ensure_ours(db: sqlite3.Connection, path: Path) -> None:
    """Raise NotOurIndex unless the open database is empty or modelimport's index."""
    if db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables or "schema_migrations" in tables:
        return  # new, or ours from before application_id (migration 004 stamps it)
    raise NotOurIndex(_not_ours_sentence(path, "another program's SQLite database"))


def _not_ours_sentence(path: Path, what: str) -> str:
    return (
        f"{path} is {what}, not the index modelimport made; it is left alone. Move it away, "
        "then `modelimport rescan` rebuilds the index from metadata.json."
    )


def _what(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def error_kind(exc: BaseException, path: Path | None) -> str:
    """What an SQLite error on the index at `path` means: busy, full, damaged or io (an I/O
    error counts as full only when the filesystem of `path` is out of space)."""
    if isinstance(exc, NotOurIndex):
        return "not_ours"
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "busy"
    if name == "SQLITE_FULL" or "database or disk is full" in text:
        return "full"
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        return "full" if path is not None and is_disk_full(path) else "io"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or not name:
        # No code: our own quick_check verdict, or a message SQLite gives for a bad file.
        return "damaged"
    return "io"


def is_disk_full(path: Path) -> bool:
    """Is the filesystem holding `path` (or its nearest existing folder) out of space?"""
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free < FULL_BELOW_BYTES
        except OSError:
            continue
    return False


def holder(path: Path) -> str | None:
    """Which process holds the index's write lock, as "process 1234 (modelimport remove
    ...)", when the system tells (Linux /proc/locks); None otherwise. SQLite locks bytes of
    the database file, or in WAL mode of its -shm file."""
    inodes = set()
    for extra in ("", "-shm"):
        with contextlib.suppress(OSError):
            inodes.add(os.stat(path.with_name(path.name + extra)).st_ino)
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    me = os.getpid()
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120" ("->" marks a waiter)
        if "->" in fields or len(fields) < 6 or fields[3] != "WRITE":
            continue
        pid_text, where = fields[4], fields[5]
        inode = where.rsplit(":", 1)[-1]
        if not inode.isdigit() or int(inode) not in inodes or not pid_text.isdigit():
            continue
        if int(pid_text) != me:
            return f"process {pid_text}{_command_of(int(pid_text))}"
    return None


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if not words:
        return ""
    # `python -m modelimport ...` or the console script: show from the program name on.
    for i, word in enumerate(words):
        if Path(word).name == "modelimport" or word == "modelimport":
            words = ["modelimport", *words[i + 1 :]]
            break
    text = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    text = "".join(c if c.isprintable() else "?" for c in text)
    return f" ({text[:80]}{'…' if len(text) > 80 else ''})"


def set_aside(path: Path, suffix: str) -> Path:
    """Rename an index that cannot be used (damaged, a link, another program's database) and
    its journal files out of the way, keeping them for a look. A link is renamed itself,
    never followed."""
    kept = path.with_name(f"{path.name}.{suffix}")
    for extra in ("", *JOURNAL_SUFFIXES):
        source = path.with_name(path.name + extra)
        if os.path.lexists(source):
            os.replace(source, kept.with_name(kept.name + extra))  # over an older one, anywhere
    return kept


def as_library_error(exc: BaseException, path: Path, root: Path) -> LibraryError:
    """The one sentence a person reads for an error on the index at `path`."""
    kind = error_kind(exc, path)
    if kind == "not_ours":
        assert isinstance(exc, LibraryError)
        return exc
    if kind == "busy":
        return busy_error(path)
    if kind == "full":
        return disk_full_error(root)
    if kind == "damaged":
        return LibraryError(
            f"The index at {path} is damaged ({exc}); run `modelimport rescan` to rebuild it "
            "from metadata.json (the damaged file is kept aside)."
        )
    return LibraryError(
        f"The index at {path} cannot be used ({exc}); nothing was changed (check the disk: "
        "rebuilding the index would not help)."
    )


def busy_error(path: Path) -> LibraryError:
    from modelimport.errors import LibraryBusy

    who = holder(path) or "another process"
    return LibraryBusy(
        f"The library is busy: {who} holds its index at {path}; nothing was changed, try "
        "again when it has finished."
    )


def disk_full_error(root: Path) -> LibraryError:
    from modelimport.errors import DiskFull

    return DiskFull(
        f"The disk holding the library at {root} is full; nothing was changed: free some "
        "space and run the command again."
    )
