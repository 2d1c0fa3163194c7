"""The `modelimport` Typer app: global options, command registration, one error formatter."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from modelimport.cli.options import (
    GlobalOptions,
    JsonOpt,
    LibraryOpt,
    OfflineOpt,
    QuietOpt,
    VerboseOpt,
    YesOpt,
)
from modelimport.errors import ModelImportError

app = typer.Typer(
    name="modelimport",
    help=(
        "Import local AI model files (.safetensors, .gguf, .ckpt, .pt, .pth, .bin, folders, "
        "sharded sets) into one managed library: hashed, identified, described and indexed."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"modelimport {version('modelimport')}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    library: LibraryOpt = None,
    json_: JsonOpt = False,
    offline: OfflineOpt = False,
    yes: YesOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            metavar="",
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(library, json_, offline, yes, verbose, quiet)


def _register() -> None:
    # Command modules register themselves on import; each keeps its heavy imports inside
    # its command functions so `--help` stays fast.
    # In this order: it is the order `--help` lists the commands in.
    import importlib

    for module in (
        "import_cmd", "library_cmds", "lookup_cmd", "pending_cmd", "apps_cmd", "index_cmd"
    ):
        importlib.import_module(f"modelimport.cli.{module}")


def main() -> None:
    """Console entry point: runs the app and turns every known error into one sentence."""
    utf8_console()
    _register()
    command = typer.main.get_command(app)
    plain_argument_help(command)
    try:
        # Non-standalone: click returns an Exit's code instead of exiting, and lets our
        # own exceptions through to the formatter below.
        code = command.main(prog_name="modelimport", standalone_mode=False)
    except ModelImportError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(130)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        sentence = _environment_error(exc)
        if sentence is not None:
            sys.stderr.write(f"Error: {sentence}\n")
            sys.exit(1)
        # Click's usage errors (bad option, missing argument) carry their exit code and
        # know how to show themselves; typer vendors click, so match by shape, not class.
        exit_code = getattr(exc, "exit_code", None)
        if not isinstance(exit_code, int):
            _report_bug(exc)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        sys.exit(exit_code)
    if code == 130:
        _interrupted()  # typer turns Ctrl-C inside a command into Exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def utf8_console() -> None:
    """Model names are often not ASCII (a Chinese or Japanese author's LoRA, an accented
    folder). Where stdout or stderr cannot show them (Windows piped to a file or another
    program writes its ANSI code page, cp1252; LANG=C; PYTHONIOENCODING=ascii), they write
    UTF-8 instead, and anything still unencodable becomes "?", never a UnicodeEncodeError.
    The Windows console itself is UTF-8 already (Python writes it as UTF-16)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding not in ("utf8", "utf_8") and hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")


def plain_argument_help(command: Any) -> None:
    """Arguments show their name only (`PATH...`), not Typer's Python type (`<list[Path]>`),
    which tells a person nothing they can type."""
    for param in command.params:
        if param.param_type_name == "argument" and param.metavar:
            name = param.metavar + ("..." if param.nargs != 1 else "")
            param.display_type_rich = lambda ctx: None
            param.get_usage_pieces = lambda ctx, name=name: [name]
    for sub in getattr(command, "commands", {}).values():
        plain_argument_help(sub)  # and a group's commands (`apps add`)


def _environment_error(exc: BaseException) -> str | None:
    """A full disk or a busy index that reached us from a step that does not name it itself:
    one sentence, not a bug report (every write is atomic or in a transaction, so what was
    there is as it was)."""
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"The disk is full{where}; free some space and run the command again."
    if isinstance(exc, sqlite3.Error):
        from modelimport.library.index_file import error_kind

        kind = error_kind(exc, None)
        if kind == "full":
            return (
                "The disk holding the library's index is full; free some space and run the "
                "command again."
            )
        if kind == "busy":
            return (
                "The library is busy: another process holds its index; try again when it "
                "has finished."
            )
    return None


def _interrupted() -> None:
    sys.stderr.write(
        "Interrupted; nothing half-imported is left: an unfinished model was rolled back "
        "(or, if it was already in place, the next command finishes indexing it).\n"
    )
    sys.exit(130)


def _report_bug(exc: BaseException) -> None:
    """An exception we did not expect is a bug: one line, the traceback only on request."""
    if os.environ.get("MODELIMPORT_DEBUG"):
        raise exc
    sys.stderr.write(
        f"Internal error ({type(exc).__name__}: {exc}). This is a bug in modelimport; "
        "set MODELIMPORT_DEBUG=1 to see the traceback.\n"
    )
    sys.exit(70)
