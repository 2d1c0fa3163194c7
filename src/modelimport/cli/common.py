"""Helpers shared by command modules: opening the library, exit codes, size formatting."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
) -> OpenLibrary:
    """Open the library for a command; `read_only_ok` for commands that only read (they work
    on a library this user may not write), `rebuild_damaged` for `rescan`."""
    # Imported here, not at the top: `--help` loads this module but never opens a library.
    from modelimport.library.maintenance import open_library

    opened = open_library(
        resolve_library_root(opts.library),
        create=create,
        read_only_ok=read_only_ok,
        rebuild_damaged=rebuild_damaged,
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
    if opened.rebuilt is not None and opened.read_only:
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
