"""Which model's link has which name in an app folder: one model per path, compared as
a case-insensitive filesystem compares names, so a link's name is the same on every system.

Invariant: two models never share a link path (nor two paths that differ only in case); a
second file of one name is linked under its model's name, and a link that works keeps the
name an app's workflows use.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelimport.apps.links import LinkState, link_state
from modelimport.apps.plan import DesiredLink, desired_links
from modelimport.apps.plan import renamed as plan_renamed
from modelimport.apps.report import FAILED, LinkChange, SyncReport, skip_change
from modelimport.apps.targets import AppTarget
from modelimport.library import index
from modelimport.library.contained import OutsideLibrary, inside
from modelimport.library.layout import is_within
from modelimport.names import MODEL_EXTENSIONS


def assign_paths(
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
    claims: dict[str, list[DesiredLink]] = {}  # by the case-folded path
    link_count: dict[str, int] = {}
    wanted: dict[Path, DesiredLink] = {}
    links_of: dict[str, list[DesiredLink]] = {}
    for model_id, record in records:
        links = desired_links(target, library_root, model_id, record)
        links = _contained(links, library_root, report)
        link_count[model_id] = len(links)
        links_of[model_id] = links
        for link in links:
            kept = _kept_renamed(db, link, registered) if len(links) == 1 else None
            if kept is not None:  # linked under its own name before: that name stays
                wanted[kept.link_path] = kept
            else:
                claims.setdefault(_fold(link.link_path), []).append(link)
    wanted_folded = {_fold(path): link for path, link in wanted.items()}
    registered_folded = {_fold(path): row for path, row in registered.items()}
    losers: list[tuple[DesiredLink, str]] = []
    for key, links in claims.items():
        if key in wanted_folded:  # another model's renamed link has this name, and keeps it
            losers += [(link, wanted_folded[key].model_id) for link in links]
            continue
        row = registered_folded.get(key)
        holder = row["model_id"] if row is not None and _holds(db, row) else None
        claimants = [link.model_id for link in links]
        if holder is not None and holder not in claimants and not prune:
            # Linking new models only: another model's link is there and stays.
            losers += [(link, holder) for link in links]
            continue
        # With prune, a holder that no longer wants this path loses its link to the stale
        # pass, so the path is free for the claimants.
        keeper = next((link for link in links if link.model_id == holder), links[0])
        wanted[keeper.link_path] = wanted_folded[key] = keeper
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
        key = _fold(alt.link_path)
        return (
            key not in claims
            and key not in wanted_folded
            and not _held_by_other(db, registered_folded.get(key), alt.model_id)
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
            report.add(skip_change(link, f"the link of {owner} has this name"))
            continue
        wanted[renamed.link_path] = wanted_folded[_fold(renamed.link_path)] = renamed
    return wanted


def _fold(path: Path) -> str:
    """A link path as a case-insensitive filesystem (NTFS, APFS, exFAT) compares it. Two
    names that differ only in case are one name there; treating them so everywhere keeps a
    model's link name the same on every system."""
    return str(path).casefold()


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


def _contained(
    links: list[DesiredLink], library_root: Path, report: SyncReport
) -> list[DesiredLink]:
    """The links whose target stays inside the library with no link on the way; the others
    (a hand-edited metadata.json naming `../../secret.txt`, a folder made a symlink) are
    reported and never made."""
    kept = []
    for link in links:
        # An absolute name replaced the whole path: it is no longer below the library at all.
        relative = os.path.relpath(link.target, library_root)
        try:
            inside(library_root, relative, f"the metadata.json of {link.model_id}")
        except OutsideLibrary as exc:
            path = str(link.link_path)
            report.add(LinkChange(FAILED, link.app, link.model_id, path, None, reason=str(exc)))
            continue
        if is_within(link.link_path.parent, library_root):
            # an app folder that is a link into the library (models/loras -> the library):
            # modelimport never makes a link inside its library
            folder = link.link_path.parent
            reason = (f"{folder} leads into the library ({os.path.realpath(folder)}); no link "
                      "is made there")
            report.add(LinkChange(FAILED, link.app, link.model_id, str(link.link_path), None,
                                  reason=reason))
            continue
        kept.append(link)
    return kept
