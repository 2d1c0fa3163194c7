"""Fault injection for the crash and fault tests: named points in the pipeline that can be
told, through the environment, to hang (so a test can SIGKILL the process there) or fail.

    MODELIMPORT_FAULTS="copy.bytes>=67108864:hang,commit.after_rename:hang"

Each entry is `point[>=N]:action`, action `hang`, `pause` (like hang, but carries on once
the test deletes the marker file, so it can act on the files in between), `crash`
(os._exit(70)), `enospc` or `eacces` (raise the OSError a full disk or a denied permission
would), `eperm` or `exdev` (the OSError of a filesystem that refuses symlinks, or of a hard
link across filesystems), `dbfull` (raise the error SQLite gives when its disk is full).
A point that is not listed costs one dict lookup. The variable is read once per process;
it is for tests only.
"""

from __future__ import annotations

import errno
import os
import time
from functools import cache

ENV = "MODELIMPORT_FAULTS"


@cache
def _plan() -> dict[str, tuple[int, str]]:
    faults: dict[str, tuple[int, str]] = {}
    for entry in filter(None, (e.strip() for e in os.environ.get(ENV, "").split(","))):
        where, _, action = entry.rpartition(":")
        point, _, threshold = where.partition(">=")
        faults[point] = (int(threshold or 0), action)
    return faults


def fault_point(point: str, value: int = 0) -> None:
    """Trigger the fault configured for `point` once `value` reaches its threshold."""
    plan = _plan()
    if not plan or point not in plan:
        return
    threshold, action = plan[point]
    if value < threshold:
        return
    if action in ("hang", "pause"):
        marker = os.environ.get("MODELIMPORT_FAULT_MARKER")
        if marker:
            with open(marker, "w") as fh:
                fh.write(point)
        while action == "hang":
            # Short sleeps, as a busy process would be: the kernel may hand a Ctrl-C to any
            # thread, and only the main thread's next bytecode, not a long sleep, notices it.
            time.sleep(0.05)
        while marker and os.path.exists(marker):
            time.sleep(0.01)
        del plan[point]  # a pause happens once
        return
    if action == "crash":
        os._exit(70)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if action == "eacces":
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    if action == "eperm":
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))
    if action == "exdev":
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    if action == "dbfull":
        import sqlite3

        raise sqlite3.OperationalError("database or disk is full")
