"""Options shared by several commands, defined once, and the one mechanism that adds them.

Global options may be given before the command (`modelimport --json status`) or after it
(`modelimport status --json`). A command says which it uses with `@global_options(...)`;
those appear in its help, the others are still accepted after it (hidden, ignored), so a
script that passes `--json` everywhere keeps working. The command receives them merged
as one `GlobalOptions` in its `opts` parameter.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def flag(*decls: str, help: str) -> Any:
    """An on/off option. Typer shows every option with a value type (`--json <bool>`), which
    tells people to type a value these do not take; an empty metavar shows none."""
    return typer.Option(*decls, metavar="", help=help)


@dataclass
class GlobalOptions:
    library: Path | None = None
    json: bool = False
    offline: bool = False
    yes: bool = False
    verbose: bool = False
    quiet: bool = False


# name -> (type, option declarations, help): each global option is declared here only. The
# root command offers all of them; `global_options` adds them to a command.
GLOBAL_OPTION_SPECS: dict[str, tuple[Any, tuple[str, ...], str]] = {
    "library": (
        Path | None,
        ("--library",),
        "Library root folder (default: the user data dir; env MODELIMPORT_LIBRARY).",
    ),
    "json": (bool, ("--json",), "Print machine-readable JSON on stdout."),
    "offline": (
        bool,
        ("--offline",),
        "Never contact the Hugging Face Hub or CivitAI (also HF_HUB_OFFLINE=1).",
    ),
    "yes": (bool, ("--yes", "-y"), "Accept the plan without asking; needed without a TTY."),
    "verbose": (bool, ("--verbose", "-v"), "Say more about each step."),
    "quiet": (bool, ("--quiet", "-q"), "No progress; print only errors and the summary."),
}


def _global_option(name: str, shown: bool = True, **extra: Any) -> Any:
    """The typer.Option of global option `name`, as GLOBAL_OPTION_SPECS declares it."""
    kind, decls, help_text = GLOBAL_OPTION_SPECS[name]
    if kind is bool:  # an on/off flag: no value type shown (see `flag`)
        return typer.Option(*decls, metavar="", help=help_text, hidden=not shown, **extra)
    return typer.Option(
        *decls, help=help_text, hidden=not shown, show_default=False, metavar="PATH", **extra
    )


# The root command's parameters. Only the root reads MODELIMPORT_LIBRARY, so that it never
# overrides a --library given before the command.
LibraryOpt = Annotated[Path | None, _global_option("library", envvar="MODELIMPORT_LIBRARY")]
JsonOpt = Annotated[bool, _global_option("json")]
OfflineOpt = Annotated[bool, _global_option("offline")]
YesOpt = Annotated[bool, _global_option("yes")]
VerboseOpt = Annotated[bool, _global_option("verbose")]
QuietOpt = Annotated[bool, _global_option("quiet")]

RefreshOpt = Annotated[bool, flag("--refresh", help="Bypass the on-disk Hub cache.")]
HubTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        callback=lambda value: _at_least(value, 0.1, "--timeout"),
        help="Seconds per Hub call before giving up (at least 0.1).",
    ),
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
        metavar="SECONDS",
        callback=lambda value: _at_least(value, 0, "--lookup-budget"),
        help="Seconds a batch waits for online lookups (run 8 at a time); models not "
        "identified by then are imported pending for retry-pending.",
    ),
]


def _at_least(value: float, minimum: float, name: str) -> float:
    if value < minimum:
        raise typer.BadParameter(f"{name} must be at least {minimum}, not {value}.")
    return value


def paths_argument(help: str) -> Any:
    """The PATH... argument of commands that take files. Typer would refuse an unreadable
    path as bad usage (exit 2) before the command runs; the command reports it per item.
    Each path is made absolute here, once, so that what the core records (metadata.json
    `sources`, results, `--delete-originals`, the "same path, unchanged" shortcut) names the
    file whatever folder a later command runs in, in the one path style of every view.
    What names nothing on disk is kept as typed: a model id (`shards --download-missing
    llm/llama/x`), or a missing path the command reports in the person's own words."""
    return typer.Argument(
        metavar="PATH",
        help=help,
        readable=False,
        callback=lambda paths: [
            absolute_path(p) if os.path.lexists(p) else p for p in paths or []
        ],
    )


def absolute_path(path: Path) -> Path:
    """`path` absolute, without `.` or `..`, its last component kept as given (a symlink to a
    model stays that symlink: the import copies the file behind it but never moves it).

    `..` is settled the way the kernel settles it, after following the links before it
    (`os.path.normpath` would cut `link/..` lexically and could name another folder), so
    the part up to the last `..` is resolved and the rest appended as typed."""
    path = path.absolute()
    if ".." not in path.parts:
        return path
    parts = path.parts
    last = len(parts) - 1 - parts[::-1].index("..")
    return Path(*parts[: last + 1]).resolve().joinpath(*parts[last + 1 :])


def _global_parameter(name: str, shown: bool) -> inspect.Parameter:
    kind = GLOBAL_OPTION_SPECS[name][0]
    return inspect.Parameter(
        f"global_{name}",
        inspect.Parameter.KEYWORD_ONLY,
        default=False if kind is bool else None,
        annotation=Annotated[kind, _global_option(name, shown)],
    )


def global_options(*used: str) -> Callable[[F], F]:
    """Give a command the global options; the ones in `used` are shown in its help.

    The decorated function may take `ctx: typer.Context` and must take `opts:
    GlobalOptions`, which is filled from the options given before and after the command.
    """
    unknown = set(used) - set(GLOBAL_OPTION_SPECS)
    if unknown:
        raise ValueError(f"unknown global options: {sorted(unknown)}")

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name not in ("ctx", "opts")]
        ctx_param = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        added = [_global_parameter(name, name in used) for name in GLOBAL_OPTION_SPECS]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            ctx = kwargs.pop("ctx")
            given = {name: kwargs.pop(f"global_{name}") for name in GLOBAL_OPTION_SPECS}
            if "ctx" in signature.parameters:
                kwargs["ctx"] = ctx
            return fn(*args, opts=resolve_options(ctx, **given), **kwargs)

        params = [ctx_param, *own, *added]
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the new signature, not fn's
        return command  # type: ignore[return-value]

    return decorate


def resolve_options(ctx: typer.Context, **given: object) -> GlobalOptions:
    """Merge command-level options over the ones given before the command."""
    base: GlobalOptions = ctx.find_root().obj or GlobalOptions()
    merged = GlobalOptions(**{f.name: getattr(base, f.name) for f in fields(GlobalOptions)})
    for key, value in given.items():
        if value not in (None, False):
            setattr(merged, key, value)
    return merged
