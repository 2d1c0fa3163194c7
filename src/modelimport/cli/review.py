"""The import review on a terminal: the plan as a table, then what the person decides.

Answers: Enter or `y` imports all; `n` (or `c`) cancels; `s N` skips item N; `e N` edits
item N (name, type, family, subtype, tags, notes: it is then recorded as manual); `m`
switches between copy and move; `d` shows or hides the details (hashes, repo, matched file,
why). What each answer does to the plan is decided in `importer.review`; this module only
asks and draws.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelimport.cli.common import human_count, human_size, shorten_middle, trust_badge
from modelimport.errors import UsageError
from modelimport.importer.pipeline import ImportPlan, PlannedModel
from modelimport.importer.review import (
    EDITABLE_FIELDS,
    current_value,
    destination_of,
    edit_model,
    skip_model,
)
from modelimport.library.layout import Library

HELP = "Enter/y import all · n cancel · s N skip · e N edit · m copy/move · d details"


@dataclass
class ReviewOutcome:
    proceed: bool
    move: bool


def review_plan(
    console: Console,
    plan: ImportPlan,
    library: Library,
    db: sqlite3.Connection,
    move: bool,
    details: bool,
) -> ReviewOutcome:
    """Show the plan and act on answers until the person imports or cancels."""
    confirm_low_confidence(plan)
    while True:
        if not plan.models:
            console.print("Every model was skipped.")
            return ReviewOutcome(False, move)
        destinations = destination_of(plan, library, db)
        render_plan(console, plan, destinations, move, details)
        answer = typer.prompt(
            f"Import {len(plan.models)} model(s)? ({HELP})",
            default="y",
            show_default=False,
            err=True,
        ).strip()
        word, _, rest = answer.partition(" ")
        word = word.lower()
        if word in ("", "y", "yes", "a", "all"):
            return ReviewOutcome(True, move)
        if word in ("n", "no", "c", "cancel", "q"):
            return ReviewOutcome(False, move)
        if word == "m":
            move = not move
        elif word == "d":
            details = not details
        elif word in ("s", "skip", "e", "edit"):
            planned = _item(console, plan, rest)
            if planned is None:
                continue
            if word.startswith("s"):
                skip_model(plan, planned)
                console.print(f"Skipped {planned.group.display_name}.", markup=False)
            else:
                _edit(console, planned)
        else:
            console.print(f"Not understood: {answer!r}. {HELP}.", markup=False)


def _item(console: Console, plan: ImportPlan, text: str) -> PlannedModel | None:
    try:
        number = int(text.strip())
        if not 1 <= number <= len(plan.models):
            raise ValueError
    except ValueError:
        console.print(f"Give an item number from 1 to {len(plan.models)}, e.g. 's 1'.")
        return None
    return plan.models[number - 1]


def _edit(console: Console, planned: PlannedModel) -> None:
    console.print(
        f"Editing {planned.group.display_name} (Enter keeps a value):", markup=False
    )
    for field, spec in EDITABLE_FIELDS.items():
        now = current_value(planned, field)
        shown = ", ".join(now) if isinstance(now, list) else (now or "")
        while True:
            typed = typer.prompt(f"  {spec.label}", default=shown, err=True)
            if typed == shown:
                break
            try:
                edit_model(planned, field, typed)
                break
            except UsageError as exc:
                console.print(str(exc), markup=False)


def confirm_low_confidence(plan: ImportPlan) -> None:
    """A fuzzy name match is a guess: a person accepts or drops each one. A dropped guess is
    still settled by the copy's SHA256: equal to the Hub's, it is verified after all."""
    for model in plan.models:
        lookup = model.lookup
        if lookup is None or str(lookup.trust) != "low_confidence":
            continue
        question = (
            f"{model.group.display_name}: low-confidence match {lookup.repo_id} "
            f"({lookup.confidence:.0%}). Accept it?"
        )
        if typer.confirm(question, default=False, err=True):
            model.match_confirmed = True
        else:
            model.match_declined = True


def _trust(planned: PlannedModel) -> Text:
    lookup = planned.lookup
    trust = None
    if lookup is not None and not lookup.hub_error:
        trust = str(lookup.trust)
    return trust_badge(trust, unsafe_pickle=planned.probe.unsafe_pickle)


def render_plan(
    console: Console,
    plan: ImportPlan,
    destinations: list[str],
    move: bool,
    details: bool = False,
) -> None:
    """One row per model: its name over the model id it will get, files and size,
    type/family, precision and trust. Long names and ids lose their middle, never their end,
    and the table fits the terminal: the name column takes what the others leave."""
    rows = []
    for number, (m, dest) in enumerate(zip(plan.models, destinations, strict=True), 1):
        rows.append(
            (
                str(number),
                _name(m),
                dest,
                f"{_files(m)}, {human_size(m.total_size)}",
                f"{m.model_type}/{m.family}",
                str(m.probe.precision or "-"),
                _trust(m),
            )
        )
    needs = {
        str(n): "pickle needs classes: " + ", ".join(m.probe.pickle_needs)
        for n, m in enumerate(plan.models, 1)
        if getattr(m.probe, "pickle_needs", ())
    }
    headers = ("#", "name → model id", "files, size", "type/family", "precision", "trust")
    others = [
        max([len(headers[i])] + [len(str(r[i + 1] if i else r[0])) for r in rows])
        for i in (0, 2, 3, 4, 5)
    ]
    # What the other columns need, plus the gaps between columns; the name and files columns
    # share the rest. A folder's description ("folder all-MiniLM-L6-v2/ (13 files,
    # transformers), 87.4 MiB") wraps in its column before any name loses its middle; the
    # short descriptions of files and sets never wrap.
    room = console.width - 3 * len(headers) - (sum(others) - others[1])
    # On a narrow terminal (80 columns) the six columns leave the names nothing: precision
    # goes under type/family and trust under files and size, two lines a row.
    compact = room - FILES_MIN_WIDTH < NAME_MIN_WIDTH
    if compact:
        headers = ("#", "name → model id", "files, size / trust", "type/family / precision")
        others = [others[0], others[1], max(others[2], others[3], len(headers[3]))]
        room = console.width - 3 * len(headers) - (others[0] + others[2])
    names = max(max(len(r[1]), len(r[2]) + 2) for r in rows)
    files_width = min(max(others[1], len(headers[2])), max(FILES_MIN_WIDTH, room - names))
    name_width = max(NAME_MIN_WIDTH, room - files_width)
    table = Table(
        title=f"Import plan ({'move' if move else 'copy'} into the library)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header in headers:
        if header == "name → model id":
            table.add_column(header, no_wrap=True, width=name_width)
        elif header.startswith("files, size"):
            table.add_column(header, width=files_width, overflow="fold")
        else:
            table.add_column(header, no_wrap=True)
    for number, name, dest, size, kind, precision, trust in rows:
        cell = Text(shorten_middle(name, name_width))
        cell.append("\n→ " + shorten_middle(dest, name_width - 2), style="dim")
        if needs.get(number):
            # Harmless on its own; the record names the classes a loader needs.
            cell.append("\n" + shorten_middle(needs[number], name_width), style="dim")
        if compact:
            table.add_row(number, cell, Text(size + "\n").append_text(trust),
                          Text(kind + "\n").append(precision, style="dim"))
        else:
            table.add_row(number, cell, size, Text(kind), Text(precision), trust)
    console.print(table)
    if details:
        for number, m in enumerate(plan.models, 1):
            for line in detail_lines(m):
                console.print(f"  {number}. {line}", markup=False, highlight=False)
    for r in plan.settled:
        if r.status != "skipped":
            console.print(
                f"{r.status}: {', '.join(r.sources)}: {r.error or r.model_id}", markup=False
            )


# A bundle's folder name in the files column is cut in the middle beyond this, so that one
# long folder name does not take the width the name column needs.
FOLDER_NAME_WIDTH = 28
NAME_MIN_WIDTH = 20  # the name column never gets less
FILES_MIN_WIDTH = 20  # the narrowest a folder's description wraps at (wider than "set of 3,
# 768.0 MiB", so a file or a set never wraps)


def _files(m: PlannedModel) -> str:
    """What the model is made of: a folder that is one model (with its file count and kind),
    a sharded set (its shards), or a file with its sidecars."""
    group = m.group
    if group.bundle is not None:
        folder = shorten_middle(group.bundle.display_name, FOLDER_NAME_WIDTH)
        return f"folder {folder} ({len(group.all_paths)} files, {group.bundle.kind})"
    if group.is_sharded:
        shards, total = len(group.files), group.shard_total or len(group.files)
        return f"set of {shards}" if shards == total else f"set, {shards} of {total} shards"
    count = len(group.all_paths)
    return f"{count} file" + "s" * (count > 1)


def _name(m: PlannedModel) -> str:
    """The file's own name, which people recognise; the edited name once there is one."""
    return m.user_edits.get("cleaned_name") or m.group.display_name


def detail_lines(m: PlannedModel) -> list[str]:
    """Hashes, repo, matched file and why the match was chosen, for `--details`."""
    lines = [f"{m.group.display_name}: {', '.join(m.sources)}"]
    for name, fast in m.fast_hashes.items():
        lines.append(f"   fast hash {name}: {fast} (SHA256 and BLAKE3 come from the copy)")
    params = m.probe.parameter_count
    if params:
        lines.append(f"   parameters: {human_count(params)}")
    lookup: Any = m.lookup
    if lookup is None:
        lines.append("   Hub: not asked (offline); retry-pending looks it up later")
    elif lookup.hub_error:
        lines.append(f"   Hub: not looked up ({lookup.hub_error})")
    elif lookup.repo_id:
        lines.append(f"   repo: {lookup.repo_id}")
        for local, remote in lookup.matched_files.items():
            lines.append(f"   matched file: {local} = {remote}")
        why = {
            "hash": "the SHA256 equals the Hub's",
            "filename_exact": "same file name and size as in the repo"
            + (" (SHA256 compared while copying)" if lookup.pending_verification else ""),
            "filename_fuzzy": "a similar file name only",
            "hash_mismatch": "the name matched but the bytes differ",
        }.get(lookup.match_method or "", str(lookup.match_method))
        lines.append(f"   why: {why}; confidence {lookup.confidence:.2f}")
        for sha_name, sha in lookup.expected_sha256.items():
            lines.append(f"   Hub SHA256 {sha_name}: {sha}")
    else:
        lines.append("   Hub: no match")
    return lines
