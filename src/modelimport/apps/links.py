"""Links on disk: what is at a link's path, and making, repairing and removing links.

Invariants:
- A path is only ever replaced or removed when it is ours: a symlink that dangles or points
  into the library at a path the registry lists, or a hard link that is the very file
  (same inode) it was made from. Anything else (a user's file, a symlink to elsewhere) is
  left untouched and reported.
- A new link never overwrites: `os.symlink` / `os.link` fail if the path exists. A repair
  makes the new link beside the old one and renames it over, so the path is never absent.
- Links are relative symlinks, so the library and its apps can move together (a disk
  mounted elsewhere, a home folder restored). Where a filesystem refuses symlinks (exFAT,
  some network shares, Windows without the right), a hard link is made instead if the
  library is on the same filesystem; a folder cannot be hard-linked.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from modelimport.faults import fault_point

# errno values meaning "this filesystem (or OS) does not do symlinks here".
NO_SYMLINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
if hasattr(errno, "ENOTSUP"):
    NO_SYMLINKS.add(errno.ENOTSUP)


class LinkState(StrEnum):
    MISSING = "missing"  # nothing at the path
    OK = "ok"  # a link to exactly the target
    BROKEN = "broken"  # a symlink to nothing
    ELSEWHERE = "elsewhere"  # a symlink to some other existing file
    FOREIGN = "foreign"  # a real file or folder that is not the target


def link_state(link_path: Path, target: Path) -> LinkState:
    if not os.path.lexists(link_path):
        return LinkState.MISSING
    if link_path.is_symlink():
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


@dataclass(frozen=True)
class Made:
    kind: str  # symlink | hardlink
    note: str = ""  # why a hard link, for the report


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
        os.replace(tmp, link_path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise LinkError(f"Cannot replace {link_path}: {_why(exc)}.") from exc
    return made


def remove_link(link_path: Path) -> None:
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
        if exc.errno not in NO_SYMLINKS:
            raise LinkError(f"Cannot create the link {link_path}: {_why(exc)}.") from exc
        refusal = _why(exc)
    if is_dir:
        raise LinkError(
            f"Cannot link the folder {target} at {link_path}: symlinks cannot be made there "
            f"({refusal}) and a folder cannot be hard-linked."
        )
    try:
        fault_point("apps.hardlink")
        os.link(target, link_path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise LinkError(
                f"Cannot link {link_path}: symlinks cannot be made there ({refusal}) and a "
                "hard link needs the library on the same filesystem, which it is not."
            ) from exc
        raise LinkError(f"Cannot create the link {link_path}: {_why(exc)}.") from exc
    return Made("hardlink", f"symlinks cannot be made there ({refusal}); hard link instead")


def _leads_to(link_path: Path, target: Path) -> bool:
    try:
        return os.path.samefile(link_path, target)
    except OSError:
        return False


def _why(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
