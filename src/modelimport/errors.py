"""Exception types the core raises; the CLI maps each to one sentence and an exit code.

Every error a person can cause is one of these, with a message that is a whole sentence.
Anything else reaching the CLI is a bug and is reported as such.
"""

from __future__ import annotations


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


class DiskFull(LibraryError):
    """The library's disk is full: nothing was changed, and what is there stays as it was."""


class LibraryBusy(LibraryError):
    """Another process holds the library's index for writing longer than we wait."""


class DamagedRecord(LibraryError):
    """A metadata.json whose shape is not a record's (a file name that is a number, ...)."""
