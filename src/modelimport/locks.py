"""Locks on open files, the same on Linux, macOS and Windows (through filelock).

`filelock.lock_descriptor` locks a descriptor we own with the primitive its `FileLock` uses:
`flock` on Linux and macOS, `LockFileEx` on byte 0 on Windows. Both belong to the open
file, not to the path, and the system lets go of them when the process dies (SIGKILL,
TerminateProcess): a lock held by a dead process is free. That is what recovery relies on
("a transaction whose lock is free belongs to a dead process").

Nothing here imports `fcntl` or `msvcrt`: filelock picks what the system has. Also here:
whether another program holds a file open so that Windows would refuse to delete it.
"""

from __future__ import annotations

import contextlib
import os
import sys

import filelock

from modelimport.errors import LibraryError


def try_lock(fd: int, path: os.PathLike[str] | str, blocking: bool = True) -> bool:
    """Lock the open file `fd` exclusively; False if non-blocking and another holds it.

    A filesystem that offers no locks at all is one sentence, not a traceback: going on
    unlocked could let two imports claim the same destination.
    """
    try:
        return filelock.lock_descriptor(fd, blocking=blocking)
    except OSError as exc:
        raise LibraryError(
            f"Cannot lock {path}: this filesystem offers no file locks "
            f"({exc.strerror or exc}); put the library on a local disk."
        ) from exc


def unlock_and_close(fd: int) -> None:
    """Release a lock taken by `try_lock` and close its descriptor. Windows only promises to
    drop the lock of a closed handle "eventually", so it is released first."""
    try:
        with contextlib.suppress(OSError):  # not locked (a failed try): closing is enough
            filelock.unlock_descriptor(fd)
    finally:
        os.close(fd)


def held_open_elsewhere(path: os.PathLike[str] | str) -> bool:
    """Windows: whether another program holds `path` open in a way that forbids deleting it
    (ComfyUI with the model loaded, through the app's hard link too: the same file). Asked
    by opening it for DELETE while sharing everything: only a holder that does not share
    deleting makes that fail, with ERROR_SHARING_VIOLATION. Always False elsewhere, where an
    open file can be renamed and deleted. (Written from the CreateFileW documentation; our
    tests run on Linux.)"""
    if sys.platform != "win32":
        return False
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD,
                                     wintypes.LPVOID, wintypes.DWORD, wintypes.DWORD,
                                     wintypes.HANDLE]  # fmt: skip
    delete, share_all, open_existing = 0x00010000, 0x7, 3
    handle = kernel32.CreateFileW(os.fspath(path), delete, share_all, None, open_existing, 0, None)
    if handle is None or handle == wintypes.HANDLE(-1).value:
        return ctypes.get_last_error() in (32, 33)  # sharing or lock violation
    kernel32.CloseHandle(handle)
    return False
