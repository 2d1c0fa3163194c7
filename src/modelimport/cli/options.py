"""Options shared by several commands, defined once.

Global options may be given before the command (`modelimport --json status`) or after it
(`modelimport status --json`); `resolve_options` merges both. So every command declares all
five global options, and one that does not apply to it is accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer


def flag(*decls: str, help: str) -> Any:
    """An on/off option. Typer shows every option with a value type (`--json <bool>`), which
    tells people to type a value these do not take; an empty metavar shows none."""
    return typer.Option(*decls, metavar="", help=help)


LibraryOpt = Annotated[
    Path | None,
    typer.Option(
        "--library",
        envvar="MODELIMPORT_LIBRARY",
        help="Library root folder (default: the user data dir; env MODELIMPORT_LIBRARY).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, flag("--json", help="Print machine-readable JSON on stdout.")]
OfflineOpt = Annotated[
    bool,
    flag(
        "--offline",
        help="Never contact the Hugging Face Hub or CivitAI (also HF_HUB_OFFLINE=1).",
    ),
]
YesOpt = Annotated[
    bool, flag("--yes", "-y", help="Accept the plan without asking; needed without a TTY.")
]
RefreshOpt = Annotated[bool, flag("--refresh", help="Bypass the on-disk Hub cache.")]
HubTimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds per Hub call before giving up.")
]
NoCivitaiOpt = Annotated[
    bool,
    flag(
        "--no-civitai",
        help="Do not ask CivitAI about file hashes (also MODELIMPORT_CIVITAI=0, or "
        "`civitai = false` under [sources] in config.toml).",
    ),
]
LookupBudgetOpt = Annotated[
    float,
    typer.Option(
        "--lookup-budget",
        min=0,
        metavar="SECONDS",
        help="Seconds a batch waits for online lookups (run 8 at a time); models not "
        "identified by then are imported pending for retry-pending.",
    ),
]
VerboseOpt = Annotated[bool, flag("--verbose", "-v", help="Say more about each step.")]


def paths_argument(help: str) -> Any:
    """The PATH... argument of commands that take files. Typer would refuse an unreadable
    path as bad usage (exit 2) before the command runs; the command reports it per item."""
    return typer.Argument(metavar="PATH", help=help, readable=False)


@dataclass
class GlobalOptions:
    library: Path | None = None
    json: bool = False
    offline: bool = False
    yes: bool = False
    verbose: bool = False


def resolve_options(ctx: typer.Context, **given: object) -> GlobalOptions:
    """Merge command-level options over the ones given before the command."""
    base: GlobalOptions = ctx.find_root().obj or GlobalOptions()
    merged = GlobalOptions(**vars(base))
    for key, value in given.items():
        if value not in (None, False):
            setattr(merged, key, value)
    return merged
