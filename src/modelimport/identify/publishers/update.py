"""Building and refreshing the publisher file index from the Hub, incrementally.

For each publisher: one listing of its models (`/api/models?author=...`, with each repo's
lastModified; a page per thousand repos), then one `/api/models/{repo}?blobs=true` per repo
whose lastModified changed since it was indexed. A repo unchanged since the last update
costs no call; a repo the publisher no longer lists is dropped.

Invariants:
- Every answer is read with the live lookup's checks (`identify.hub.answers`): a malformed
  repo entry is skipped, a malformed listing leaves that repo as it was.
- Hub trouble for one publisher (HTTP error, timeout) leaves its repos as they were and is
  reported; the update goes on with the next publisher unless the Hub is unreachable, when
  it stops (the breaker): the index keeps what it had.
- Never called on a default path that needs the network: `modelimport index update`, or an
  online import refreshing an index older than `MAX_AGE_S` (`stale`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from modelimport.errors import ModelImportError
from modelimport.identify.hub.answers import MalformedAnswer, repo_listing, text
from modelimport.identify.hub.candidates import valid_repo_id
from modelimport.identify.hub.http import get_json
from modelimport.identify.publishers.store import IndexStats, index_path, open_index

MAX_AGE_S = 7 * 24 * 3600.0  # an online import refreshes an index older than this
REFRESH_BUDGET_S = 30.0  # what an import may spend refreshing; the rest waits for the next
PAGE_SIZE = 1000  # repos per page of a publisher's listing (the Hub's maximum)
MAX_PAGES = 50  # 50,000 repos: more than any publisher holds; a Hub looping on pages stops

# (publisher, repos done, repos to list) -> None, after each repo and publisher.
UpdateProgress = Callable[[str, int, int], None]


@dataclass
class UpdateReport:
    publishers: list[str]
    repos_seen: int = 0  # repos the publishers list
    repos_listed: int = 0  # listings fetched (new or changed repos): one call each
    repos_unchanged: int = 0  # lastModified as indexed: no call
    repos_dropped: int = 0  # indexed before, no longer listed
    calls: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # publisher -> reason
    postponed: list[str] = field(default_factory=list)  # not reached within the time budget
    stats: IndexStats | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "publishers": self.publishers,
            "repos_seen": self.repos_seen,
            "repos_listed": self.repos_listed,
            "repos_unchanged": self.repos_unchanged,
            "repos_dropped": self.repos_dropped,
            "calls": self.calls,
            "seconds": round(self.seconds, 2),
            "failures": self.failures,
            "postponed": self.postponed,
            "index": self.stats.to_json() if self.stats else None,
        }


class _HubDown(Exception):
    """The Hub cannot be reached at all: stop the update."""


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, httpx2.TimeoutException):
        return f"the Hugging Face Hub did not answer within {timeout:g} s"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return f"the Hugging Face Hub answered HTTP {status}"
    if isinstance(exc, MalformedAnswer):
        return f"the Hugging Face Hub sent {exc}"
    return f"the Hugging Face Hub could not be reached ({type(exc).__name__})"


def _next_page(response: httpx2.Response) -> str | None:
    link = response.links.get("next") if response.headers.get("link") else None
    return link.get("url") if link else None


def update_index(
    publishers: Sequence[str],
    *,
    endpoint: str,
    token: str | bool | None = None,
    timeout: float = 10.0,
    cache_dir: Path | None = None,
    progress: UpdateProgress | None = None,
    time_budget_s: float | None = None,
) -> UpdateReport:
    """Bring the index up to date for `publishers` (see the module docstring). With a
    `time_budget_s`, no publisher is started once it is spent: the publishers left keep
    their old update time, so the next refresh starts with them (`refresh_stale`)."""
    started = time.monotonic()
    endpoint = endpoint.rstrip("/")
    report = UpdateReport(list(publishers))
    index = open_index(endpoint, cache_dir, write=True)
    if index is None:
        where = index_path(cache_dir)
        raise ModelImportError(f"The publisher index {where} cannot be written.")
    try:

        def call(url: str, params: dict[str, Any] | None) -> tuple[Any, httpx2.Response]:
            report.calls += 1
            try:
                return get_json(url, params, token=token, timeout=timeout)
            except RepositoryNotFoundError:
                raise
            except HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status is None or status >= 500 or status == 429:
                    raise _HubDown(_reason(exc, timeout)) from exc
                raise  # this request is refused (403 for a gated repo): the rest goes on
            except (httpx2.HTTPError, OSError) as exc:
                raise _HubDown(_reason(exc, timeout)) from exc

        for publisher in publishers:
            if time_budget_s is not None and time.monotonic() - started > time_budget_s:
                report.postponed.append(publisher)
                continue
            try:
                _update_publisher(index, publisher, endpoint, call, report, progress)
            except _HubDown as exc:
                report.failures[publisher] = str(exc)
                break
            except (HfHubHTTPError, MalformedAnswer) as exc:
                report.failures[publisher] = _reason(exc, timeout)
        report.stats = index.stats()
    finally:
        index.close()
    report.seconds = time.monotonic() - started
    return report


def _update_publisher(
    index: Any,
    publisher: str,
    endpoint: str,
    call: Callable[[str, dict[str, Any] | None], tuple[Any, httpx2.Response]],
    report: UpdateReport,
    progress: UpdateProgress | None,
) -> None:
    listed: dict[str, str | None] = {}
    url: str | None = f"{endpoint}/api/models"
    params: dict[str, Any] | None = {
        "author": publisher,
        "limit": PAGE_SIZE,
        "expand[]": ["lastModified", "sha"],
    }
    for _ in range(MAX_PAGES):
        if url is None:
            break
        data, response = call(url, params)
        if not isinstance(data, list):
            raise MalformedAnswer("a model list that is not an array")
        for item in data:
            repo_id = valid_repo_id(item.get("id")) if isinstance(item, dict) else None
            # Only the publisher's own repos: a Hub answering with others' is ignored.
            if repo_id and repo_id.split("/")[0].lower() == publisher.lower():
                listed[repo_id] = text(item.get("lastModified"))
        url, params = _next_page(response), None
    known = index.known_repos(publisher)
    report.repos_seen += len(listed)
    todo = [r for r, modified in listed.items() if modified is None or known.get(r) != modified]
    report.repos_unchanged += len(listed) - len(todo)
    for done, repo_id in enumerate(todo, 1):
        try:
            data, _ = call(f"{endpoint}/api/models/{repo_id}", {"blobs": True})
            index.put_repo(publisher, repo_listing(repo_id, data), listed[repo_id])
            report.repos_listed += 1
        except RepositoryNotFoundError:
            index.drop_repos([repo_id])  # gone between the two calls
        except (MalformedAnswer, HfHubHTTPError):
            pass  # refused or malformed: this repo stays as it was indexed
        if progress:
            progress(publisher, done, len(todo))
    gone = [r for r in known if r not in listed]
    index.drop_repos(gone)
    report.repos_dropped += len(gone)
    index.publisher_done(publisher, len(listed))
    if progress and not todo:
        progress(publisher, 0, 0)


def refresh_stale(
    *, endpoint: str, timeout: float, time_budget_s: float = REFRESH_BUDGET_S
) -> UpdateReport | None:
    """What an online import does first: refresh an index older than MAX_AGE_S, its
    least recently updated publishers first, within `time_budget_s`. None when there is no
    index (the first build is `index update`'s) or it is fresh."""
    from modelimport.identify.publishers.catalog import default_publishers

    index = open_index(endpoint)
    if index is None:
        return None
    try:
        if not stale(index.stats()):
            return None
        order = index.publishers_by_age(default_publishers())
    finally:
        index.close()
    return update_index(
        order, endpoint=endpoint, timeout=timeout, time_budget_s=time_budget_s
    )


def stale(stats: IndexStats | None, max_age_s: float = MAX_AGE_S) -> bool:
    """An index that exists and is older than `max_age_s` (an online import refreshes it)."""
    return stats is not None and stats.age_s is not None and stats.age_s > max_age_s
