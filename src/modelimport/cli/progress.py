"""Renders core ProgressEvents on stderr: a live area on a terminal, plain lines otherwise,
JSON lines with --json (stdout stays one JSON document), nothing with --quiet.

Invariant: the cost of showing progress does not grow with the batch. On a terminal the live
area holds one overall bar (items done/total, bytes, throughput, ETA) and at most
`MAX_SHOWN` items in flight, each keyed by `ProgressEvent.ident` (its source path, so two
files both named model.safetensors are two rows); an item leaves the live area when it
ends, and only a failure leaves a line behind it. State is kept only for items in flight.
In a pipe each item ends in one line; nothing is redrawn.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console

from modelimport.cli.common import human_size, shorten_middle
from modelimport.events import FINAL_STAGES, ProgressEvent, ProgressSink, Stage, ignore_progress

if TYPE_CHECKING:
    from rich.progress import TaskID

# Items in flight shown on a terminal; more are counted in the overall line ("+3 more").
MAX_SHOWN = 4
NAME_WIDTH = 48

_BYTE_STAGES = (Stage.COPYING, Stage.HASHING, Stage.MOVING, Stage.VERIFYING,
                Stage.DOWNLOADING)


@contextlib.contextmanager
def progress_sink(
    json_mode: bool, console: Console, quiet: bool = False, verbose: bool = False
) -> Iterator[ProgressSink]:
    if quiet:
        yield ignore_progress
    elif json_mode:
        yield _json_lines
    elif console.is_terminal:
        with _LiveProgress(console) as live:
            yield live
    else:
        yield _PlainLines(console, verbose)


@contextlib.contextmanager
def planning_sink(
    json_mode: bool, console: Console, quiet: bool = False, verbose: bool = False
) -> Iterator[ProgressSink]:
    """Progress while a plan is made: on a terminal one transient line naming the file being
    identified (gone once the plan is shown); in a pipe nothing unless --verbose (the
    results name every file); JSON lines with --json."""
    if quiet or json_mode or not console.is_terminal:
        if not (quiet or json_mode or verbose):
            yield ignore_progress
            return
        with progress_sink(json_mode, console, quiet, verbose) as sink:
            yield sink
        return
    with console.status("Reading files...") as status:
        lock = threading.Lock()
        count = [0]

        def show(event: ProgressEvent) -> None:
            with lock:
                if event.stage == Stage.IDENTIFYING:
                    count[0] += 1
                status.update(
                    f"{str(event.stage).capitalize()} {shorten_middle(event.item, NAME_WIDTH)}"
                    f" ({count[0]} read)..."
                )

        yield show


def _json_lines(event: ProgressEvent) -> None:
    if event.stage in (*_BYTE_STAGES, Stage.SCANNING) and event.bytes_done not in (
        0,
        event.bytes_total,
    ):
        return  # per-chunk byte counts would flood a log; start and end are enough
    line: dict[str, Any] = {
        "event": "progress",
        "stage": str(event.stage),
        "item": event.item,
        "key": event.ident,
        "bytes_done": event.bytes_done,
        "bytes_total": event.bytes_total,
    }
    if event.stage == Stage.BATCH:
        line["items_total"] = event.items_total
    if event.message:
        line["message"] = event.message
    sys.stderr.write(json.dumps(line) + "\n")


def final_line(event: ProgressEvent) -> str:
    """How an item that just ended is told, on a terminal and in a pipe alike."""
    if event.stage == Stage.COMPLETE:
        return f"✓ {event.item}" + (f" → {event.message}" if event.message else "")
    if event.stage == Stage.DUPLICATE:
        return f"= {event.item}: already in the library as {event.message}"
    if event.stage == Stage.PENDING:  # not a failure: the model is in the library
        return f"… {event.item}: {event.message or 'lookup still pending'}"
    return f"✗ {event.item}: {event.message or 'failed'}"


class _PlainLines:
    """In a pipe: one line when an item ends, numbered within its batch; with --verbose, one
    line per stage change too. Only items in flight are remembered."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.in_flight: dict[str, Stage] = {}
        self.total = 0
        self.done = 0
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self.lock:
            self._show(event)

    def _show(self, event: ProgressEvent) -> None:
        if event.stage == Stage.BATCH:
            self.total, self.done = event.items_total, 0
            if self.total:
                self._print(
                    f"Importing {self.total} model(s), {human_size(event.bytes_total)}."
                )
            return
        key = event.ident
        if event.stage in FINAL_STAGES:
            self.in_flight.pop(key, None)
            # After the batch's own items, later steps (asking CivitAI about the imported
            # models, completing sets) report on items already counted: no second count.
            if self.done < self.total:
                self.done += 1
                self._print(f"[{self.done}/{self.total}] {final_line(event)}")
            else:
                self._print(final_line(event))
            return
        if self.in_flight.get(key) == event.stage:
            return
        first = key not in self.in_flight
        self.in_flight[key] = event.stage
        if self.verbose or (first and not self.total):
            self._print(f"{event.item}: {event.stage}")

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


class _LiveProgress:
    """On a terminal: one overall bar and the few items in flight, redrawn a few times a
    second by Rich; the work per event is constant.

    Rows are slots made once and reused (Rich redraws the whole screen whenever a task is
    added, so adding one per item would cost a redraw per file)."""

    def __init__(self, console: Console) -> None:
        # rich.progress is only needed when bars are drawn; `--help` and pipes skip it.
        from rich.progress import BarColumn, Progress, TextColumn

        # Each redraw rewrites every row: at 8 a second a long batch printed over 1 KB/s
        # (1.2 MB for 2,000 small files on a busy machine); twice a second reads as live.
        # The overall row needs about 70 columns besides the bar: on 80 the bar shrinks
        # rather than pushing the row onto a second line.
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=max(8, min(30, console.width - 72))),
            TextColumn("{task.fields[info]}", markup=False),
            console=console,
            transient=False,
            refresh_per_second=2,
        )
        self.lock = threading.Lock()
        self.overall: TaskID | None = None
        self.items_total = 0
        self.items_done = 0
        self.bytes_total = 0
        self.bytes_finished = 0  # bytes of items that ended
        self.started = time.monotonic()
        # key -> [slot or None, item bytes done, item bytes total, item name]
        self.in_flight: dict[str, list[Any]] = {}
        self.free_slots: list[TaskID] = []
        self.slots_made = 0

    def __enter__(self) -> _LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        with self.lock:
            self._show(event)

    def _show(self, event: ProgressEvent) -> None:
        if event.stage == Stage.BATCH:
            self.items_total, self.bytes_total = event.items_total, event.bytes_total
            self.items_done = self.bytes_finished = 0
            self.started = time.monotonic()
            if self.overall is None:
                self.overall = self.progress.add_task("Importing", total=None, info="")
            self._update_overall()
            return
        key = event.ident
        state = self.in_flight.get(key)
        if event.stage in FINAL_STAGES:
            if state is not None:
                self._forget(key, state)
            if not self.items_total or self.items_done < self.items_total:  # not twice
                self.items_done += 1
                self.bytes_finished += max(event.bytes_total, state[2] if state else 0)
            if event.stage == Stage.ERROR:
                self.progress.console.print(final_line(event), markup=False, highlight=False)
            self._update_overall()
            return
        if state is None:
            state = [None, 0, 0, event.item]
            self.in_flight[key] = state
            self._give_slot(state)
        if event.bytes_total:
            state[1], state[2] = event.bytes_done, event.bytes_total
        if state[0] is not None:
            info = str(event.stage)
            if event.stage in _BYTE_STAGES and event.bytes_total:
                info += f" {event.bytes_done * 100 // event.bytes_total} %"
            self.progress.update(
                state[0],
                info=info,
                total=event.bytes_total or None,
                completed=event.bytes_done,
            )
        self._update_overall()

    def _give_slot(self, state: list[Any]) -> None:
        if self.free_slots:
            slot = self.free_slots.pop()
        elif self.slots_made < MAX_SHOWN:
            slot = self.progress.add_task("", total=None, info="")
            self.slots_made += 1
        else:
            return
        state[0] = slot
        self.progress.update(
            slot,
            description="  " + shorten_middle(state[3], NAME_WIDTH),
            info="",
            total=None,
            completed=0,
            visible=True,
        )

    def _forget(self, key: str, state: list[Any]) -> None:
        del self.in_flight[key]
        if state[0] is None:
            return
        self.progress.update(state[0], visible=False)
        self.free_slots.append(state[0])
        # An item waiting unshown takes the freed row.
        for other in self.in_flight.values():
            if other[0] is None:
                self._give_slot(other)
                break

    def _update_overall(self) -> None:
        if self.overall is None:
            return
        done_bytes = self.bytes_finished + sum(s[1] for s in self.in_flight.values())
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done_bytes / elapsed
        info = (
            f"{self.items_done}/{self.items_total} models  "
            f"{human_size(done_bytes)} of {human_size(self.bytes_total)}  "
            f"{human_size(rate)}/s"
        )
        remaining = self.bytes_total - done_bytes
        if rate > 0 and remaining > 0 and elapsed > 1:
            info += f"  ETA {_clock(remaining / rate)}"
        hidden = sum(1 for s in self.in_flight.values() if s[0] is None)
        if hidden:
            info += f"  (+{hidden} more in flight)"
        self.progress.update(
            self.overall,
            info=info,
            total=max(self.bytes_total, 1),
            completed=min(done_bytes, self.bytes_total),
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
