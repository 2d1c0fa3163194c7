"""Progress events: the only way the core tells a front end what it is doing.

The core never prints. It calls a `ProgressSink` with `ProgressEvent`s; the CLI turns them
into Rich progress bars or JSON lines, a GUI could turn them into anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    QUEUED = "queued"
    IDENTIFYING = "identifying"
    COPYING = "copying"
    HASHING = "hashing"
    MOVING = "moving"
    DOWNLOADING = "downloading"
    WRITING_METADATA = "writing metadata"
    INDEXING = "indexing"
    COMPLETE = "complete"
    DUPLICATE = "duplicate"
    ERROR = "error"
    SCANNING = "scanning"
    VERIFYING = "verifying"
    LINKING = "linking"


@dataclass(frozen=True)
class ProgressEvent:
    stage: Stage
    item: str  # the model (or file) this event is about, as shown to a person
    bytes_done: int = 0
    bytes_total: int = 0
    message: str = ""


ProgressSink = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """A sink for callers that do not care about progress."""
