"""Reconciling the apps' folders with the library: link new models, sync, unlink, check.

One function, `reconcile`, compares what each app should have (`plan.desired_links` for
every model) with what its folders hold and what the registry (index table `links`) says
modelimport made, and acts: creates missing links, repairs broken ones, removes stale ones
that are ours, adopts a correct link the registry had lost, and reports everything else.

Invariants:
- Nothing the tool did not create is ever overwritten or removed (see `links`). A symlink
  in an app's folders that points into the library at something gone is the tool's by
  construction (nothing else links into the library), registered or not.
- Two models never share a link path, nor two paths that differ only in case: a second
  file of one name is linked under its model's name (`naming.assign_paths`).
- An app served by its config file (`via = "config"`) gets no links; its section of the
  config is rewritten when it no longer says this library (`serving.serve_by_config`).
- A dry run changes nothing on disk and nothing in the registry; it reports what it would do.
- Link work runs under the library's `links` lock, so two processes never race on a path.
- A registered hard link whose model is gone is kept (it may hold the only copy of the
  bytes); its row is dropped and the report says so.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelimport.apps.layouts import TABLES
from modelimport.apps.links import (
    LinkError,
    LinkState,
    NoLinksPossible,
    is_link,
    link_kind,
    link_state,
    make_link,
    points_into,
    remove_link,
    replace_link,
)
from modelimport.apps.naming import assign_paths
from modelimport.apps.plan import DesiredLink, desired_links
from modelimport.apps.report import (
    ADOPTED,
    CREATED,
    FAILED,
    FORGOTTEN,
    REMOVED,
    REPAIRED,
    SKIPPED,
    AppCounts,
    LinkChange,
    SyncReport,
    skip_change,
)
from modelimport.apps.serving import Refusals, serve_by_config, served_by
from modelimport.apps.targets import AppsConfigError, AppTarget, load_targets
from modelimport.errors import ModelImportError, UsageError
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.library import index
from modelimport.library.layout import Library


def _targets(app: str | None = None) -> list[AppTarget]:
    targets = load_targets()
    if app is not None:
        targets = [t for t in targets if t.name == app]
        if not targets:
            raise UsageError(f"No app named {app!r}; `modelimport apps list` shows them.")
    return targets


def _records(library: Library, ids: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    records = []
    for model_id in ids:
        try:
            records.append((model_id, library.read_metadata(model_id)))
        except ModelImportError:
            continue  # gone or unreadable: it has no links to want
    return records


def reconcile(
    library: Library,
    db: sqlite3.Connection,
    targets: list[AppTarget],
    model_ids: list[str] | None = None,
    dry_run: bool = False,
    prune: bool = True,
    progress: ProgressSink = ignore_progress,
    every_app: bool = False,
) -> SyncReport:
    """Bring `targets` in line with the library (only `model_ids`' links when given).

    `prune` removes registered links no model wants any more (stale); linking after an
    import does not prune, `sync` does. `every_app`: `targets` are all the configured apps,
    so links registered for an app no longer configured are stale too.
    """
    report = SyncReport(dry_run=dry_run)
    records = _records(library, index.model_ids(db) if model_ids is None else model_ids)
    # A dry run (check, status) only reads: it never waits for a sync in another process.
    with contextlib.nullcontext() if dry_run else library.lock("links"):
        for target in targets:
            progress(ProgressEvent(Stage.LINKING, f"apps: {target.name}"))
            counts = report.counts.setdefault(target.name, AppCounts())
            if not target.path.is_dir():
                report.problems.append(
                    f"{target.name}: the app folder {target.path} does not exist; not linked."
                )
                continue
            registered = {Path(row["link_path"]): row for row in index.links(db, app=target.name)}
            refusals = Refusals(target.name, target.kind, target.path, library.root)
            served = records
            if target.via == "config":
                served = []  # no links: links made before are stale
                done, problem = serve_by_config(target, library.root, dry_run)
                report.configs += [done] if done else []
                report.problems += [problem] if problem else []
            before = len(report.changes)
            wanted = assign_paths(db, target, library.root, served, registered, prune, report)
            counts.clashes += sum(1 for c in report.changes[before:] if c.action == SKIPPED)
            if prune:
                for path, row in registered.items():
                    if path not in wanted:
                        if link_state(path, Path(row["target"])) == LinkState.BROKEN:
                            counts.broken += 1  # dangling: its model is gone from the library
                        _handle_stale(db, library, row, report, dry_run)
            for path, link in wanted.items():
                row = registered.get(path)
                _handle_wanted(db, library, link, row, report, counts, dry_run, refusals)
            for no_links in refusals.by_type.values():
                counts.no_links += len(no_links.models)
                report.no_links.append(no_links)
                report.problems.append(no_links.sentence())
            if prune and model_ids is None:
                known = set(wanted) | set(registered)
                for path in _dangling_into_library(target, library.root):
                    if path not in known:
                        counts.broken += 1
                        report.add(_remove_dangling(target.name, path, dry_run))
        if prune and every_app and model_ids is None:
            configured = {t.name for t in load_targets()}
            for row in index.links(db):
                if row["app"] not in configured:
                    _handle_stale(db, library, row, report, dry_run)
    return report


def _handle_wanted(
    db: sqlite3.Connection,
    library: Library,
    link: DesiredLink,
    row: dict[str, Any] | None,
    report: SyncReport,
    counts: AppCounts,
    dry_run: bool,
    refusals: Refusals | None = None,
) -> None:
    state = link_state(link.link_path, link.target)
    path, target = str(link.link_path), str(link.target)
    if state == LinkState.OK:
        counts.ok += 1
        kind = link_kind(link.link_path)
        if row is None or row["target"] != target or row["kind"] != kind:
            # Exactly the link we would make (the registry was lost, or the model moved):
            # taking it over is safe and lets sync maintain it from now on.
            if row is None:
                report.add(LinkChange(ADOPTED, link.app, link.model_id, path, target, kind))
            if not dry_run:
                index.add_link(db, link.app, path, link.model_id, target, kind, link.is_dir)
        return
    # A dangling symlink into the library is ours by construction (the registry may have
    # lost its row: an index rebuilt, `check --repair` dropping a gone model).
    into_library = state != LinkState.FOREIGN and points_into(link.link_path, library.root)
    ours = (state == LinkState.BROKEN and (row is not None or into_library)) or (
        state == LinkState.ELSEWHERE and row is not None and into_library
    )
    if state == LinkState.MISSING:
        counts.missing += 1
        action = CREATED
    elif ours:
        counts.broken += 1
        action = REPAIRED
    else:
        counts.conflicts += 1
        what = {
            LinkState.BROKEN: "a broken link modelimport did not create",
            LinkState.ELSEWHERE: "a link to another file that modelimport did not create",
        }.get(state, "a file or folder modelimport did not create")
        report.add(skip_change(link, f"{what} is there; left untouched"))
        return
    if dry_run:
        report.add(LinkChange(action, link.app, link.model_id, path, target))
        return
    if refusals is not None and refusals.known(link):
        return  # reported once per model type, with the reason
    try:
        if action == CREATED:
            made = make_link(link.link_path, link.target, link.is_dir)
        else:
            made = replace_link(link.link_path, link.target, link.is_dir)
    except FileExistsError:
        counts.conflicts += 1
        report.add(skip_change(link, "something appeared at that path meanwhile; left untouched"))
        return
    except NoLinksPossible as exc:
        if refusals is None:
            report.add(LinkChange(FAILED, link.app, link.model_id, path, target, reason=str(exc)))
        else:
            refusals.add(link, exc.reason)
        return
    except LinkError as exc:
        report.add(LinkChange(FAILED, link.app, link.model_id, path, target, reason=str(exc)))
        return
    index.add_link(db, link.app, path, link.model_id, target, made.kind, link.is_dir)
    report.add(LinkChange(action, link.app, link.model_id, path, target, made.kind, made.note))


def app_folders(target: AppTarget) -> list[Path]:
    """Every folder of `target` that modelimport links into (its layout and its --map)."""
    if target.kind == "lmstudio":
        return [target.path]
    folders = {f for fs in TABLES.get(target.kind, {}).values() for f in fs}
    folders |= set(target.mapping.values())
    return [target.path / f for f in sorted(folders)]


def _dangling_into_library(target: AppTarget, root: Path) -> list[Path]:
    """Symlinks in the app's folders that point into the library at something gone.

    Only modelimport makes symlinks into its library, so these are ours even when the
    registry has no row for them; symlinks are not followed, so nothing outside is read."""
    root = root.resolve()
    found: set[Path] = set()
    for folder in app_folders(target):
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            # An app folder may hold the library itself (a folder app mapped to `.`): the
            # library's own contents are never an app's links.
            dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() != root]
            for name in (*dirnames, *filenames):
                path = Path(dirpath) / name
                if is_link(path) and not path.exists() and points_into(path, root):
                    found.add(path)
    return sorted(found)


def _remove_dangling(app: str, path: Path, dry_run: bool) -> LinkChange:
    """Remove an unregistered symlink into the library whose target is gone."""
    try:
        target = os.path.normpath(os.path.join(path.parent, os.readlink(path)))
    except OSError:  # gone meanwhile
        target = ""
    reason = "a link into the library to a model that is gone"
    if not dry_run:
        try:
            remove_link(path)
        except OSError as exc:
            return LinkChange(FAILED, app, None, str(path), target, "symlink",
                              f"cannot remove it: {exc.strerror or exc}")  # fmt: skip
        _prune_empty_parents(path, app)
    return LinkChange(REMOVED, app, None, str(path), target or None, "symlink", reason)


def _handle_stale(
    db: sqlite3.Connection,
    library: Library,
    row: dict[str, Any],
    report: SyncReport,
    dry_run: bool,
) -> None:
    """A registered link no model wants any more: remove it if it is still ours."""
    change = unlink_row(db, library, row, dry_run)
    report.add(change)


def unlink_row(
    db: sqlite3.Connection, library: Library, row: dict[str, Any], dry_run: bool = False
) -> LinkChange:
    path, target = Path(row["link_path"]), Path(row["target"])
    app, model_id = row["app"], row["model_id"]

    def change(action: str, reason: str = "") -> LinkChange:
        return LinkChange(action, app, model_id, str(path), str(target), row["kind"], reason)

    state = link_state(path, target)
    if state == LinkState.MISSING:
        result = change(FORGOTTEN, "already gone")
    elif is_link(path) and (
        state in (LinkState.OK, LinkState.BROKEN) or points_into(path, library.root)
    ):
        result = change(REMOVED)
        if not dry_run:
            try:
                remove_link(path)
            except OSError as exc:
                return change(FAILED, f"cannot remove it: {exc.strerror or exc}")
            _prune_empty_parents(path, app)
    elif state == LinkState.OK:  # a hard link that is still the library's file
        result = change(REMOVED)
        if not dry_run:
            try:
                remove_link(path)
            except OSError as exc:
                return change(FAILED, f"cannot remove it: {exc.strerror or exc}")
    elif row["kind"] == "hardlink" and not target.exists():
        result = change(FORGOTTEN, "a hard link whose library file is gone: kept, it may hold "
                        "the only copy of the bytes")  # fmt: skip
    else:
        result = change(FORGOTTEN, "replaced by something modelimport did not create; left "
                        "untouched")  # fmt: skip
    if not dry_run:
        index.delete_link(db, app, str(path))
    return result


def _prune_empty_parents(path: Path, app: str) -> None:
    """Remove folders left empty by a removed link (LM Studio's `<publisher>/<repo>/`, a
    family subfolder), never the app's own folders: rmdir only succeeds on an empty folder,
    and stops at the app's folder or any folder of its layout."""
    target = next((t for t in _configured() if t.name == app), None)
    if target is None:
        return
    keep = {target.path} | {target.path / f for f in target.mapping.values()}
    keep |= {target.path / f for fs in TABLES.get(target.kind, {}).values() for f in fs}
    parent = path.parent
    while parent not in keep and target.path in parent.parents:
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = parent.parent


def _configured() -> list[AppTarget]:
    try:
        return load_targets()
    except AppsConfigError:
        return []


# --- The contract other helpers use (TEAM.md).


def link_new_models(
    library: Library,
    db: sqlite3.Connection,
    model_ids: list[str],
    progress: ProgressSink = ignore_progress,
) -> SyncReport:
    """Link just these (newly imported) models into every configured app; called once per
    import batch. A config problem is reported, never raised: the import itself succeeded."""
    if not model_ids:
        return SyncReport()
    try:
        targets = load_targets()
    except AppsConfigError as exc:
        return SyncReport(problems=[str(exc)])
    if not targets:
        return SyncReport()
    return reconcile(library, db, targets, model_ids, prune=False, progress=progress)


def link_in_place_of(
    library: Library, db: sqlite3.Connection, originals: dict[str, str]
) -> list[str]:
    """Replace each original (path -> the model this batch imported it as) that sits where
    its model's link goes in an app (the batch was imported from the app's own folder) by
    that link, in one rename: the app finds the same name, now the library's copy, and is
    never without it. Only the very file (same inode) is replaced; returns those paths."""
    targets = _configured()
    by_inode: dict[tuple[int, int], str] = {}
    for path in originals:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            by_inode[(st.st_dev, st.st_ino)] = path
    replaced: list[str] = []
    if not targets or not by_inode:
        return replaced
    with library.lock("links"):
        for model_id, record in _records(library, sorted(set(originals.values()))):
            for target in targets:
                for link in desired_links(target, library.root, model_id, record):
                    try:
                        st = os.lstat(link.link_path)
                    except OSError:
                        continue
                    original = by_inode.get((st.st_dev, st.st_ino))
                    if (
                        original is None
                        or originals[original] != model_id
                        or link.is_dir
                        or link_state(link.link_path, link.target) != LinkState.FOREIGN
                    ):
                        continue
                    try:
                        made = replace_link(link.link_path, link.target, False)
                    except LinkError:
                        continue  # it stays an original, deleted or kept as any other
                    index.add_link(db, link.app, str(link.link_path), model_id,
                                   str(link.target), made.kind, False)
                    replaced.append(original)
    return replaced


def sync(
    library: Library,
    db: sqlite3.Connection,
    app: str | None = None,
    dry_run: bool = False,
    progress: ProgressSink = ignore_progress,
) -> SyncReport:
    """Create missing links, repair broken ones, remove stale ones that are ours."""
    return reconcile(
        library, db, _targets(app), None, dry_run=dry_run, progress=progress, every_app=not app
    )


def unlink_model(library: Library, db: sqlite3.Connection, model_id: str) -> list[LinkChange]:
    """Remove every registered link of one model (those still ours) and their rows."""
    with library.lock("links"):
        return [unlink_row(db, library, row) for row in index.links(db, model_id=model_id)]


def relink_model(
    library: Library, db: sqlite3.Connection, old_id: str, new_id: str
) -> list[LinkChange]:
    """A model moved from `old_id` to `new_id` (edit): its links now point at the new place."""
    changes = unlink_model(library, db, old_id)
    return changes + link_new_models(library, db, [new_id]).changes


def forget_app(
    library: Library, db: sqlite3.Connection, app: str, unlink: bool = False
) -> list[LinkChange]:
    """Before an app is unregistered: remove its links that are still ours (`unlink`), or
    just forget them, leaving them in place for the app to keep using."""
    with library.lock("links"):
        rows = index.links(db, app=app)
        if unlink:
            # Two apps registered at one folder (apps.toml edited by hand) share their links:
            # one's --unlink must not take the other's.
            others = {r["link_path"] for r in index.links(db) if r["app"] != app}
            changes = []
            for row in rows:
                if row["link_path"] not in others:
                    changes.append(unlink_row(db, library, row))
                    continue
                index.delete_link(db, app, row["link_path"])
                changes.append(
                    LinkChange(FORGOTTEN, app, row["model_id"], row["link_path"], row["target"],
                               row["kind"], "also another app's link; left in place")
                )  # fmt: skip
            return changes
        for row in rows:
            index.delete_link(db, app, row["link_path"])
    return [
        LinkChange(FORGOTTEN, app, r["model_id"], r["link_path"], r["target"], r["kind"])
        for r in rows
    ]


def check_links(library: Library, db: sqlite3.Connection) -> list[str | dict[str, Any]]:
    """What `sync` would change, as sentences (`check` reports them); [] when all is well.

    A link sync leaves out on purpose (a file the person put there has its name; another
    model's link has it and this one cannot be renamed) is no fault of the library: it comes
    as {"message", "path", "warning": True}, saying what would let the link be made."""
    try:
        report = reconcile(library, db, load_targets(), None, dry_run=True, every_app=True)
    except AppsConfigError as exc:
        return [str(exc)]
    problems: list[str | dict[str, Any]] = list(report.problems)
    for c in report.changes:
        if c.action == ADOPTED:
            continue  # a correct link the registry does not list yet: nothing to fix
        what = {
            CREATED: "is missing",
            REPAIRED: "is broken",
            REMOVED: "is stale (its model is gone or no longer maps there)",
            FORGOTTEN: "is registered but not there any more",
            SKIPPED: "cannot be made",
        }.get(c.action, c.action)
        detail = f" ({c.reason})" if c.reason else ""
        owner = f" for {c.model_id}" if c.model_id else ""
        sentence = f"Link {c.link_path}{owner} in {c.app} {what}{detail}"
        if c.action == SKIPPED:
            problems.append({
                "message": f"{sentence}: to link it, move or rename what is at that path, "
                "then run `modelimport sync`.",
                "path": c.link_path,
                "warning": True,
            })
        else:
            problems.append(sentence + ".")
    return problems


def app_status(library: Library, db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per configured app: how many links are ok, broken, missing, blocked (no changes)."""
    targets = load_targets()
    if not targets:
        return []
    report = reconcile(library, db, targets, None, dry_run=True)
    kinds: dict[str, Counter[str]] = {t.name: Counter() for t in targets}
    for row in index.links(db):
        kinds.get(row["app"], Counter())[row["kind"]] += 1
    return [
        {
            "app": t.name,
            "kind": t.kind,
            "path": str(t.path),
            **vars(report.counts[t.name]),
            "via": t.via,
            "served_by": served_by(kinds[t.name], t.via, _config_file(t)),
        }
        for t in targets
    ]


def _config_file(target: AppTarget) -> str | None:
    from modelimport.apps.comfy_config import config_file

    return str(config_file(target)) if target.via == "config" else None
