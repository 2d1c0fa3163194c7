"""Fetching one repo file with huggingface_hub's `hf_hub_download`, then checking its bytes.

huggingface_hub does the HTTP (HF_ENDPOINT, HF_TOKEN, redirects, resume, its own size
check); it writes into `<download_dir>/<repo path>` through a `.incomplete` file. We add what
it does not do: compare the SHA256 of the bytes with the LFS sha256 the listing gave, and
report progress as our own events.

Invariants:
- A file returned by `fetch` is inside `download_dir` (checked on the real path) and has the
  size and, when the Hub lists one, the SHA256 of the listing; otherwise `DownloadFailed`.
- Every failure is one sentence naming the file and the repo; nothing here touches the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelimport.downloads.plan import DownloadItem
from modelimport.errors import ModelImportError
from modelimport.events import ProgressEvent, ProgressSink, Stage
from modelimport.hashing import FileDigests, hash_file


class DownloadFailed(ModelImportError):
    """A file could not be fetched, or its bytes are not the ones the Hub lists."""


class _EventBar:
    """The little of tqdm's interface huggingface_hub's `http_get` uses, as progress events."""

    def __init__(self, sink: ProgressSink, item: str, **kwargs: Any) -> None:
        self.sink = sink
        self.item = item
        self.total = int(kwargs.get("total") or 0)
        self.done = int(kwargs.get("initial") or 0)
        self.sink(ProgressEvent(Stage.DOWNLOADING, item, self.done, self.total))

    def __enter__(self) -> _EventBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: float | None = 1) -> None:
        self.done += int(n or 0)
        self.sink(ProgressEvent(Stage.DOWNLOADING, self.item, self.done, self.total))

    def close(self) -> None:
        pass


def _bar_class(sink: ProgressSink, item: str) -> Any:
    # huggingface_hub calls the class with tqdm's keyword arguments; a callable will do.
    def make(**kwargs: Any) -> _EventBar:
        return _EventBar(sink, item, **kwargs)

    return make


def fetch(
    item: DownloadItem,
    repo_id: str,
    revision: str | None,
    download_dir: Path,
    *,
    endpoint: str,
    token: str | bool | None,
    timeout: float,
    progress: ProgressSink,
    label: str,
) -> tuple[Path, FileDigests]:
    """Download `item` into `download_dir` and verify it; returns the file and its digests."""
    from huggingface_hub import hf_hub_download

    where = f"{item.repo_path} from {repo_id}"
    try:
        local = hf_hub_download(
            repo_id,
            item.repo_path,
            revision=revision,
            local_dir=download_dir,
            endpoint=endpoint,
            token=token,
            etag_timeout=timeout,
            tqdm_class=_bar_class(progress, label),
        )
    except Exception as exc:  # every failure of a download is this item's, in one sentence
        raise DownloadFailed(f"Downloading {where} failed: {_reason(exc)}.") from exc
    path = Path(str(local))
    real_dir = os.path.realpath(download_dir)
    if os.path.commonpath([os.path.realpath(path), real_dir]) != real_dir or not path.is_file():
        raise DownloadFailed(f"Downloading {where} put it outside the download folder.")

    def on_bytes(done: int) -> None:
        progress(ProgressEvent(Stage.HASHING, label, done, item.size or 0))

    digests = hash_file(path, on_bytes)
    if item.size is not None and digests.size != item.size:
        path.unlink(missing_ok=True)
        raise DownloadFailed(
            f"{where} is {digests.size} bytes, but the Hub lists {item.size}; the download was "
            "discarded."
        )
    if item.sha256 is not None and digests.sha256 != item.sha256:
        path.unlink(missing_ok=True)
        raise DownloadFailed(
            f"{where} does not have the SHA256 the Hub lists for it (got {digests.sha256[:12]}..., "
            f"expected {item.sha256[:12]}...); the download was discarded."
        )
    return path, digests


def _reason(exc: BaseException) -> str:
    """huggingface_hub's errors as the end of one sentence (their own text is several lines)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, OfflineModeIsEnabled):
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    if isinstance(exc, GatedRepoError):
        return "the repo is gated; accept its terms on the Hub and set HF_TOKEN"
    if isinstance(exc, RepositoryNotFoundError):
        return "the repo does not exist (or is private; set HF_TOKEN)"
    if isinstance(exc, RevisionNotFoundError):
        return "the matched revision is no longer on the Hub"
    if isinstance(exc, LocalEntryNotFoundError):  # a subclass of EntryNotFoundError
        return "the Hugging Face Hub could not be reached"
    if isinstance(exc, EntryNotFoundError):
        return "the Hub has no such file"
    if isinstance(exc, HfHubHTTPError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        return f"the Hub answered HTTP {status}" if status else "the Hub could not be reached"
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return "the Hub sent a different number of bytes than it announced"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return first_line[:200] or type(exc).__name__
