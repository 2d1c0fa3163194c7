"""Staging transactions: the journal that makes an import all-or-nothing, and its recovery.

Each model imports in its own transaction directory `staging/<txn>/`:
    journal.json   intent log: mode, sources, where each staged file came from, destination
    lock           locked by the live process for the life of the transaction (flock, or
                   LockFileEx on Windows: freed by the system when the process dies)
    model/         the model directory being assembled; renamed into the library to commit

Invariants:
- A journal entry is written before the action it describes (a rename-move, the commit
  rename), so recovery can always tell what happened by looking at which paths exist.
- A source file is never deleted before its model is committed; a rename-moved source is
  renamed back to its path when its transaction is rolled back.
- Recovery only touches transactions whose lock is free (their process is dead), and never
  mutates a library model directory: a committed model is only (re)indexed. The one
  exception is an add-files transaction (`ADD_FILES`, used by downloads) that died before its
  commit point: it removes exactly the files its journal says it placed into the model and
  metadata.json does not list, so the model is as it was before.
- A bundle's files are staged at their relative paths (`model/<dir>/<file>`); rolling back
  recreates a source folder if it has gone, so a moved tree always goes back whole. Its
  source folders are removed only once emptied and only after the commit (`source_root`
  in the journal lets recovery finish that for a move that died after committing).

Add-files transactions (mode ADD_FILES) complete an existing model in place:
    journal.json   + `target` (model id), `placements` [{staged, dest}], `created_dirs`
    files/         the new files, verified; metadata.json the record that lists them
The commit point is the atomic replace of the model's metadata.json by the staged one, which
carries `amend_txn` = this transaction's id; files are renamed into the model before it.
- A removal (`library.removal`, mode REMOVE) renames the model directory into its
  transaction's `model/` first; recovery finishes it only if that rename happened (the
  index rows are forgotten, kept files moved out, the rest deleted), else just drops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.faults import fault_point
from modelimport.library.contained import (
    OutsideLibrary,
    inside,
    model_file,
    name_parts,
    open_inside,
    own_folder,
    planted_folder_problem,
)
from modelimport.library.layout import (
    METADATA_NAME,
    Library,
    fsync_dir,
    validate_model_id,
    write_json_atomic,
)
from modelimport.locks import try_lock, unlock_and_close

JOURNAL = "journal.json"
ADD_FILES = "add-files"
REMOVE = "remove"  # library.removal: a model leaving the library


@dataclass
class StagingTxn:
    library: Library
    txn_id: str
    path: Path
    mode: str
    lock_fd: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    dest: str | None = None
    state: str = "staging"
    extra: dict[str, Any] = field(default_factory=dict)  # journal keys of other kinds of txn
    source_root: str | None = None  # a bundle's folder, pruned once a move has emptied it

    @property
    def model_path(self) -> Path:
        return self.path / "model"

    def save(self) -> None:
        write_json_atomic(
            self.path / JOURNAL,
            {
                "txn": self.txn_id,
                "pid": os.getpid(),
                "mode": self.mode,
                "state": self.state,
                "dest": self.dest,
                "source_root": self.source_root,
                "entries": self.entries,
                **self.extra,
            },
        )

    def record(self, source: Path, staged_name: str, moved: bool) -> None:
        """Log where a staged file came from; written before a rename-move happens."""
        self.entries.append({"source": str(source), "staged": staged_name, "moved": moved})
        if moved:
            # Only a rename-move leaves something recovery must undo (the source is gone);
            # a copied file just disappears with the staging directory, so its entry is
            # written with the next save (the commit's) and costs no fsync of its own.
            self.save()

    @property
    def committed_on_disk(self) -> bool:
        """The model directory has been renamed into the library (only indexing may remain)."""
        return self.state == "committing" and not self.model_path.exists()

    def release(self) -> None:
        """Let go of a committed transaction whose indexing did not happen: the journal stays,
        so the next command's recovery indexes the model (see `recover`)."""
        if self.lock_fd >= 0:
            unlock_and_close(self.lock_fd)
            self.lock_fd = -1

    def close(self) -> None:
        """Forget the transaction: remove what is left of its directory and release the lock."""
        if self.lock_fd < 0:
            return
        remove_txn_dir(self.path, self.lock_fd)
        self.lock_fd = -1


def remove_txn_dir(path: Path, lock_fd: int) -> None:
    """Remove a transaction's directory, closing its lock file before deleting it: an open
    file cannot be deleted on Windows, and on FUSE filesystems (exFAT, NTFS) it becomes a
    `.fuse_hidden` file that keeps the directory from going. Everything else goes first,
    under the lock; a recovery that takes the lock in between finds no journal and nothing
    staged, and removes what is left (a folder holding only a lock is inert)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.name == "lock":
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    unlock_and_close(lock_fd)
    shutil.rmtree(path, ignore_errors=True)


def begin(library: Library, mode: str) -> StagingTxn:
    for folder in (library.meta_dir, library.staging_dir):
        # A link planted in place of our own folder would stage the model outside the library.
        if os.path.lexists(folder) and not own_folder(folder):
            raise OutsideLibrary(planted_folder_problem(folder))
    txn_id = uuid.uuid4().hex[:16]
    path = library.staging_dir / txn_id
    path.mkdir(parents=True)
    lock_fd = -1
    try:
        lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try_lock(lock_fd, path / "lock")
        txn = StagingTxn(library, txn_id, path, mode, lock_fd)
        (path / "model").mkdir()
        fault_point("staging.begin")
        txn.save()
    except BaseException:
        # Nothing is staged yet (a full disk, most likely): leave no trace.
        if lock_fd >= 0:
            remove_txn_dir(path, lock_fd)
        else:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return txn


def rollback(txn: StagingTxn) -> None:
    """Undo an uncommitted transaction of this process: moved sources go back first."""
    _restore_moved_sources(txn.path, txn.entries)
    txn.close()


def _restore_moved_sources(path: Path, entries: list[dict[str, Any]]) -> list[str]:
    problems = []
    for entry in entries:
        if not entry.get("moved"):
            continue
        # The journal is as untrusted as any file in the library: its names stay inside the
        # transaction, and a source is an absolute path.
        staged = inside(path / "model", entry.get("staged"), f"the journal of {path}")
        source = _source_path(entry.get("source"))
        if os.path.lexists(staged):
            if os.path.lexists(source):  # a link counts: the rename would replace it too
                problems.append(f"{source} exists again; the moved copy stays at {staged}")
                continue
            source.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, source)
            fsync_dir(source.parent)
            fault_point("recover.source_back")
    return problems


def _source_path(raw: Any) -> Path:
    """A journal's `source`: where a moved file goes back to, always an absolute path (what
    `record` writes). It may be inside the library: `check --repair` adopts a stray file
    there by moving it."""
    if not isinstance(raw, str) or not os.path.isabs(raw) or "\x00" in raw:
        raise OutsideLibrary(f"The journal names {raw!r} as a source, which no import writes.")
    return Path(raw)


@dataclass(frozen=True)
class RecoveryReport:
    rolled_back: int = 0
    completed: int = 0
    restored_sources: int = 0
    problems: tuple[str, ...] = ()


def recover(library: Library, reindex: Any, forget: Any = None) -> RecoveryReport:
    """Roll back or finish every transaction whose process died.

    `reindex(model_id)` indexes a model that was committed to disk but not yet indexed;
    `forget(model_id)` drops the index rows of a model whose removal was under way.
    A transaction that cannot be recovered (an unreadable journal, a model the index refuses)
    is left as it is and reported as a problem: recovery runs before every command, so one
    odd transaction must never stop the others, nor the command.
    """
    if not os.path.lexists(library.staging_dir):
        return RecoveryReport()
    for folder in (library.meta_dir, library.staging_dir):
        if not own_folder(folder):
            return RecoveryReport(problems=(planted_folder_problem(folder),))
    rolled_back = completed = restored = 0
    problems: list[str] = []
    for path in _transactions(library.staging_dir, problems):
        lock_path = path / "lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | _NOFOLLOW)
        except FileNotFoundError:
            # Crashed between mkdir and lock creation: nothing was staged yet.
            if not any(path.iterdir()):
                path.rmdir()
            else:
                problems.append(_not_ours(path, "it has no lock file"))
            continue
        except OSError as exc:
            problems.append(_not_ours(path, f"its lock file cannot be opened: {_reason(exc)}"))
            continue
        locked = False
        try:
            if not try_lock(fd, lock_path, blocking=False):
                continue  # a live process owns it
            locked = True
            try:
                _check_shape(path)
                journal = _read_journal(path)
                fault_point("recover.txn")
                if journal.get("mode") == ADD_FILES:
                    if _recover_added_files(library, path, journal):
                        reindex(journal["target"])
                        completed += 1
                    else:
                        rolled_back += 1
                    remove_txn_dir(path, fd)
                    fd = -1
                    continue
                if journal.get("mode") == REMOVE:
                    if _finish_removal(path, journal, forget):
                        completed += 1
                    else:
                        rolled_back += 1
                    remove_txn_dir(path, fd)
                    fd = -1
                    continue
                dest = journal.get("dest")
                if dest is not None:
                    dest = validate_model_id(str(dest))
                committed = (
                    dest is not None
                    and not os.path.lexists(path / "model")
                    and _committed_by(library, dest, journal.get("txn"))
                )
                if committed:
                    reindex(dest)
                    fault_point("recover.reindexed")
                    completed += 1
                    if journal.get("mode") == "move":
                        _finish_move(library, dest, journal)
                else:
                    moved = [e for e in journal.get("entries", []) if e.get("moved")]
                    txn_problems = _restore_moved_sources(path, journal.get("entries", []))
                    fault_point("recover.restored")
                    if txn_problems:
                        # Keep the directory: it still holds the only copy of a moved file.
                        problems += txn_problems
                        continue
                    restored += len(moved)
                    rolled_back += 1
            except Exception as exc:  # whatever it is, it is this transaction's alone
                problems.append(
                    f"The interrupted import in {path} could not be recovered "
                    f"({_reason(exc).rstrip('.')}); it is left as it is and tried again by the "
                    "next command."
                )
                continue
            remove_txn_dir(path, fd)
            fd = -1
        finally:
            if fd >= 0:
                unlock_and_close(fd)
            if locked:
                _drop_if_only_lock(path)
    return RecoveryReport(rolled_back, completed, restored, tuple(problems))


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _transactions(staging_dir: Path, problems: list[str]) -> list[Path]:
    """The transaction folders in staging; anything else there (a link, a file) was not made
    by an import: reported and left alone."""
    found = []
    with os.scandir(staging_dir) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                found.append(Path(entry.path))
            else:
                problems.append(_not_ours(Path(entry.path), "it is not a folder"))
    return sorted(found)


def _check_shape(path: Path) -> None:
    """A transaction holds what `begin` made: a regular journal and lock, a real `model`
    folder. A link in their place is never followed (OutsideLibrary, reported by recover)."""
    for name, is_dir in ((JOURNAL, False), ("lock", False), ("model", True)):
        try:
            mode = os.lstat(path / name).st_mode
        except FileNotFoundError:
            continue
        if not (stat.S_ISDIR(mode) if is_dir else stat.S_ISREG(mode)):
            raise OutsideLibrary(
                f"{path / name} is not what modelimport wrote there (a symbolic link?)"
            )


def _not_ours(path: Path, why: str) -> str:
    return f"{path} is not an import modelimport started ({why}); it is left as it is."


def _drop_if_only_lock(path: Path) -> None:
    """Where the system refused to delete the lock file while it was open (Windows), the
    folder is left with the lock alone once it is closed: remove that too."""
    with contextlib.suppress(OSError):
        if os.listdir(path) == ["lock"]:
            shutil.rmtree(path, ignore_errors=True)


def undo_added_files(txn: StagingTxn) -> None:
    """Take back the files an add-files transaction of this process placed before it failed
    (its commit point not reached): the model is as it was."""
    journal = {"txn": txn.txn_id, "state": txn.state, **txn.extra}
    _recover_added_files(txn.library, txn.path, journal)


def _recover_added_files(library: Library, path: Path, journal: dict[str, Any]) -> bool:
    """Finish (True: only indexing was left) or undo an add-files transaction that died."""
    target = journal.get("target")
    if journal.get("state") != "committing" or not isinstance(target, str):
        return False  # nothing was placed into the model yet
    model_dir = inside(library.root, validate_model_id(target), f"the journal of {path}")
    try:
        record = _read_record(library, target)
    except FileNotFoundError:
        return False  # the model is gone; what was placed into it went with it
    if record.get("amend_txn") == journal.get("txn"):
        return True
    listed = {f.get("name") for f in record.get("files") or [] if isinstance(f, dict)}
    for placement in journal.get("placements") or []:
        dest = placement.get("dest")
        if name_parts(dest) is None or dest in listed:
            continue
        placed = inside(model_dir, dest, f"the journal of {path}")
        if os.path.lexists(placed):
            os.unlink(placed)
    for created in reversed(journal.get("created_dirs") or []):
        if name_parts(created) is not None:
            # not empty or gone: then it is not ours to remove
            with contextlib.suppress(OSError):
                inside(model_dir, created, f"the journal of {path}").rmdir()
    fsync_dir(model_dir)
    return False


def _read_record(library: Library, model_id: str) -> dict[str, Any]:
    """A model's metadata.json, read without following a link (FileNotFoundError if gone)."""
    fd = open_inside(library.root, f"{validate_model_id(model_id)}/{METADATA_NAME}")
    with os.fdopen(fd, encoding="utf-8") as fh:
        record = json.load(fh)
    if not isinstance(record, dict):
        raise ValueError(f"the metadata.json of {model_id} is not a JSON object")
    return record


def _finish_removal(path: Path, journal: dict[str, Any], forget: Any) -> bool:
    """Complete a removal whose process died after moving the model out of the library
    (True), or report that it never got that far (False: the model is untouched)."""
    from modelimport.library.removal import move_kept_files

    model = path / "model"
    if not own_folder(model) or not any(model.iterdir()):
        return False
    if isinstance(journal.get("removing"), str) and forget is not None:
        forget(journal["removing"])
    if journal.get("keep_to") is not None:
        move_kept_files(model, _source_path(journal["keep_to"]))
    return True


def _finish_move(library: Library, model_id: str, journal: dict[str, Any]) -> None:
    """A move that died after its commit: delete the sources it copied (across filesystems)
    that are still exactly as they were read (size and mtime in the record's `sources`;
    never a symlink), then remove the emptied folders of a bundle."""
    try:
        record = _read_record(library, model_id)
        as_read = {s["path"]: (s["size"], s["mtime_ns"]) for s in record.get("sources") or []}
        blake3_of = {f["name"]: f["blake3"] for f in record.get("files") or []}
    except (OSError, ValueError, KeyError, TypeError):
        return  # keeping a source is always safe
    entries = journal.get("entries", [])
    for entry in entries:
        with contextlib.suppress(OSError, ValueError, TypeError):
            source = _source_path(entry.get("source"))
            if entry.get("moved") or source.is_symlink():
                continue
            st = source.stat()
            if as_read.get(str(source)) == (st.st_size, st.st_mtime_ns) and _same_bytes(
                source, library, model_id, entry.get("staged"), blake3_of
            ):
                source.unlink()
    if journal.get("source_root"):
        prune_emptied_folders(entries, Path(journal["source_root"]))


def _same_bytes(
    source: Path, library: Library, model_id: str, staged: Any, blake3_of: dict[str, str]
) -> bool:
    """Does the library hold exactly `source`'s bytes as `staged`? Recovery deletes a source
    outside the library only then: the journal and the record are files anyone who can write
    the library could have written, and naming a file is no proof we copied it."""
    from modelimport.hashing import blake3_file

    copy = model_file(library.root, model_id, staged)
    if not copy.is_file() or copy.stat().st_size != source.stat().st_size:
        return False
    return blake3_file(source) == blake3_of.get(staged) == blake3_file(copy)


def prune_emptied_folders(entries: list[dict[str, Any]], root: Path) -> None:
    """After a bundle was moved: remove the folders under (and including) `root` that held
    its files and are now empty, deepest first. A folder that still holds anything (a file
    left out, something the person added) stays, and so does everything above it."""
    folders: set[Path] = set()
    for entry in entries:
        folder = Path(entry["source"]).parent
        while folder != root and root in folder.parents:
            folders.add(folder)
            folder = folder.parent
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or already gone: leave it
            os.rmdir(folder)
    with contextlib.suppress(OSError):
        os.rmdir(root)


def _read_journal(path: Path) -> dict[str, Any]:
    """The journal; {} for a transaction that died in `begin`, before it staged anything.

    Raises OSError or ValueError for a journal that cannot be read: guessing would risk
    deleting the only copy of a moved file.
    """
    try:
        with os.fdopen(open_inside(path, JOURNAL), encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        model = path / "model"
        if model.is_dir() and any(model.iterdir()):
            raise
        return {}
    journal = json.loads(text)
    if not isinstance(journal, dict):
        raise ValueError("the journal is not a JSON object")
    return journal


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _committed_by(library: Library, model_id: str, txn_id: str | None) -> bool:
    try:
        meta = _read_record(library, model_id)
    except (OSError, ValueError):
        return False
    return meta.get("import_txn") == txn_id
