"""Exception types the core raises; the CLI maps each to one sentence and an exit code.

Every error a person can cause is one of these, with a message that is a whole sentence.
Anything else reaching the CLI is a bug and is reported as such.
"""

from __future__ import annotations

import os
import sys


class ModelImportError(Exception):
    """Base class: `str(err)` is one sentence fit to show a person."""

    exit_code = 1


class UsageError(ModelImportError):
    """The command line asks for something impossible (bad option combination, no terminal)."""

    exit_code = 2


class InvalidModelFile(ModelImportError):
    """A file is not a model file we can import, or its header lies about itself."""


class UnreadableFile(InvalidModelFile):
    """A file that cannot be read (permission, I/O error): the import reports it as failed,
    not rejected, since nothing is known to be wrong with the file itself."""


class UnsafePickle(InvalidModelFile):
    """A pickle imports globals that could execute code when loaded."""


class SourceChanged(ModelImportError):
    """A source file changed while it was read (a download still running, an editor saving)."""


class IncompleteShardSet(ModelImportError):
    """A sharded set misses shards or disagrees about its total."""


class LibraryError(ModelImportError):
    """The library on disk is missing, unwritable or inconsistent."""


class ModelNotFound(LibraryError):
    """A model id names no model in the library."""


class NotEnoughSpace(LibraryError):
    """The library's filesystem cannot hold what a batch would write (checked before it)."""


class FileInUse(LibraryError):
    """Windows refused to move or delete a file because another program holds it open (ComfyUI
    with the model loaded): the operation stopped before changing anything."""


# What Windows answers when another program holds a file open: ERROR_SHARING_VIOLATION (32),
# ERROR_LOCK_VIOLATION (33); and ERROR_ACCESS_DENIED (5), which is also what renaming a
# folder gets while a file inside it is open.
_HELD_OPEN = {32, 33}
_ACCESS_DENIED = 5


def held_open(path: object) -> FileInUse:
    """The one sentence for a file Windows will not move or delete while another holds it."""
    return FileInUse(
        f"{path} is open in another program (ComfyUI, LM Studio, ...): Windows refuses to "
        "move or delete it until that program lets it go, so nothing was changed; close it "
        "there and try again."
    )


def raise_if_in_use(exc: OSError, path: object) -> None:
    """Raise FileInUse (one sentence) if `exc` is Windows refusing because `path`, or a file
    in it, is open in another program; return otherwise, for the caller to re-raise `exc`."""
    winerror = getattr(exc, "winerror", None)
    if winerror in _HELD_OPEN:
        raise held_open(path) from exc
    if winerror == _ACCESS_DENIED:
        raise FileInUse(
            f"Windows refused to move {path}: another program (ComfyUI, LM Studio, ...) may "
            "have one of its files open, or it is read-only, so nothing was changed; close "
            "that program and try again."
        ) from exc


def beyond_windows_path_limit(path: object) -> bool:
    """On Windows, whether `path` is longer than MAX_PATH (260 characters with its NUL), which
    Windows enforces unless long paths are turned on: Python declares itself long-path
    aware, so the limit goes once LongPathsEnabled is set. Library paths are not shortened
    for it (ids are the same on every system); an import that meets it says so."""
    if sys.platform != "win32" or not isinstance(path, str | bytes | os.PathLike):
        return False
    return len(os.fsdecode(path)) >= 260


class DiskFull(LibraryError):
    """The library's disk is full: nothing was changed, and what is there stays as it was."""


class LibraryBusy(LibraryError):
    """Another process holds the library's index for writing longer than we wait."""


class DamagedRecord(LibraryError):
    """A metadata.json whose shape is not a record's (a file name that is a number, ...)."""
