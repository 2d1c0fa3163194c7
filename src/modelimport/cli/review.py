"""The import review on a terminal: the plan, then what the person decides.

Answers: Enter or `y` imports all; `n` (or `c`) cancels; `s 3`, `s 1-5,9`, `s lora` skips
items by number, range or model type, `u ...` takes skipped ones back; `e N` edits item N
(name, type, family, subtype, tags, notes: it is then recorded as manual); `l` lists the next
rows (`l 300-340`, `l lora`: a part); `m` switches between copy and move; `d` shows or hides
the details (hashes, repo, matched file, why). Numbers never change while reviewing.

A plan longer than a page is shown as a summary by type and its first rows; an answer then
prints what it changed, not the plan again, so 2,000 items stay readable (and a few kB). What
each answer does to the plan is decided in `importer.review`; this module only asks and
draws.
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
    ReviewItems,
    current_value,
    destination_of,
    edit_model,
    number_ranges,
    type_summary,
)
from modelimport.library.layout import Library

HELP = "Enter/y import · n cancel · s 3,5-9|TYPE skip · u undo · e N edit · l list · ? more"
FULL_HELP = """\
  Enter, y     import every model still planned
  n            cancel: nothing is imported
  s 3          skip item 3; also s 1-5, s 3,7,9, s 2-4 9, or a type: s lora, s embedding
  u 3          take skipped items back (same forms as s)
  e 3          edit item 3: name, type, family, subtype, tags, notes
  l            list the next rows; l 300-340 or l lora lists a part
  m            switch between copy and move
  d            show or hide details (hashes, repo, matched file, why) in the rows listed
  ?            this help"""

# A plan of at most this many models is shown whole after every answer; a longer one is a
# summary by type and this many rows at a time.
PAGE_ROWS = 20


@dataclass
class ReviewOutcome:
    proceed: bool
    move: bool


@dataclass
class _Listing:
    """The rows `l` shows next: the numbers last asked for, and how far they were shown."""

    numbers: list[int]
    shown: int = 0


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
    items = ReviewItems(plan)
    paged = len(items.numbered) > PAGE_ROWS
    listing = _Listing(items.planned_numbers())
    if paged:
        _render_summary(console, items, move)
        _list_next(console, items, listing, library, db, move, details)
    redraw = not paged
    while True:
        if not plan.models:
            console.print("Every model was skipped.")
            return ReviewOutcome(False, move)
        if redraw:
            _render_rows(console, items, items.planned_numbers(), library, db, move, details)
        redraw = not paged
        answer = typer.prompt(
            f"Import {len(plan.models):,} model(s)? ({HELP})",
            default="y",
            show_default=False,
            err=True,
        ).strip()
        word, _, rest = answer.partition(" ")
        word = word.lower()
        if word in ("", "y", "yes", "a", "all"):
            items.settle_skipped()
            return ReviewOutcome(True, move)
        if word in ("n", "no", "c", "cancel", "q"):
            return ReviewOutcome(False, move)
        try:
            if word == "m":
                move = not move
                if paged:
                    console.print(f"Now: {_mode(move)} into the library.")
            elif word == "d":
                details = not details
                if paged:
                    console.print(f"Details {'on' if details else 'off'} in the rows `l` lists.")
            elif word in ("s", "skip", "u", "undo"):
                _skip_or_take_back(console, items, word.startswith("s"), rest)
                listing = _Listing(items.planned_numbers())
            elif word in ("e", "edit"):
                number = _one_item(items, rest)
                _edit(console, items.model(number))
                if paged:
                    _render_rows(console, items, [number], library, db, move, details)
            elif word in ("l", "list", "more", "p"):
                if rest.strip():
                    wanted = set(items.select(rest))
                    listing = _Listing([n for n in items.planned_numbers() if n in wanted])
                elif listing.shown >= len(listing.numbers):
                    listing = _Listing(items.planned_numbers())  # from the top again
                _list_next(console, items, listing, library, db, move, details)
                redraw = False
            elif word in ("?", "h", "help"):
                console.print(FULL_HELP, markup=False, highlight=False)
                redraw = False
            else:
                console.print(f"Not understood: {answer!r}. {HELP}.", markup=False)
                redraw = False
        except UsageError as exc:
            console.print(str(exc), markup=False)
            redraw = False


def _skip_or_take_back(console: Console, items: ReviewItems, skip: bool, text: str) -> None:
    numbers = items.select(text)
    done = items.skip(numbers) if skip else items.take_back(numbers)
    if not done:
        state = "already skipped" if skip else "not skipped"
        console.print(f"Item(s) {number_ranges(numbers)}: {state}.", markup=False)
        return
    if len(done) == 1:
        name = items.model(done[0]).group.display_name
        what = f"{name} (item {done[0]})" if skip else f"item {done[0]}, {name}"
    else:
        what = f"{len(done):,} models (items {shorten_middle(number_ranges(done), 60)})"
    verb = "Skipped" if skip else "Taken back:"
    console.print(f"{verb} {what}.", markup=False, highlight=False)


def _one_item(items: ReviewItems, text: str) -> int:
    numbers = items.select(text)
    if len(numbers) != 1 or not text.strip().isdigit():
        raise UsageError(f"Give one item number from 1 to {len(items.numbered)}, e.g. 'e 1'.")
    if numbers[0] in items.skipped:
        raise UsageError(f"Item {numbers[0]} is skipped; 'u {numbers[0]}' takes it back.")
    return numbers[0]


def _mode(move: bool) -> str:
    return "move" if move else "copy"


def _render_summary(console: Console, items: ReviewItems, move: bool) -> None:
    """The plan by model type: how many models and bytes of each, and how many skipped."""
    planned = items.plan.models
    total = sum(m.total_size for m in planned)
    console.print(
        f"Import plan: {len(planned):,} models, {human_size(total)} ({_mode(move)} into the "
        "library), by type:",
        markup=False,
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("type", "models", "size"):
        table.add_column(header, no_wrap=True, justify="left" if header == "type" else "right")
    for model_type, count, size in type_summary(planned):
        table.add_row(model_type, f"{count:,}", human_size(size))
    console.print(table)
    _render_settled(console, items.plan)


def _list_next(
    console: Console,
    items: ReviewItems,
    listing: _Listing,
    library: Library,
    db: sqlite3.Connection,
    move: bool,
    details: bool,
) -> None:
    """The next page of the current listing, and how to see more."""
    page = listing.numbers[listing.shown : listing.shown + PAGE_ROWS]
    if not page:
        console.print("No planned item there.")
        return
    _render_rows(console, items, page, library, db, move, details, settled=False)
    listing.shown += len(page)
    left = len(listing.numbers) - listing.shown
    more = f"; `l` shows the next {min(left, PAGE_ROWS)}" if left else ""
    console.print(
        f"Items {number_ranges(page)} shown ({listing.shown:,} of {len(listing.numbers):,})"
        f"{more}; `l 300-340` or `l lora` lists a part, `?` all answers.",
        markup=False,
        highlight=False,
    )


def _render_rows(
    console: Console,
    items: ReviewItems,
    numbers: list[int],
    library: Library,
    db: sqlite3.Connection,
    move: bool,
    details: bool,
    settled: bool = True,
) -> None:
    # Destinations depend on every planned model (two of one name get suffixes in order).
    everyone = destination_of(items.plan, library, db)
    where = dict(zip(items.planned_numbers(), everyone, strict=True))
    rows = [(n, items.model(n), where[n]) for n in numbers if n in where]
    render_plan(console, rows, move, details, width_of_number=len(str(len(items.numbered))))
    if settled:
        _render_settled(console, items.plan)


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
    planned_rows: list[tuple[int, PlannedModel, str]],
    move: bool,
    details: bool = False,
    width_of_number: int = 1,
) -> None:
    """One row per (number, model, model id it will get): its name over that id, files and
    size, type/family, precision and trust. Long names and ids lose their middle, never
    their end, and the table fits the terminal: the name column takes what the others
    leave."""
    rows = []
    for number, m, dest in planned_rows:
        rows.append(
            (
                str(number).rjust(width_of_number),
                _name(m),
                dest,
                f"{_files(m)}, {human_size(m.total_size)}",
                f"{m.model_type}/{m.family}",
                str(m.probe.precision or "-"),
                _trust(m),
            )
        )
    needs = {
        str(n).rjust(width_of_number): "pickle needs classes: " + ", ".join(m.probe.pickle_needs)
        for n, m, _ in planned_rows
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
        # Two-line headers too, as narrow as the values under them: what they save goes to
        # the names (an 80-column row showed "→ embeddin…15/emb-0003").
        headers = ("#", "name → model id", "files, size\ntrust", "type/family\nprecision")
        others = [others[0], max(others[1], others[4]), max(others[2], others[3], 11)]
        room = console.width - 3 * len(headers) - (others[0] + others[2])
    names = max(max(len(r[1]), len(r[2]) + 2) for r in rows)
    files_header = max(len(line) for line in headers[2].splitlines())
    files_width = min(max(others[1], files_header), max(FILES_MIN_WIDTH, room - names))
    name_width = max(NAME_MIN_WIDTH, room - files_width)
    table = Table(
        title=f"Import plan ({_mode(move)} into the library)",
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
        for number, m, _ in planned_rows:
            for line in detail_lines(m):
                console.print(f"  {number}. {line}", markup=False, highlight=False)


def _render_settled(console: Console, plan: ImportPlan) -> None:
    """What was decided without a review (rejected, duplicate, failed), folded after a page:
    the import's results name every one again."""
    settled = [r for r in plan.settled if r.status != "skipped"]
    for r in settled[:PAGE_ROWS]:
        console.print(
            f"{r.status}: {', '.join(r.sources)}: {r.error or r.model_id}", markup=False
        )
    if len(settled) > PAGE_ROWS:
        console.print(
            f"... and {len(settled) - PAGE_ROWS:,} more not to import (the results name them)."
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
