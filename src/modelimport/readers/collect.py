"""Collect: expand the paths a person names into candidate model files.

Folders are walked recursively. Symlinked folders are followed once (loops are detected by
device and inode); fifos, sockets and devices are never opened. A file or folder named on
the command line that cannot be imported is a failure; unsupported files met in a folder are
skipped and counted. A file or folder that cannot be read (named, or met while walking) is
`unreadable`: the import reports it as failed with the reason, never as skipped, because
the person asked for what is inside it and did not get it.

A folder that is one model (a bundle: see modelimport.readers.bundles) is not walked file by file:
it is collected whole, with the reason it was taken as one model. Beside a single model
file, its sidecars (<stem>.civitai.info, <stem>.preview.png, ...) are collected with it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from modelimport.library.layout import is_within
from modelimport.names import MODEL_EXTENSIONS
from modelimport.readers.bundles import Bundle, detect_bundle, read_bundle
from modelimport.readers.bundles.detect import HF_CACHE_REPO_FOLDER, link_leads_outside
from modelimport.readers.bundles.sidecars import model_stem, sidecar_owner_stem, sidecars_of
from modelimport.readers.shard_names import INDEX_SUFFIX, parse_shard_name

SKIPPED_DIR_NAMES = {".modelimport", ".git", "__pycache__"}
# The Hugging Face cache keeps a repo as models--<org>--<name>/ with snapshots/<commit>/ (the
# files, as symlinks) beside its own storage: blobs/ (what the links point to), refs/ and
# .no_exist/. Only the snapshots are models; the storage is left out once, not file by file.
HF_CACHE_STORAGE = {"blobs", "refs", ".no_exist"}


@dataclass
class Collected:
    files: list[Path] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)  # named paths we can't use
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # met while walking
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # named or met
    bundles: list[Bundle] = field(default_factory=list)  # folders that are one model each
    sidecars: dict[Path, list[Path]] = field(default_factory=dict)  # model file -> its sidecars


def is_candidate_name(name: str) -> bool:
    lower = name.lower()
    if lower.endswith(INDEX_SUFFIX):
        return True
    if lower.endswith(MODEL_EXTENSIONS):
        return True
    shard = parse_shard_name(name)
    return shard is not None and shard.ext in MODEL_EXTENSIONS


def collect_paths(paths: list[Path], exclude: Path | None = None) -> Collected:
    """Expand files and folders; `exclude` (the library root) is never walked into."""
    out = Collected()
    seen_files: set[tuple[int, int]] = set()
    excluded = _identity(exclude) if exclude is not None else None
    library_root = exclude
    named_sidecars: list[tuple[Path, Path]] = []
    for given in paths:
        try:
            st = given.stat()  # follows symlinks: a named link means its target
        except OSError as exc:
            out.failures.append((given, unreadable_reason(given, exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(given, out, seen_files, {(st.st_dev, st.st_ino)}, excluded, library_root,
                  given)
        elif not stat.S_ISREG(st.st_mode):
            out.failures.append((given, f"{given} is not a regular file."))
        elif (owner := _sidecar_owner_beside(given)) is not None:
            named_sidecars.append((given, owner))
        elif not is_candidate_name(given.name):
            out.failures.append(
                (
                    given,
                    f"{given.name} has an unsupported extension "
                    f"(supported: {', '.join(MODEL_EXTENSIONS)}).",
                )
            )
        elif (st.st_dev, st.st_ino) not in seen_files:
            seen_files.add((st.st_dev, st.st_ino))
            out.files.append(given.absolute())
            beside = [name for name in _regular_file_names(given.parent)
                      if not link_leads_outside(given.parent / name, given.parent)]
            found = sidecars_of(given.absolute(), beside)
            if found:
                out.sidecars[given.absolute()] = found
    # `import ~/Downloads/*` names sidecars too: each travels with its model, and is only
    # reported when its model is not being imported.
    collected = {p for sidecars in out.sidecars.values() for p in sidecars}
    for sidecar, owner in named_sidecars:
        if sidecar.absolute() not in collected:
            out.skipped.append(
                (sidecar, f"a sidecar of {owner.name}, which is imported with it when named")
            )
    return out


def _regular_file_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it if e.is_file()]
    except OSError:
        return []


def _sidecar_owner_beside(path: Path) -> Path | None:
    """The model file a named non-model file is a sidecar of, if it lies beside it."""
    if is_candidate_name(path.name):
        return None
    stem = sidecar_owner_stem(path.name)
    if stem is None:
        return None
    for name in _regular_file_names(path.parent):
        if is_candidate_name(name) and model_stem(name) == stem:
            return path.parent / name
    return None


def unreadable_reason(path: Path, exc: OSError) -> str:
    """One sentence for a path that cannot be looked at (stat, open or list)."""
    if isinstance(exc, FileNotFoundError):
        return f"{path} does not exist."
    if isinstance(exc, PermissionError):
        return f"Permission denied reading {path}."
    if exc.errno == errno.ELOOP:
        return f"{path} is a symlink loop."
    return f"{path} cannot be read: {exc.strerror or exc}."


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _walk(
    folder: Path,
    out: Collected,
    seen_files: set[tuple[int, int]],
    seen_dirs: set[tuple[int, int]],
    excluded: tuple[int, int] | None,
    library_root: Path | None = None,
    boundary: Path | None = None,
) -> None:
    boundary = boundary or folder
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        out.unreadable.append((folder, unreadable_reason(folder, exc)))
        return
    listed: list[tuple[os.DirEntry[str], os.stat_result]] = []
    for entry in entries:
        if (
            link_leads_outside(Path(entry.path), boundary)
            and not (library_root is not None and is_within(entry.path, library_root))
            # A link to a model file elsewhere (a folder of links to another disk) is read:
            # its content must prove it a model. What is copied whatever its content (a
            # sidecar, a folder's configs and tokenizer) never comes from outside.
            and not (is_candidate_name(entry.name) and _is_file(Path(entry.path)))
        ):
            out.skipped.append((Path(entry.path), "a link leading outside the folder named"))
            continue
        try:
            listed.append((entry, entry.stat(follow_symlinks=True)))
        except OSError as exc:
            path = Path(entry.path)
            if exc.errno in (errno.ENOENT, errno.ELOOP):  # points nowhere: not a file at all
                out.skipped.append((path, "broken symlink or symlink loop"))
            else:  # e.g. a link to a file behind a folder we may not enter
                out.unreadable.append((path, unreadable_reason(path, exc)))
    file_names = [e.name for e, st in listed if stat.S_ISREG(st.st_mode)]
    dir_names = [e.name for e, st in listed if stat.S_ISDIR(st.st_mode)]
    found = detect_bundle(folder, file_names, dir_names)
    if found is not None:
        out.bundles.append(read_bundle(folder, *found, exclude=excluded, boundary=boundary))
        return
    cache_repo = "snapshots" in dir_names and bool(HF_CACHE_REPO_FOLDER.fullmatch(folder.name))
    candidates = {name for name in file_names if is_candidate_name(name)}
    owners = {model_stem(name): name for name in sorted(candidates, reverse=True)}
    for entry, st in listed:
        path = Path(entry.path)
        ident = (st.st_dev, st.st_ino)
        if library_root is not None and entry.is_symlink() and is_within(path, library_root):
            # An app's link to a library model (what `sync` makes): that model is imported
            # already. Walked, its files would be copied into a second model, and `--move`
            # would take them out of the library.
            out.skipped.append((path, "a link to a model in the library"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if entry.name in SKIPPED_DIR_NAMES or ident == excluded or ident in seen_dirs:
                continue
            if cache_repo and entry.name in HF_CACHE_STORAGE:
                out.skipped.append((path, "the Hugging Face cache's own storage"))
                continue
            seen_dirs.add(ident)
            _walk(path, out, seen_files, seen_dirs, excluded, library_root, boundary)
        elif not stat.S_ISREG(st.st_mode):
            out.skipped.append((path, "not a regular file"))
        elif entry.name not in candidates:
            owner = owners.get(sidecar_owner_stem(entry.name) or "")
            if owner is not None:
                out.sidecars.setdefault((folder / owner).absolute(), []).append(path.absolute())
            else:
                out.skipped.append((path, "unsupported file type"))
        elif ident not in seen_files:
            seen_files.add(ident)
            out.files.append(path.absolute())


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False
