"""A source is imported only as it was reviewed: the same file, unchanged, no link swapped in.

Between the plan (what the person reviews: names, types, the pickle verdict) and the copy, a
source path can be replaced: by a symlink to a private file, by another file renamed over
it. Each source's identity is taken when it is collected, before its contents are read
(`stamp_source`), and checked again when it is opened for the copy (`open_as_reviewed`),
on the open descriptor itself, so nothing can be swapped in between the check and the read:
- not a symlink unless it was one when collected (then opened through it, and its target
  must be the same file);
- the same device and inode, size and mtime.
Anything else refuses that model in one sentence (SourceChanged); the batch goes on.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from modelimport.errors import SourceChanged


@dataclass(frozen=True)
class SourceStamp:
    """What a source was when collected: the file behind the path, and whether the path
    itself was a symlink."""

    is_link: bool
    dev: int
    ino: int
    size: int
    mtime_ns: int

    def same_file(self, st: os.stat_result) -> bool:
        return (self.dev, self.ino, self.size, self.mtime_ns) == (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        )


def stamp_source(path: Path) -> SourceStamp:
    st = os.stat(path)
    return SourceStamp(
        is_link=os.path.islink(path),
        dev=st.st_dev,
        ino=st.st_ino,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )


def replaced(path: Path) -> SourceChanged:
    return SourceChanged(
        f"{path.name} was replaced or changed after it was reviewed; nothing was imported "
        "from it (run the import again to review it as it is now)."
    )


def open_as_reviewed(path: Path, reviewed: SourceStamp) -> int:
    """A read-only descriptor for `path`, refused (SourceChanged) unless it is still the file
    that was reviewed. The caller reads from this descriptor and closes it."""
    changed = replaced(path)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    if not reviewed.is_link:
        flags |= getattr(os, "O_NOFOLLOW", 0)  # a link swapped in: ELOOP, refused below
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode) and not reviewed.is_link:
            raise changed
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise changed from exc
        raise
    if not reviewed.same_file(os.fstat(fd)):
        os.close(fd)
        raise changed
    return fd
