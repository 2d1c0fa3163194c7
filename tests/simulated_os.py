"""Run the modelimport CLI on this Linux machine as if it ran on Windows, as far as one process
can tell: what Windows lacks is taken away, what Windows refuses is refused.

    python tests/simulated_os.py SIMULATION modelimport-arguments...

SIMULATION is a JSON object (or just "windows"); tests/cli.py passes
MODELIMPORT_TEST_SIMULATE here, so `MODELIMPORT_TEST_SIMULATE=windows pytest` runs every
test that starts the CLI under it. Keys:

- "system": "windows" takes away `fcntl` (sys.modules["fcntl"] = None: no flock, no FICLONE
  ioctl, no O_DIRECT switch), os.O_DIRECT, os.O_DIRECTORY and os.posix_fadvise, and makes
  os.symlink fail as Windows without Developer Mode does: OSError winerror 1314, errno
  EINVAL (CPython's PC/errmap.h maps 1314 to its default, EINVAL). os.fchmod stays
  (Windows has it from Python 3.13; without fcntl, filelock's soft lock, which stands in
  here for its Windows lock in huggingface_hub, needs it); tests/test_portable.py covers
  the library without it.
- "links": false also refuses hard links (EPERM), as exFAT and FAT do; true (the default)
  allows them, as NTFS does.
- "held_open": paths another program holds open (ComfyUI with the model loaded): renaming or
  deleting one fails with winerror 32 (sharing violation), renaming a folder that holds one
  with winerror 5 (access denied), both PermissionError (errno EACCES), as on Windows; and
  `modelimport.locks.held_open_elsewhere`, which asks Windows itself, says they are held
  (unless "probe" is false: then only the renames and deletes themselves refuse).

With `fcntl` gone, filelock's lock on a descriptor would have no primitive at all; on
Windows it uses LockFileEx, a lock that belongs to the open handle and that the system drops
when the process dies. libc's flock (through ctypes, not fcntl) has exactly those properties
and stands in for it. With "report" as the only argument, the process prints what it can do
(JSON) instead of running the CLI.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import warnings


def _take_away_posix_only() -> None:
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # `import fcntl` raises ImportError
    for name in ("O_DIRECT", "O_DIRECTORY", "posix_fadvise"):
        if hasattr(os, name):
            delattr(os, name)
    # filelock warns at import when it has no flock; on Windows it never does.
    warnings.filterwarnings("ignore", message="only soft file lock is available")

    import ctypes

    import filelock._native._descriptor as descriptor

    libc = ctypes.CDLL(None, use_errno=True)
    lock_ex, lock_nb, lock_un = 2, 4, 8  # sys/file.h

    def lock_fd_nonblocking(fd: int) -> bool:
        if libc.flock(fd, lock_ex | lock_nb) == 0:
            return True
        if ctypes.get_errno() in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def unlock_fd(fd: int) -> None:
        libc.flock(fd, lock_un)

    descriptor.lock_fd_nonblocking = lock_fd_nonblocking
    descriptor.unlock_fd = unlock_fd


def _refuse_symlinks() -> None:
    def symlink(src: object, dst: object, target_is_directory: bool = False, **kw: object):
        exc = OSError(errno.EINVAL, "A required privilege is not held by the client", str(src))
        exc.winerror = 1314  # type: ignore[attr-defined]
        raise exc

    os.symlink = symlink


def _refuse_hard_links() -> None:
    def link(src: object, dst: object, **kw: object):
        raise OSError(errno.EPERM, "Operation not permitted", str(dst))

    os.link = link


def _hold_open(held: list[str], probe: bool) -> None:
    """Renames and deletes of a held file (or of a folder holding one) fail as on Windows."""
    held_paths = [os.path.abspath(p) for p in held]
    real = {name: getattr(os, name) for name in ("rename", "replace", "unlink", "remove", "rmdir")}

    def check(path: object) -> None:
        path = os.path.abspath(os.fsdecode(path))
        for h in held_paths:
            if h == path:
                exc = PermissionError(errno.EACCES, "The process cannot access the file "
                                      "because it is being used by another process", path)
                exc.winerror = 32  # type: ignore[attr-defined]
                raise exc
            if h.startswith(path + os.sep):
                exc = PermissionError(errno.EACCES, "Access is denied", path)
                exc.winerror = 5  # type: ignore[attr-defined]
                raise exc

    def guarded(name: str):
        def call(path: object, *args: object, **kw: object):
            check(path)
            return real[name](path, *args, **kw)

        return call

    for name in real:
        setattr(os, name, guarded(name))
    if not probe:
        return
    # What modelimport asks Windows before deleting (CreateFileW for DELETE) answers the same.
    import modelimport.locks

    modelimport.locks.held_open_elsewhere = lambda path: os.path.abspath(path) in held_paths


def _report() -> dict[str, object]:
    import tempfile

    try:
        import fcntl  # noqa: F401

        fcntl_ok = True
    except ImportError:
        fcntl_ok = False
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "t")
        open(target, "w").close()
        outcomes = {}
        for name in ("symlink", "link"):
            try:
                getattr(os, name)(target, os.path.join(tmp, name))
                outcomes[name] = "made"
            except OSError as exc:
                outcomes[name] = f"errno {exc.errno} winerror {getattr(exc, 'winerror', None)}"
    return {"fcntl": fcntl_ok, "O_DIRECT": hasattr(os, "O_DIRECT"), **outcomes}


def main() -> None:
    spec = sys.argv[1]
    simulation = {"system": spec} if not spec.startswith("{") else json.loads(spec)
    if simulation.get("system") == "windows":
        _take_away_posix_only()
        _refuse_symlinks()
    if simulation.get("links") is False:
        _refuse_hard_links()
    if simulation.get("held_open"):
        _hold_open(simulation["held_open"], simulation.get("probe", True))
    if sys.argv[2:] == ["report"]:
        print(json.dumps(_report()))
        return
    sys.argv = ["modelimport", *sys.argv[2:]]
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # the tests folder: nothing of it belongs in the CLI's process
    from modelimport.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
