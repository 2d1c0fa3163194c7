"""Reconciling the apps' folders with the library: link new models, sync, unlink, check.

One function, `reconcile`, compares what each app should have (`plan.desired_links` for
every model) with what its folders hold and what the registry (index table `links`) says
modelimport made, and acts: creates missing links, repairs broken ones, removes stale ones
that are ours, adopts a correct link the registry had lost, and reports everything else.

Invariants:
- Nothing the tool did not create is ever overwritten or removed (see `links`). A symlink
  in an app's folders that points into the library at something gone is the tool's by
  construction (nothing else links into the library), registered or not.
- Two models never share a link path: a second file of one name is linked under its
  model's name (`_assign_paths`).
- A dry run changes nothing on disk and nothing in the registry; it reports what it would do.
- Link work runs under the library's `links` lock, so two processes never race on a path.
- A registered hard link whose model is gone is kept (it may hold the only copy of the
  bytes); its row is dropped and the report says so.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelimport.apps.layouts import TABLES
from modelimport.apps.links import (
    LinkError,
    LinkState,
    link_state,
    make_link,
    points_into,
    remove_link,
    replace_link,
)
from modelimport.apps.plan import DesiredLink, desired_links
from modelimport.apps.plan import renamed as plan_renamed
from modelimport.apps.targets import AppsConfigError, AppTarget, load_targets
from modelimport.errors import ModelImportError, UsageError
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.library import index
from modelimport.library.layout import Library
from modelimport.names import MODEL_EXTENSIONS

# Actions, as reports and --json name them.
CREATED, REPAIRED, REMOVED, ADOPTED, FORGOTTEN, SKIPPED, FAILED = (
    "created", "repaired", "removed", "adopted", "forgotten", "skipped", "failed",
)  # fmt: skip
CHANGES = (CREATED, REPAIRED, REMOVED, ADOPTED, FORGOTTEN)


@dataclass(frozen=True)
class LinkChange:
    action: str
    app: str
    model_id: str | None
    link_path: str
    target: str | None = None
    kind: str | None = None  # symlink | hardlink, for links made
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "app": self.app,
            "model_id": self.model_id,
            "link_path": self.link_path,
            "target": self.target,
            "kind": self.kind,
            "reason": self.reason or None,
        }

    def sentence(self) -> str:
        text = f"{self.app}: {self.action} {self.link_path}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass
class AppCounts:
    ok: int = 0
    broken: int = 0  # ours, but dangling (its model gone), pointing elsewhere or replaced
    missing: int = 0  # should be there and is not
    conflicts: int = 0  # the path is taken by something that is not ours
    clashes: int = 0  # not linked: another model's link has the name (a split set)


@dataclass
class SyncReport:
    dry_run: bool = False
    changes: list[LinkChange] = field(default_factory=list)
    counts: dict[str, AppCounts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # e.g. an unreadable config file

    def add(self, change: LinkChange) -> None:
        self.changes.append(change)

    def for_model(self, model_id: str) -> list[LinkChange]:
        return [c for c in self.changes if c.model_id == model_id]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changes": [c.to_json() for c in self.changes],
            "summary": {a: self.count(a) for a in (*CHANGES, SKIPPED, FAILED)},
            "apps": {name: vars(c) for name, c in self.counts.items()},
            "problems": list(self.problems),
        }


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
            before = len(report.changes)
            wanted = _assign_paths(db, target, library.root, records, registered, prune, report)
            counts.clashes += sum(1 for c in report.changes[before:] if c.action == SKIPPED)
            if prune:
                for path, row in registered.items():
                    if path not in wanted:
                        if link_state(path, Path(row["target"])) == LinkState.BROKEN:
                            counts.broken += 1  # dangling: its model is gone from the library
                        _handle_stale(db, library, row, report, dry_run)
            for path, link in wanted.items():
                row = registered.get(path)
                _handle_wanted(db, library, link, row, report, counts, dry_run)
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


def _assign_paths(
    db: sqlite3.Connection,
    target: AppTarget,
    library_root: Path,
    records: list[tuple[str, dict[str, Any]]],
    registered: dict[Path, dict[str, Any]],
    prune: bool,
    report: SyncReport,
) -> dict[Path, DesiredLink]:
    """The links `target` should have, one model per path. Where two models' links would
    have one name (two LoRAs both called detail_tweaker.safetensors), one keeps it and the
    other is linked under its model's own name (`plan.renamed`).

    The keeper is the model whose working link is already there, else the first model in
    id order; a renamed link that works keeps its name too (when the keeper goes, say), so
    a link an app's workflows use never changes name. A model with several links in the
    app (a split GGUF set, whose file names tie the parts together) is not renamed: it is
    reported (skipped) instead."""
    claims: dict[Path, list[DesiredLink]] = {}
    link_count: dict[str, int] = {}
    wanted: dict[Path, DesiredLink] = {}
    links_of: dict[str, list[DesiredLink]] = {}
    for model_id, record in records:
        links = desired_links(target, library_root, model_id, record)
        link_count[model_id] = len(links)
        links_of[model_id] = links
        for link in links:
            kept = _kept_renamed(db, link, registered) if len(links) == 1 else None
            if kept is not None:  # linked under its own name before: that name stays
                wanted[kept.link_path] = kept
            else:
                claims.setdefault(link.link_path, []).append(link)
    losers: list[tuple[DesiredLink, str]] = []
    for path, links in claims.items():
        if path in wanted:  # another model's renamed link has this name, and keeps it
            losers += [(link, wanted[path].model_id) for link in links]
            continue
        row = registered.get(path)
        holder = row["model_id"] if row is not None and _holds(db, row) else None
        claimants = [link.model_id for link in links]
        if holder is not None and holder not in claimants and not prune:
            # Linking new models only: another model's link is there and stays.
            losers += [(link, holder) for link in links]
            continue
        # With prune, a holder that no longer wants this path loses its link to the stale
        # pass, so the path is free for the claimants.
        keeper = next((link for link in links if link.model_id == holder), links[0])
        wanted[path] = keeper
        losers += [(link, keeper.model_id) for link in links if link is not keeper]
    lost: dict[str, list[DesiredLink]] = {}
    for link, _ in losers:
        lost.setdefault(link.model_id, []).append(link)
    # A file and its sidecars go together: when the weights lose their name (to a model of
    # an earlier run, say), a sidecar that kept its own would sit beside the other model's
    # weights and the app would pair them. The whole group is renamed instead.
    for model_id, its_lost in list(lost.items()):
        group = links_of[model_id]
        if len(its_lost) < len(group) and _renamed_with_stem(group[0], group):
            owner = next(o for link, o in losers if link.model_id == model_id)
            for link in group:
                if link not in its_lost and wanted.get(link.link_path) == link:
                    del wanted[link.link_path]
                    losers.append((link, owner))
                    its_lost.append(link)

    def free(alt: DesiredLink) -> bool:
        return (
            alt.link_path not in claims
            and alt.link_path not in wanted
            and not _held_by_other(db, registered.get(alt.link_path), alt.model_id)
        )

    for link, owner in losers:
        renamed = None
        if link_count[link.model_id] == 1:
            renamed = next((alt for alt in plan_renamed(link) if free(alt)), None)
        elif len(lost[link.model_id]) == link_count[link.model_id]:
            # A file with its sidecars (twin.safetensors, twin.civitai.info, twin.preview.png)
            # lost every name: renamed together, so the app still pairs them by stem.
            renamed = next(
                (alt for alt in _renamed_with_stem(link, lost[link.model_id]) if free(alt)), None
            )
        if renamed is None:
            report.add(_skip(link, f"the link of {owner} has this name"))
            continue
        wanted[renamed.link_path] = renamed
    return wanted


def _renamed_with_stem(link: DesiredLink, group: list[DesiredLink]) -> list[DesiredLink]:
    """`link`'s other names when its model's links are one file and its sidecars, all in one
    folder and named after the file's stem: the file's renamed stem, with each sidecar's own
    ending (twin-2.civitai.info beside twin-2.safetensors). [] for any other group (a split
    set, whose names tie its parts together, is not renamed)."""
    weights = [g for g in group if g.link_path.suffix.lower() in MODEL_EXTENSIONS]
    if len(weights) != 1 or any(g.link_path.parent != link.link_path.parent for g in group):
        return []
    stem = weights[0].link_path.stem
    if not all(g.link_path.name.startswith(stem) for g in group):
        return []
    ending = link.link_path.name[len(stem):]
    return [
        replace(link, link_path=link.link_path.with_name(alt.link_path.stem + ending))
        for alt in plan_renamed(weights[0])
    ]


def _kept_renamed(
    db: sqlite3.Connection, link: DesiredLink, registered: dict[Path, dict[str, Any]]
) -> DesiredLink | None:
    """The renamed link this model already has in the app and that still works, unless it
    holds its plain name: so a renamed link keeps its name when the other model goes."""
    row = registered.get(link.link_path)
    if row is not None and row["model_id"] == link.model_id:
        return None
    for alt in plan_renamed(link):
        row = registered.get(alt.link_path)
        if row is not None and row["model_id"] == link.model_id and _holds(db, row):
            return alt
    return None


def _held_by_other(db: sqlite3.Connection, row: dict[str, Any] | None, model_id: str) -> bool:
    return row is not None and row["model_id"] != model_id and _holds(db, row)


def _holds(db: sqlite3.Connection, row: dict[str, Any]) -> bool:
    """A registered link that still works for a model still in the library."""
    state = link_state(Path(row["link_path"]), Path(row["target"]))
    return state == LinkState.OK and index.model_exists(db, row["model_id"])


def _skip(link: DesiredLink, reason: str) -> LinkChange:
    return LinkChange(
        SKIPPED, link.app, link.model_id, str(link.link_path), str(link.target), reason=reason
    )


def _handle_wanted(
    db: sqlite3.Connection,
    library: Library,
    link: DesiredLink,
    row: dict[str, Any] | None,
    report: SyncReport,
    counts: AppCounts,
    dry_run: bool,
) -> None:
    state = link_state(link.link_path, link.target)
    path, target = str(link.link_path), str(link.target)
    if state == LinkState.OK:
        counts.ok += 1
        kind = "symlink" if link.link_path.is_symlink() else "hardlink"
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
        report.add(_skip(link, f"{what} is there; left untouched"))
        return
    if dry_run:
        report.add(LinkChange(action, link.app, link.model_id, path, target))
        return
    try:
        if action == CREATED:
            made = make_link(link.link_path, link.target, link.is_dir)
        else:
            made = replace_link(link.link_path, link.target, link.is_dir)
    except FileExistsError:
        counts.conflicts += 1
        report.add(_skip(link, "something appeared at that path meanwhile; left untouched"))
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
                if path.is_symlink() and not path.exists() and points_into(path, root):
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
    elif path.is_symlink() and (
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
    return [
        {"app": t.name, "kind": t.kind, "path": str(t.path), **vars(report.counts[t.name])}
        for t in targets
    ]
