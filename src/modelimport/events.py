"""Progress events: the only way the core tells a front end what it is doing.

The core never prints. It calls a `ProgressSink` with `ProgressEvent`s; the CLI turns them
into Rich progress bars or JSON lines, a GUI could turn them into anything else.

An item is identified by its `key` (the source path of its first file), not by its display
name: two files both named `model.safetensors` are two items. A batch opens with one
`Stage.BATCH` event giving how many items and bytes follow, so a front end can draw one
overall bar whose cost does not grow with the batch. Every item ends with exactly one final
event (COMPLETE, DUPLICATE or ERROR).
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
    PENDING = "pending"  # a lookup ended without an answer: the model waits for retry-pending
    SCANNING = "scanning"
    VERIFYING = "verifying"
    LINKING = "linking"
    BATCH = "batch"  # a batch starts: items_total items of bytes_total bytes follow


FINAL_STAGES = frozenset({Stage.COMPLETE, Stage.DUPLICATE, Stage.ERROR, Stage.PENDING})


@dataclass(frozen=True)
class ProgressEvent:
    stage: Stage
    item: str  # the model (or file) this event is about, as shown to a person
    bytes_done: int = 0
    bytes_total: int = 0
    message: str = ""  # an error's reason; for COMPLETE/DUPLICATE the model id
    key: str = ""  # what identifies the item (its source path); "" means `item` does
    items_total: int = 0  # BATCH only

    @property
    def ident(self) -> str:
        return self.key or self.item


ProgressSink = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """A sink for callers that do not care about progress."""
