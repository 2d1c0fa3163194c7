"""One output object per command run: results to stdout, everything else to stderr.

Commands never print. They hand a JSON-able result and a function that renders it for a
person; in `--json` mode only the JSON goes to stdout. Rich honours NO_COLOR and plain
output when stdout is not a terminal.

Both consoles have Rich markup off: what they print is full of names from the user's disk,
from inside model files and from the Hub, and a file called `x[/bold].safetensors` must
print as itself, not be parsed as a style tag (or crash the renderer). Styling is added
with `styled()`, which escapes what it wraps.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text


def styled(style: str, text: str) -> Text:
    """`text` in `style`, taken literally (no markup in it is interpreted)."""
    return Text(text, style=style)


class Output:
    def __init__(self, json_mode: bool = False, verbose: bool = False) -> None:
        self.json_mode = json_mode
        self.verbose = verbose
        self.out = Console(highlight=False, soft_wrap=True, markup=False)
        # Rich exits 1 on a closed pipe; the command's work is done, so it exits as it would.
        self.out.on_broken_pipe = self._stdout_closed  # type: ignore[method-assign]
        self.err = Console(stderr=True, highlight=False, markup=False)

    def result(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        """Emit a command's result: JSON in --json mode, else the human rendering.

        A reader that stops early (`| head -1`) is no failure of the command: the work is
        done, so the rest of the output is dropped and the command exits as it would have."""
        try:
            if self.json_mode:
                sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
                sys.stdout.flush()
            elif render is not None:
                render(self.out)
                self.out.file.flush()
        except BrokenPipeError:
            self._stdout_closed()

    def _stdout_closed(self) -> None:
        _discard_stdout()
        self.out.quiet = True  # nothing more to write there

    def info(self, message: str) -> None:
        """A note for a person, on stderr, never mixed into results."""
        self.err.print(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self.err.print(styled("dim", message))

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]Error:[/bold red] {escape(message)}", markup=True)

    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty()


def _discard_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered, and the flush at exit, would hit
    the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
