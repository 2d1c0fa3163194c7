"""Helpers shared by command modules: opening the library, exit codes, size formatting."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from modelimport.cli.options import GlobalOptions
from modelimport.cli.output import Output
from modelimport.config import resolve_library_root
from modelimport.names import human_size  # noqa: F401 - the CLI modules import it from here

if TYPE_CHECKING:
    from modelimport.library.maintenance import OpenLibrary


def open_for(
    opts: GlobalOptions,
    out: Output,
    create: bool = True,
    read_only_ok: bool = False,
    rebuild_damaged: bool = False,
    reconcile: bool = True,
) -> OpenLibrary:
    """Open the library for a command; `read_only_ok` for commands that only read (they work
    on a library this user may not write), `rebuild_damaged` for `rescan`, not `reconcile`
    for `check` (which reports an index that disagrees with the folders)."""
    # Imported here, not at the top: `--help` loads this module but never opens a library.
    from modelimport.library.maintenance import open_library

    opened = open_library(
        resolve_library_root(opts.library),
        create=create,
        read_only_ok=read_only_ok,
        rebuild_damaged=rebuild_damaged,
        reconcile=reconcile,
    )
    rec = opened.recovery
    if rec.rolled_back or rec.completed:
        out.info(
            f"Recovered interrupted imports: {rec.rolled_back} rolled back, "
            f"{rec.completed} completed."
        )
    for problem in rec.problems:
        out.error(problem)
    if opened.damaged_index is not None:
        out.info(f"The index was damaged; it was kept aside as {opened.damaged_index}.")
    if opened.reconciled is not None:
        added, dropped = opened.reconciled
        out.info(
            f"The index did not match the model folders on disk; indexed {added} from their "
            f"metadata.json and forgot {dropped} whose folder is gone."
        )
    if opened.disk_full:
        out.info(
            f"The disk holding the library at {opened.library.root} is full; read it without "
            + (
                f"the index, from {opened.rebuilt} metadata.json file(s)"
                if opened.rebuilt is not None
                else "writing"
            )
            + " (nothing was changed)."
        )
    elif opened.rebuilt is not None and opened.read_only:
        out.info(
            f"The index is missing or unreadable and the library is read-only here; read "
            f"{opened.rebuilt} metadata.json file(s) instead (nothing was written)."
        )
    elif opened.rebuilt is not None:
        out.info(f"The index was missing; rebuilt it from {opened.rebuilt} metadata.json file(s).")
    return opened


def human_count(count: int) -> str:
    """A parameter count as people say it: 22.7M, 8.03B."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return str(count)


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` terminal cells, cut in the middle: the end of a model's
    name (its quantisation, its extension) says the most and is never cut. Cells, not
    characters: an emoji or a CJK letter takes two, and a cell too many makes the table cut
    the end after all."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    if width < 5:
        return _last_cells(text, width)
    tail = _last_cells(text, (width - 1) * 3 // 5)
    head_room = width - 1 - cell_len(tail)
    head = ""
    for char in text:
        if cell_len(head + char) > head_room:
            break
        head += char
    return head + "…" + tail


def _last_cells(text: str, width: int) -> str:
    """The longest end of `text` that fits in `width` cells."""
    from rich.cells import cell_len

    tail = ""
    for char in reversed(text):
        if cell_len(char + tail) > width:
            break
        tail = char + tail
    return tail


# Control characters (a newline in a file name) would split one item over two lines of a
# pipe's output; they are shown escaped as Python writes them (\n, \t, \x1b).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """`text` with its control characters escaped, so it stays on one line."""
    return CONTROL_CHARACTERS.sub(lambda m: repr(m.group())[1:-1], text)


def aligned_columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns two spaces apart, last column unpadded, like `ls -l`; one line
    per row whatever the cells hold (control characters are escaped)."""
    rows = [tuple(one_line(cell) for cell in row) for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


# One vocabulary for trust, in every view: JSON value -> (label, style). A model with no
# answer from the Hub yet has trust_level null and claims nothing.
TRUST_LABELS: dict[str | None, tuple[str, str]] = {
    "verified": ("Verified", "green"),
    "high_confidence": ("High confidence", "blue"),
    "low_confidence": ("Low confidence", "yellow"),
    "modified": ("Modified", "yellow"),
    "no_match": ("No match", "dim"),
    None: ("Lookup pending", "dim"),
}
FLAGGED_PICKLE = ("Flagged pickle", "red")


def trust_label(trust: str | None) -> str:
    return TRUST_LABELS.get(trust, (str(trust), ""))[0]


def trust_badge(trust: str | None, unsafe_pickle: bool = False) -> Text:
    """The badge a person sees: its words, in its colour (plain where colour is off)."""
    label, style = FLAGGED_PICKLE if unsafe_pickle else TRUST_LABELS.get(trust, (str(trust), ""))
    return Text(label, style=style)


def complete_model_id(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of model ids, read from the index (read-only, quick, silent: a
    completion that fails offers nothing rather than printing into the shell)."""
    import sqlite3

    try:
        given = ctx.params.get("global_library") or ctx.find_root().params.get("library")
        root = resolve_library_root(given)
        path = root / ".modelimport" / "index.sqlite"
        if not path.is_file():
            return []
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            prefix = incomplete.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = db.execute(
                "SELECT model_id FROM models WHERE model_id LIKE ? ESCAPE '\\' "
                "ORDER BY model_id LIMIT 500",
                (prefix + "%",),
            ).fetchall()
        finally:
            db.close()
    except Exception:  # noqa: BLE001 - completion must never break the shell
        return []
    return [r[0] for r in rows]


# The MODEL_ID... argument of commands acting on library models (remove, mark-manual).
ModelIdsArg = Annotated[
    list[str],
    typer.Argument(
        metavar="MODEL_ID",
        help="Model ids (type/family/slug, as `list` shows them).",
        autocompletion=complete_model_id,
    ),
]
