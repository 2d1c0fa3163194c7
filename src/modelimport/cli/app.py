"""The `modelimport` Typer app: global options, command registration, one error formatter."""

from __future__ import annotations

import sys

import click
import typer

from modelimport.cli.options import (
    GlobalOptions,
    JsonOpt,
    LibraryOpt,
    OfflineOpt,
    VerboseOpt,
    YesOpt,
)
from modelimport.errors import ModelImportError

app = typer.Typer(
    name="modelimport",
    help=(
        "Import local AI model files (.safetensors, .gguf, .ckpt, .pt, .bin, folders, sharded "
        "sets) into one managed library: hashed, identified, described and indexed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    library: LibraryOpt = None,
    json_: JsonOpt = False,
    offline: OfflineOpt = False,
    yes: YesOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    ctx.obj = GlobalOptions(library, json_, offline, yes, verbose)


def _register() -> None:
    # Command modules register themselves on import; each keeps its heavy imports inside
    # its command functions so `--help` stays fast.
    from modelimport.cli import import_cmd, library_cmds  # noqa: F401


def main() -> None:
    """Console entry point: runs the app and turns every known error into one sentence."""
    _register()
    command = typer.main.get_command(app)
    try:
        command.main(prog_name="modelimport", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(130)
    except ModelImportError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted; any partial import will be rolled back on the next run.\n")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    sys.exit(0)
