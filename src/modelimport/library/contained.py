"""Containment: a name read from metadata.json or a journal never leads out of the library.

metadata.json, journal.json and everything else under the library can be edited by hand (or
planted), so a name read from them is untrusted: `files[].name`, a journal's `staged` and
`dest`, a model id. Every place that joins such a name onto a library path goes through
`inside`, which refuses, in one sentence:
- a name that is not a relative path of plain components (absolute, empty, `.`, `..`, a
  backslash or NUL, a component too long);
- a path whose folders or final entry are symbolic links (a link is never followed, into
  the library or out of it: the library never holds one of its own);
and `own_folder`, which tells whether one of the library's own folders (`.modelimport`,
`staging`, a transaction) is a real folder rather than a link planted in its place.

Checks use lstat, component by component from the base down; where the file is then opened,
`open_inside` opens it with O_NOFOLLOW, so a link swapped in after the check is not followed
either.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from modelimport.errors import LibraryError

MAX_COMPONENT = 255  # bytes: what Linux, macOS and Windows filesystems allow in one name


class OutsideLibrary(LibraryError):
    """A name from the library's own files would lead out of it (or through a link)."""


def name_parts(name: object) -> list[str] | None:
    """The components of a relative name that stays below its base, or None."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") or len(os.fsencode(p)) > MAX_COMPONENT for p in parts):
        return None  # an absolute path starts with "": refused here too
    return parts


def inside(base: Path, name: object, what: str = "") -> Path:
    """`base / name`, refused (OutsideLibrary) unless it stays below `base` with no link on the
    way. A part that does not exist ends the check: nothing below it can lead anywhere, and
    the caller reports the file as missing as it would any other. `what` names where the
    name came from, for the sentence (e.g. "metadata.json of llm/llama/x")."""
    where = f" in {what}" if what else ""
    parts = name_parts(name)
    if parts is None:
        raise OutsideLibrary(
            f"The name {name!r}{where} is not a plain relative path inside the library; "
            "it is not followed."
        )
    here = base
    for number, part in enumerate(parts, start=1):
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            break
        except NotADirectoryError:
            break
        if stat.S_ISLNK(mode):
            raise OutsideLibrary(
                f"{here}{where} is a symbolic link, which modelimport never makes in its "
                "library; it is not followed and left as it is."
            )
        if number < len(parts) and not stat.S_ISDIR(mode):
            break
    return base.joinpath(*parts)


def open_inside(base: Path, name: object, what: str = "", flags: int = os.O_RDONLY) -> int:
    """A descriptor for `inside(base, name)`; see `open_no_link`."""
    return open_no_link(inside(base, name, what), flags)


def open_no_link(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor for `path`, which an lstat check found no link: opened without following
    a link at the end, so a link swapped in after the check is refused by the kernel."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutsideLibrary(
                f"{path} became a symbolic link; it is not followed and left as it is."
            ) from exc
        raise


def own_folder(path: Path) -> bool:
    """Is `path` a real folder (not a link to one)? For the library's own folders, which
    modelimport creates: a link in their place was planted, and is never followed."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def planted_folder_problem(path: Path) -> str:
    """The sentence for one of the library's own folders that is not a real folder."""
    return (
        f"{path} is not a folder modelimport made (a symbolic link or a file is there); "
        "nothing in it is followed or changed. Remove it and run the command again."
    )


def planted_file_problem(path: Path) -> str:
    """The sentence for one of the library's own files (a lock) that is a link."""
    return (
        f"{path} is a symbolic link, not the file modelimport made there; it is not followed. "
        "Remove it and run the command again."
    )


def model_file(root: Path, model_id: str, name: object) -> Path:
    """Where file `name` of model `model_id` (as its metadata.json lists it) is, refused
    (OutsideLibrary) if the name or a folder on the way would lead out of the library: the
    one check for every `files[].name` joined onto a library path."""
    what = f"the metadata.json of {model_id}"
    return inside(inside(root, model_id, what), name, what)


def read_no_link(path: Path) -> str:
    """The text of one of the library's own files (`.modelimport/verified.json`, ...), read
    only if it is not a link: a planted link would show another file's contents."""
    with os.fdopen(open_no_link(path), encoding="utf-8") as fh:
        return fh.read()
