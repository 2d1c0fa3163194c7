"""Which filesystem a library lives on, and whether it is a network one.

SQLite's WAL mode keeps its index of the log in shared memory (the -shm file, mmapped),
which processes on two machines cannot share: on NFS, SMB/CIFS or sshfs a WAL index can
be corrupted or refuse to open. On those the index uses the rollback journal (DELETE) with
full syncs, which relies only on the file locks those filesystems provide. Known as data:
the fstype names Linux shows in /proc/mounts.
"""

from __future__ import annotations

import os
from pathlib import Path

NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.s3fs",
    "fuse.rclone", "fuse.gcsfuse", "davfs", "fuse.davfs2",
}  # fmt: skip


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash in paths as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The fstype of the mount holding `path` (the longest mount point above it), or None
    where /proc/mounts cannot be read (not Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target = _existing_ancestor(path)
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):  # later mounts shadow earlier
            best = (len(point), fields[2])
    return best[1] if best else None


def _existing_ancestor(path: Path) -> str:
    """The real path of `path`, or of its nearest existing parent (a library not created yet
    will live on its parent's filesystem)."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        if os.path.exists(candidate):  # never raises, unlike Path.exists
            return os.path.realpath(candidate)
    return "/"


def is_network(fstype: str | None) -> bool:
    return fstype is not None and fstype.lower() in NETWORK_FILESYSTEMS
