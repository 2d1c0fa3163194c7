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
        self.err = Console(stderr=True, highlight=False, markup=False)

    def result(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        """Emit a command's result: JSON in --json mode, else the human rendering."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
            sys.stdout.flush()
        elif render is not None:
            render(self.out)

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
