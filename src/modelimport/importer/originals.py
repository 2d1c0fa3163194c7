"""`import --delete-originals`: remove the source files of a batch once, and only once, the
library provably holds their bytes.

Invariants:
- All or nothing: every condition is checked for every source first; if any fails, no
  source is deleted and each source says why it was kept.
- The conditions: every item of the batch succeeded (imported or already there); each
  library copy, re-read from disk after its fsync (its cached pages dropped first), has the
  SHA256 and BLAKE3 the copy stream computed; each source is unchanged since it was read
  (size and modification time); its folder is writable; it is not a symlink (the file
  behind a link belongs to someone else) and not inside the library.
- Only sources of models this batch imported are deleted; a duplicate's source is kept
  (this run never copied it, so nothing here proves it is the file in the library).
- A source with more than one hard link is deleted with a warning: no space is freed.
- Empty folders left by a bundle's sources are removed, up to the bundle's own folder.
- An app never loses a model: an original that sits where an app's link to its model goes
  (the batch came from the app's own folder) is replaced by that link in one rename rather
  than deleted, and links the deletions made room for are made at once.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.faults import fault_point
from modelimport.library.contained import OutsideLibrary, model_file
from modelimport.library.layout import Library, is_within


@dataclass
class OriginalFile:
    path: str
    model_id: str | None
    size: int
    deleted: bool = False
    reason: str | None = None  # why it was kept
    refused: bool = False  # kept because a safety check failed (not a duplicate's source)
    warning: str | None = None
    freed: int = 0


def delete_originals(
    library: Library,
    results: list[Any],
    progress: ProgressSink = ignore_progress,
    db: sqlite3.Connection | None = None,
) -> dict[str, Any]:
    """Delete the sources of `results` (ItemResults of one batch) if every check passes;
    with `db`, an original an app reads is replaced by the app's link to the library."""
    from modelimport.importer.pipeline import DUPLICATE, FAILED, IMPORTED, REJECTED, SKIPPED

    # A skipped file (not a model: notes.txt) is nothing this batch failed to do; an item
    # that failed, was rejected or was imported with an error is.
    failed = [r for r in results if r.status in (FAILED, REJECTED)
              or (r.error and r.status != SKIPPED)]
    originals: list[OriginalFile] = []
    bundles: list[tuple[list[Path], str]] = []
    for result in results:
        if result.status == DUPLICATE:
            for source in result.sources:
                reason = (
                    f"it is the library's own file (of {result.model_id})"
                    if is_within(source, library.root)
                    else f"already in the library as {result.model_id} before this run, "
                    "which did not copy it; delete it yourself if you do not need it"
                )
                originals.append(
                    OriginalFile(source, result.model_id, _size(source), reason=reason)
                )
        if result.status != IMPORTED or not result.model_id:
            continue
        record = library.read_metadata(result.model_id)
        files = record.get("files") or []
        sources = record.get("sources") or []
        copies_ok = _library_copies_intact(library, result.model_id, files, progress)
        for number, source in enumerate(sources):
            entry = files[number] if number < len(files) else None
            original = OriginalFile(source["path"], result.model_id, source.get("size") or 0)
            original.reason = copies_ok or _source_problem(library, source, entry)
            original.refused = original.reason is not None
            originals.append(original)
        bundle = record.get("bundle")
        if isinstance(bundle, dict) and bundle.get("root"):
            bundles.append(([Path(s["path"]) for s in sources], str(bundle["root"])))
    if failed:
        for original in originals:
            if original.reason is None:
                original.reason = (
                    f"{len(failed)} item(s) of this batch did not succeed, so no original is "
                    "deleted"
                )
                original.refused = True
    deletable = [o for o in originals if o.reason is None]
    relinked = 0
    if any(o.refused for o in originals):
        for original in deletable:
            original.reason = "another original could not be deleted safely (see its reason)"
            original.refused = True
    elif deletable:
        linked = _replace_with_links(library, db, deletable)
        for original in deletable:
            if original.path not in linked:
                _delete(original)
        for paths, root in bundles:
            _remove_empty_folders(paths, root)
        relinked += _link_what_was_freed(library, db, deletable)
    return {
        "files": [asdict(o) for o in originals],
        "deleted": sum(o.deleted for o in originals),
        "kept": sum(not o.deleted for o in originals),
        "refused": sum(o.refused for o in originals),
        "freed_bytes": sum(o.freed for o in originals),
        "relinked": relinked,
    }


def _replace_with_links(
    library: Library, db: sqlite3.Connection | None, deletable: list[OriginalFile]
) -> set[str]:
    """The originals an app reads, replaced by its links (see `apps.sync.link_in_place_of`);
    each counts as deleted, its bytes freed unless other hard links keep them."""
    if db is None:
        return set()
    from modelimport.apps.sync import link_in_place_of

    before = {}
    for original in deletable:
        with contextlib.suppress(OSError):
            before[original.path] = Path(original.path).lstat()
    linked = set(link_in_place_of(
        library, db, {o.path: o.model_id for o in deletable if o.model_id and o.path in before}
    ))
    for original in deletable:
        if original.path in linked:
            _count_freed(original, before[original.path])
            original.warning = "replaced by the app's link to the library copy"
    return linked


def _link_what_was_freed(
    library: Library, db: sqlite3.Connection | None, deleted: list[OriginalFile]
) -> int:
    """Links the deleted originals were in the way of (a bundle's folder in an app), made
    now; how many."""
    if db is None:
        return 0
    from modelimport.apps import link_new_models

    ids = sorted({o.model_id for o in deleted if o.deleted and o.model_id})
    report = link_new_models(library, db, ids)
    return sum(1 for c in report.changes if c.action == "created")


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _library_copies_intact(
    library: Library, model_id: str, files: list[dict[str, Any]], progress: ProgressSink
) -> str | None:
    """Re-read each library file from disk and compare with the hashes of the copy stream."""
    from modelimport.hashing import hash_file

    fault_point("originals.reread")
    for entry in files:
        try:
            path = model_file(library.root, model_id, entry["name"])
        except OutsideLibrary as exc:
            return str(exc).rstrip(".")
        item, total = f"{model_id}/{entry['name']}", entry.get("size") or 0

        def on_bytes(done: int, item: str = item, total: int = total) -> None:
            progress(ProgressEvent(Stage.VERIFYING, item, done, total))

        try:
            _drop_cached_pages(path)
            on_bytes(0)
            digests = hash_file(path, on_bytes)
        except OSError as exc:
            return f"the library copy {entry['name']} cannot be re-read ({exc.strerror or exc})"
        if (digests.sha256, digests.blake3) != (entry.get("sha256"), entry.get("blake3")):
            return (
                f"the library copy {entry['name']} re-read from disk does not match the hashes "
                "of the copy"
            )
    return None


def _drop_cached_pages(path: Path) -> None:
    """Make the next read come from the disk, not from the pages the copy left in memory
    (they are clean after the fsync, so the kernel may drop them). Where the system offers
    no such advice (Windows, macOS), the re-read may come from memory: still a re-read of
    the file as the library holds it."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _source_problem(
    library: Library, source: dict[str, Any], entry: dict[str, Any] | None
) -> str | None:
    path = Path(source["path"])
    try:
        st = path.lstat()
    except OSError:
        return "it is no longer there"
    if path.is_symlink():
        return "it is a symlink (the file behind it belongs to someone else)"
    if is_within(path, library.root):
        return "it is inside the library"
    if (st.st_size, st.st_mtime_ns) != (source.get("size"), source.get("mtime_ns")):
        return "it changed since it was read (size or modification time)"
    if entry is not None and entry.get("size") != st.st_size:
        return "its library copy has another size"
    if not os.access(path.parent, os.W_OK):
        return f"its folder {path.parent} is not writable"
    return None


def _delete(original: OriginalFile) -> None:
    path = Path(original.path)
    st = path.lstat()
    try:
        path.unlink()
    except OSError as exc:
        original.reason = f"it could not be deleted ({exc.strerror or exc})"
        return
    _count_freed(original, st)


def _count_freed(original: OriginalFile, st: os.stat_result) -> None:
    original.deleted = True
    if st.st_nlink > 1:
        original.warning = (
            f"it had {st.st_nlink} hard links; the others keep its bytes, so no space was freed"
        )
    else:
        blocks = getattr(st, "st_blocks", 0)  # not on Windows
        original.freed = blocks * 512 if blocks else st.st_size


def _remove_empty_folders(paths: list[Path], root_name: str) -> None:
    """Remove folders the bundle's files left empty, from the deepest up to its root folder."""
    if not paths:
        return
    # The bundle's folder is the deepest folder of that name holding every file: a user's
    # folder of the same name further up (~/sdxl/sdxl/) is not the bundle's and stays.
    tops = set.intersection(*({p for p in path.parents if p.name == root_name} for path in paths))
    if not tops:
        return
    top = max(tops, key=lambda p: len(p.parts))
    folders = {p for path in paths for p in path.parents if p == top or top in p.parents}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
