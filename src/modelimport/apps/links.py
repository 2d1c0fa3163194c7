"""Links on disk: what is at a link's path, and making, repairing and removing links.

Invariants:
- A path is only ever replaced or removed when it is ours: a symlink that dangles or points
  into the library at a path the registry lists, or a hard link that is the very file
  (same inode) it was made from. Anything else (a user's file, a symlink to elsewhere) is
  left untouched and reported.
- A new link never overwrites: `os.symlink` / `os.link` fail if the path exists. A repair
  makes the new link beside the old one and renames it over, so the path is never absent.
- Links are relative symlinks, so the library and its apps can move together (a disk
  mounted elsewhere, a home folder restored). Where symlinks are refused (Windows without
  Developer Mode, exFAT, some network shares), a file gets a hard link if the library is
  on the same filesystem, and a folder a directory junction on Windows (a folder cannot be
  hard-linked). Where neither can be made (another disk, exFAT, which has no links at all)
  `NoLinksPossible` says so; the app may still be served by its own config (`appconfig`).
- A hard link is ours only while it is the library file itself (same inode); a junction,
  like a symlink, only while it leads to the library.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from modelimport.faults import fault_point

# errno values meaning "this filesystem (or OS) does not do symlinks here".
NO_SYMLINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
if hasattr(errno, "ENOTSUP"):
    NO_SYMLINKS.add(errno.ENOTSUP)
# errno values of os.link meaning "no hard links on this filesystem" (exFAT: EPERM, FAT and
# some FUSE filesystems: ENOSYS or EOPNOTSUPP); EXDEV is "not on this filesystem".
NO_HARDLINKS = NO_SYMLINKS - {errno.EINVAL}
# Windows: "A required privilege is not held by the client": symlinks need Developer Mode
# or an administrator.
ERROR_PRIVILEGE_NOT_HELD = 1314
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003  # a junction (stat's constant exists on Windows only)


class LinkState(StrEnum):
    MISSING = "missing"  # nothing at the path
    OK = "ok"  # a link to exactly the target
    BROKEN = "broken"  # a symlink to nothing
    ELSEWHERE = "elsewhere"  # a symlink to some other existing file
    FOREIGN = "foreign"  # a real file or folder that is not the target


def is_junction(path: Path) -> bool:
    """A Windows directory junction (a reparse point of the mount-point kind); False
    elsewhere."""
    if sys.platform != "win32":
        return False
    isjunction = getattr(os.path, "isjunction", None)  # Python 3.12+
    if isjunction is not None:
        return bool(isjunction(path))
    try:
        tag = getattr(os.lstat(path), "st_reparse_tag", 0)
    except OSError:
        return False
    return tag == IO_REPARSE_TAG_MOUNT_POINT


def is_link(path: Path) -> bool:
    """A symlink or a junction: a name that leads elsewhere, not a file of its own."""
    return path.is_symlink() or is_junction(path)


def link_kind(path: Path) -> str:
    """How an existing link at `path` was made, as the registry records it."""
    if path.is_symlink():
        return "symlink"
    return "junction" if is_junction(path) else "hardlink"


def link_state(link_path: Path, target: Path) -> LinkState:
    if not os.path.lexists(link_path):
        return LinkState.MISSING
    if is_link(link_path):
        if not link_path.exists():
            return LinkState.BROKEN
        try:
            return LinkState.OK if os.path.samefile(link_path, target) else LinkState.ELSEWHERE
        except OSError:
            return LinkState.ELSEWHERE  # the target is gone: this cannot be its link
    try:
        same = os.path.samefile(link_path, target) and not link_path.is_dir()
    except OSError:
        same = False
    return LinkState.OK if same else LinkState.FOREIGN


def points_into(link_path: Path, root: Path) -> bool:
    """A symlink whose (resolved) destination is inside `root` (the library)."""
    try:
        destination = Path(os.path.realpath(link_path))
    except OSError:
        return False
    return destination == root or root in destination.parents


class LinkError(Exception):
    """A link could not be made; the message is a whole sentence."""


class NoLinksPossible(LinkError):
    """No kind of link can be made at this place: `reason` says why, in a clause."""

    def __init__(self, link_path: Path, reason: str) -> None:
        super().__init__(f"No links possible at {link_path.parent}: {reason}.")
        self.reason = reason


@dataclass(frozen=True)
class Made:
    kind: str  # symlink | hardlink | junction
    note: str = ""  # why not a symlink, for the report


def make_link(link_path: Path, target: Path, is_dir: bool) -> Made:
    """A relative symlink at `link_path` to `target` (never overwriting), or a hard link
    where symlinks cannot be made. Raises FileExistsError if the path is taken."""
    try:
        link_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LinkError(f"Cannot create the folder {link_path.parent}: {_why(exc)}.") from exc
    return _link_at(link_path, target, is_dir)


def replace_link(link_path: Path, target: Path, is_dir: bool) -> Made:
    """Make the link beside `link_path`, then rename it over: the path never disappears."""
    tmp = link_path.with_name(f".{link_path.name}.modelimport-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    made = _link_at(tmp, target, is_dir)
    try:
        if made.kind == "junction" and is_junction(link_path):
            # Windows renames nothing over a folder: the old junction goes first.
            remove_link(link_path)
        os.replace(tmp, link_path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise LinkError(f"Cannot replace {link_path}: {_why(exc)}.") from exc
    return made


def remove_link(link_path: Path) -> None:
    if is_junction(link_path):
        os.rmdir(link_path)  # removes the junction itself, never what it leads to
        return
    os.unlink(link_path)


def _link_at(link_path: Path, target: Path, is_dir: bool) -> Made:
    # Relative to the folder the link really lands in: an app's type folder may itself be a
    # link elsewhere (models/loras -> /data/loras), and the kernel resolves `..` from there.
    relative = os.path.relpath(target, os.path.realpath(link_path.parent))
    try:
        fault_point("apps.symlink")
        os.symlink(relative, link_path, target_is_directory=is_dir)
        if not _leads_to(link_path, target):
            # Whatever made it wrong (a folder on the way swapped meanwhile), a link that
            # leads elsewhere is not reported as made.
            os.unlink(link_path)
            raise LinkError(
                f"The link {link_path} would not lead to {target} (a folder on the way is "
                "a link that moved?); it was not made."
            )
        return Made("symlink")
    except FileExistsError:
        raise
    except OSError as exc:
        if not _symlinks_refused(exc):
            raise LinkError(f"Cannot create the link {link_path}: {_why(exc)}.") from exc
        refusal = _symlink_refusal(exc)
    if is_dir:
        return _junction_at(link_path, target, refusal)
    try:
        fault_point("apps.hardlink")
        os.link(target, link_path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise NoLinksPossible(
                link_path, f"symlinks are refused ({refusal}) and a hard link needs the "
                "library on the same filesystem, which it is not"
            ) from exc
        if exc.errno in NO_HARDLINKS:
            raise NoLinksPossible(
                link_path, f"symlinks are refused ({refusal}) and so are hard links "
                f"({_why(exc)}); exFAT and FAT disks have no links at all"
            ) from exc
        raise LinkError(f"Cannot create the link {link_path}: {_why(exc)}.") from exc
    return Made("hardlink", f"symlinks are refused there ({refusal}); hard link instead")


def _junction_at(link_path: Path, target: Path, refusal: str) -> Made:
    """A directory junction on Windows (needs no privilege, works across local volumes);
    elsewhere a folder cannot be linked without a symlink."""
    if sys.platform != "win32":
        raise NoLinksPossible(
            link_path, f"symlinks are refused ({refusal}) and a folder cannot be hard-linked"
        )
    import _winapi  # Windows only: CPython's own binding of CreateJunction

    try:
        _winapi.CreateJunction(str(target.absolute()), str(link_path))  # type: ignore[attr-defined]
    except FileExistsError:
        raise
    except OSError as exc:
        raise NoLinksPossible(
            link_path, f"symlinks are refused ({refusal}) and so is a junction ({_why(exc)})"
        ) from exc
    return Made("junction", f"symlinks are refused there ({refusal}); junction instead")


def _symlinks_refused(exc: OSError) -> bool:
    return exc.errno in NO_SYMLINKS or getattr(exc, "winerror", None) == ERROR_PRIVILEGE_NOT_HELD


def _symlink_refusal(exc: OSError) -> str:
    if getattr(exc, "winerror", None) == ERROR_PRIVILEGE_NOT_HELD:
        return "Windows allows symlinks only in Developer Mode or to administrators"
    return _why(exc)


def _leads_to(link_path: Path, target: Path) -> bool:
    try:
        return os.path.samefile(link_path, target)
    except OSError:
        return False


def _why(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
