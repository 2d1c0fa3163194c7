"""The one small interface every identity source implements, and the table of sources.

An identity source answers "what is this model?" for a `LookupRequest` with a
`LookupResult` (records in `identify.hub.records`, shared by every source). There are two
kinds, told apart by `needs_sha256`:

- by name (`needs_sha256 = False`): asked while planning, before any file is read whole.
  The Hub (search, listings, LFS sha256) and the catalog of well-known files. Hash evidence
  they return (`expected_sha256`) is settled later by `settle_verification` against the
  SHA256 the copy stream computes.
- by content (`needs_sha256 = True`): asked once the copy stream has every file's SHA256,
  so each request's files carry `LocalFile.sha256`. CivitAI by hash is one.

Invariants every source keeps (the importer and `retry-pending` rely on them):
- `identify`/`identify_many` never raise for network trouble or a malformed answer: the
  result carries `hub_error` (the field's historic name; it means "this source could not
  answer"), and the model is imported with `pending_online_lookup` for `retry-pending`.
- Offline (`offline=True`): no request at all; every result says `hub_error="offline"`.
- Once the source failed in a session it is not asked again in that session (a breaker).
- Answers are untrusted input: read field by field, strings made plain, never a path.
- `result.source` names the source, so the record says where an identity came from.
- A source is safe to call from several threads at once (batches identify in parallel).

Adding a source is one module with a class like these plus one line in `SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from modelimport.identify.hub.records import LookupRequest, LookupResult


@runtime_checkable
class IdentitySource(Protocol):
    """What the importer, `lookup` and `retry-pending` need from a source."""

    name: str  # "hub", "civitai", "catalog": recorded as the record's `identity_source`
    needs_sha256: bool  # asked only once every file's SHA256 is known

    def asks_about(self, request: LookupRequest) -> bool:
        """Whether this source can say anything about this model at all (CivitAI answers
        one file's hash: not a set, not a folder). A model it cannot answer about is never
        pending on it and never recorded as its miss."""
        ...

    def identify(self, request: LookupRequest) -> LookupResult:
        """One model; never raises for source trouble (see the module invariants)."""
        ...

    def identify_many(self, requests: Sequence[LookupRequest]) -> list[LookupResult]:
        """Several models, in order; one batch call where the source has one."""
        ...


@dataclass(frozen=True)
class SourceSettings:
    """What the command line and the config file say about lookups for this run."""

    offline: bool = False
    timeout: float = 5.0
    refresh: bool = False
    # Sources switched off by `--no-<name>` or the config file; all others are asked.
    disabled: frozenset[str] = field(default_factory=frozenset)


def _hub(settings: SourceSettings) -> IdentitySource:
    from modelimport.identify.hub import HubSession

    return HubSession(offline=settings.offline, timeout=settings.timeout, refresh=settings.refresh)


def _civitai(settings: SourceSettings) -> IdentitySource:
    from modelimport.identify.civitai import CivitaiSession

    return CivitaiSession(
        offline=settings.offline, timeout=settings.timeout, refresh=settings.refresh
    )


# name -> factory, in the order the sources are asked. A new source is one line here.
SOURCES: dict[str, Callable[[SourceSettings], IdentitySource]] = {
    "hub": _hub,
    "civitai": _civitai,
}


def open_sources(settings: SourceSettings) -> list[IdentitySource]:
    """The enabled sources for one command run, in `SOURCES` order."""
    return [make(settings) for name, make in SOURCES.items() if name not in settings.disabled]


def by_name(sources: Sequence[IdentitySource]) -> list[IdentitySource]:
    return [s for s in sources if not s.needs_sha256]


def by_content(sources: Sequence[IdentitySource]) -> list[IdentitySource]:
    return [s for s in sources if s.needs_sha256]


def identify_each(source: IdentitySource, requests: Sequence[LookupRequest]) -> list[LookupResult]:
    """`identify_many` for a source without a batch call: one request at a time."""
    return [source.identify(request) for request in requests]
