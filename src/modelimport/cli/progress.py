"""Renders core ProgressEvents on stderr: Rich bars on a terminal, plain lines otherwise,
JSON lines with --json (stdout stays one JSON document)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.console import Console

from modelimport.events import ProgressEvent, ProgressSink, Stage

if TYPE_CHECKING:
    from rich.progress import TaskID

_FINAL = {Stage.COMPLETE, Stage.DUPLICATE, Stage.ERROR}
_BYTE_STAGES = {Stage.COPYING, Stage.HASHING, Stage.SCANNING, Stage.VERIFYING, Stage.DOWNLOADING}


@contextlib.contextmanager
def progress_sink(json_mode: bool, console: Console) -> Iterator[ProgressSink]:
    if json_mode:
        yield _json_lines
    elif console.is_terminal:
        with _RichBars(console) as bars:
            yield bars
    else:
        yield _PlainLines(console)


@contextlib.contextmanager
def planning_sink(json_mode: bool, console: Console) -> Iterator[ProgressSink]:
    """Progress while a plan is made: on a terminal one transient line naming the file being
    identified (gone once the plan is shown), elsewhere the same output as `progress_sink`."""
    if json_mode or not console.is_terminal:
        with progress_sink(json_mode, console) as sink:
            yield sink
        return
    with console.status("Reading files...") as status:

        def show(event: ProgressEvent) -> None:
            status.update(f"{str(event.stage).capitalize()} {event.item}...")

        yield show


def _json_lines(event: ProgressEvent) -> None:
    if event.stage in _BYTE_STAGES and event.bytes_done not in (0, event.bytes_total):
        return  # per-chunk byte counts would flood a log; start and end are enough
    line = {
        "event": "progress",
        "stage": str(event.stage),
        "item": event.item,
        "bytes_done": event.bytes_done,
        "bytes_total": event.bytes_total,
    }
    if event.message:
        line["message"] = event.message
    sys.stderr.write(json.dumps(line) + "\n")


class _PlainLines:
    """One line per stage change: readable in logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last: dict[str, Stage] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if self.last.get(event.item) == event.stage:
            return
        self.last[event.item] = event.stage
        text = f"{event.item}: {event.stage}"
        if event.message:
            text += f": {event.message}"
        self.console.print(text, markup=False, highlight=False)


class _RichBars:
    def __init__(self, console: Console) -> None:
        # rich.progress is only needed when bars are drawn; `--help` and pipes skip it.
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.fields[stage]:>16}", markup=False),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _RichBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        task = self.tasks.get(event.item)
        if task is None:
            task = self.progress.add_task(event.item, total=None, stage=str(event.stage))
            self.tasks[event.item] = task
        fields: dict[str, object] = {"stage": str(event.stage)}
        if event.bytes_total:
            fields.update(total=event.bytes_total, completed=event.bytes_done)
        if event.stage in _FINAL:
            label = event.message or str(event.stage)
            fields["stage"] = label[:16]
            task_obj = self.progress.tasks[self.tasks[event.item]]
            fields["completed"] = task_obj.total or 0
        self.progress.update(task, **fields)  # type: ignore[arg-type]
