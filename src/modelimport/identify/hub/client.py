"""HubSession: every Hub call of a batch goes through one object that bounds and counts it.

Invariants:
- `identify` never raises for Hub trouble: timeouts, 5xx, 429 and unreachable hosts end in a
  result with `hub_error` set, and the caller imports offline-style.
- A session never averages more than `MAX_CALLS_PER_MODEL` HTTP requests per `identify`,
  retries included: a model may spend what earlier ones saved, up to MAX_CALLS_HARD_MODEL,
  and the first model of a session has MAX_CALLS_PER_MODEL. One search per query and one
  listing per repo per session, also across threads.
- Once the Hub failed (after bounded retries), no further request is made in this session
  (the breaker): huggingface_hub's own backoff would spend ~23 s per search against a 500.
- Offline (`offline=True`, HF_HUB_OFFLINE=1): no request at all.
- The Hub's pace is shared by the threads of a batch (`identify.batch`): a 429's
  Retry-After, or the RateLimit headers saying the quota is (nearly) spent, hold every
  thread until the Hub said to come back; a quota spent for longer than MAX_RETRY_AFTER_S
  opens the breaker (the rest of the batch waits for retry-pending).
- Both calls go straight through huggingface_hub's shared session with our timeout, because
  `HfApi.list_models` takes no timeout and retries 5xx/429 by itself for tens of seconds, and
  `HfApi.model_info` parses answers with `ModelInfo(**data)`, which raises on malformed ones.
- Every answer is untrusted (see `answers`): whole within about `timeout` seconds, at most
  MAX_ANSWER_BYTES, and anything malformed ends as a skipped field, entry or candidate, or
  as `hub_error` (pending lookup), never as an exception or a false trust level.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import constants
from huggingface_hub.errors import (
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (
    parse_ratelimit_headers,
)

from modelimport.identify.catalog import catalog_candidates
from modelimport.identify.hub.answers import MalformedAnswer, repo_listing, search_hits
from modelimport.identify.hub.cache import HubCache
from modelimport.identify.hub.candidates import (
    embedded_candidates,
    rank_hits,
    search_base,
    search_queries,
    valid_repo_id,
)
from modelimport.identify.hub.describe import repo_metadata
from modelimport.identify.hub.http import get_json
from modelimport.identify.hub.records import (
    CONFIDENCE,
    SELECTION_RANK,
    Candidate,
    LocalFile,
    LookupRequest,
    LookupResult,
    RepoListing,
    SearchHit,
    TrustLevel,
    no_match,
)
from modelimport.identify.hub.scoring import RepoMatch, match_listing, name_only_match, to_candidate
from modelimport.identify.hub.settle import _other_bytes_same_size
from modelimport.identify.unreachable import unreachable_reason

T = TypeVar("T")

# The budget: on average at most MAX_CALLS_PER_MODEL requests per model across a batch. A
# model may spend what earlier models of the batch saved (shared searches, cached listings),
# up to MAX_CALLS_HARD_MODEL; the first model of a session has MAX_CALLS_PER_MODEL.
MAX_CALLS_PER_MODEL = 4
MAX_CALLS_HARD_MODEL = 10
MAX_EMBEDDED_REPOS = 2
# A search costs one call whatever it returns: enough hits to hold the right repo among
# popular namesakes, ranked locally (`rank_hits`) so listings go to the likeliest first.
DEFAULT_SEARCH_LIMIT = 50
LISTINGS_PER_QUERY = 2
MAX_NAMESAKES = 2  # extra listings after a name-and-size match, for same-name-other-bytes
# Levels at which a repo holds a file of the same name: another place these bytes may be.
SAME_NAME_TRUST = (TrustLevel.HIGH, TrustLevel.MODIFIED, TrustLevel.LOW)
MAX_5XX_RETRIES = 1
RETRY_BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 10.0  # a 429 asking for longer than this counts as the Hub being down
MAX_429_RETRIES = 1
# When the Hub says this few requests are left in its window, spread them over the time left
# instead of letting every thread spend them at once and meet a wall of 429s.
PACE_BELOW_REMAINING = 16
DECISIVE = (TrustLevel.VERIFIED, TrustLevel.HIGH)


class HubUnavailable(Exception):
    """The Hub failed in this session; str() is one sentence."""


class _BudgetSpent(Exception):
    pass


def _env_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"} or constants.is_offline_mode()


def _retry_after(exc: HfHubHTTPError) -> float | None:
    """Seconds the Hub asks us to wait: delay-seconds or an HTTP date (RFC 9110); None when
    absent or unusable. A negative or NaN delay used to reach time.sleep, which raises."""
    response = getattr(exc, "response", None)
    raw = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    try:
        wait = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return wait if math.isfinite(wait) and wait >= 0 else None


def _status(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    return response.status_code if response is not None else None


def _known_sha256_key(local: LocalFile) -> str | None:
    """The cache key naming this file in this state, or None when that is not known.

    The fast hash reads only the ends of a file: a byte changed in the middle, or another
    file with the same ends and size, has the same one. Path, size and mtime (what rsync
    trusts) tell whether it is still the very file that was read.
    """
    stamp = local.stamp
    if not local.fast_hash or stamp is None or stamp.size != local.size:
        return None
    return f"{local.fast_hash}|{stamp.path}|{stamp.size}|{stamp.mtime_ns}"


class HubSession:
    """One per batch or command: the HfApi client, disk cache, call counters and breaker.

    An identity source by name (`modelimport.identify.source.IdentitySource`)."""

    name = "hub"
    needs_sha256 = False

    @staticmethod
    def asks_about(request: LookupRequest) -> bool:
        return True  # any model: by its names, sizes and (once known) hashes

    def __init__(
        self,
        *,
        offline: bool = False,
        timeout: float = 5.0,
        refresh: bool = False,
        cache_dir: Path | None = None,
        endpoint: str | None = None,
        token: str | bool | None = None,
        search_limit: int = DEFAULT_SEARCH_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.offline = offline or _env_offline()
        self.timeout = timeout
        self.refresh = refresh
        # HF_ENDPOINT is read now, not at huggingface_hub's import time.
        endpoint = endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.cache = HubCache(cache_dir)
        self.search_limit = search_limit
        self.calls: Counter[str] = Counter()  # HTTP requests made, by kind ("search", "model_info")
        self.failure: str | None = None  # set once the Hub failed: the breaker is open
        # Seconds from this session's first request to the failure: what the batch spent on
        # a Hub that did not answer (said once per batch with the failure).
        self.failed_after: float | None = None
        self._first_request: float | None = None
        # Waiting and the time it is now, passed in so that tests can count the seconds
        # waited without waiting them.
        self._sleep = sleep
        self._clock = clock
        # The batch budget: each identify() adds MAX_CALLS_PER_MODEL to the pool and takes
        # an allowance from it (its own calls live in a per-thread counter); what it does
        # not spend goes back. So a batch never averages more than MAX_CALLS_PER_MODEL.
        self._pool = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        # One search per query and one listing per repo per session, even with --refresh
        # (which only skips the disk cache): files of one batch share them, also when they
        # are identified in parallel (`_shared` waits for a request another thread makes).
        self._searches: dict[str, list[SearchHit]] = {}
        self._listings: dict[str, RepoListing | None] = {}
        self._empty_queries: set[str] = set()
        self._key_locks: dict[str, threading.Lock] = {}
        self._not_before = 0.0  # the clock's time before which no request starts
        self._gap = 0.0  # seconds between request starts while the quota is nearly spent
        # The publisher file index (`identify.publishers`), opened on first use; the repos
        # whose listing a lookup took from it (free, and said so in the record).
        self._cache_dir = cache_dir
        self._index: Any = None
        self._index_opened = False
        self._from_index: dict[str, float | None] = {}

    # -- public API ---------------------------------------------------------------------------

    def identify(self, request: LookupRequest) -> LookupResult:
        """Find the repo the files come from; never raises for Hub trouble."""
        if self.offline or self.failure:
            # The publisher index answers without the Hub; anything short of a decisive
            # answer waits for retry-pending, as before.
            known = self.identify_from_index(self.with_known_hashes(request))
            if known is not None:
                return known
            return no_match(hub_error="offline" if self.offline else self.failure)
        with self._lock:
            self._pool += MAX_CALLS_PER_MODEL
            self._budget = min(MAX_CALLS_HARD_MODEL, self._pool)
            self._pool -= self._budget
        request = self.with_known_hashes(request)
        self.remember_hashes(request.files)
        try:
            return self._identify(request)
        except HubUnavailable as exc:
            return no_match(hub_error=str(exc))
        finally:
            with self._lock:
                self._pool += self._budget
            self._budget = 0

    @property
    def _budget(self) -> int:
        """Calls this thread's identify() may still make."""
        return getattr(self._local, "budget", 0)

    @_budget.setter
    def _budget(self, value: int) -> None:
        self._local.budget = value

    def identify_many(self, requests: Sequence[LookupRequest]) -> list[LookupResult]:
        """Several models, in order, looked up concurrently (`identify.batch`)."""
        from modelimport.identify.batch import identify_parallel

        return identify_parallel(self, requests)

    def listing(self, repo_id: str) -> RepoListing | None:
        """One repo's file listing (sizes, LFS sha256, commit), from the disk cache when fresh;
        None when the repo does not exist. Raises HubUnavailable for Hub trouble or offline."""
        if self.offline:
            raise HubUnavailable("offline")
        self._budget = MAX_CALLS_PER_MODEL
        try:
            return self._listing(repo_id)
        except _BudgetSpent as exc:  # retries spent every call: the Hub is not answering
            raise HubUnavailable("The Hugging Face Hub did not answer in time.") from exc

    def remember_hashes(self, files: tuple[LocalFile, ...] | list[LocalFile]) -> None:
        """Record the sha256 of files read whole, for these files as they are now (their
        stamp), so a later lookup knows them unread while they stay unchanged."""
        for local in files:
            key = _known_sha256_key(local)
            if key and local.sha256:
                self.cache.put("known_sha256", key, local.sha256)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # -- identification -----------------------------------------------------------------------

    def with_known_hashes(self, request: LookupRequest) -> LookupRequest:
        """Fill in the sha256 of files read whole before and unchanged since; --refresh
        trusts nothing remembered."""
        if self.refresh:
            return request
        files = []
        for local in request.files:
            key = _known_sha256_key(local)
            if local.sha256 is None and key:
                known = self.cache.get("known_sha256", key)
                if isinstance(known, str) and known:
                    local = replace(local, sha256=known)
            files.append(local)
        return replace(request, files=tuple(files))

    def _identify(self, request: LookupRequest) -> LookupResult:
        search_name = search_base(request)
        evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]] = {}
        hits: dict[str, SearchHit] = {}  # every repo a search found, for the name-only verdicts

        def evaluate(repo_id: str, downloads: int | None) -> None:
            if repo_id in evaluated or repo_id in request.base_models:
                return
            listing = self._listing(repo_id)
            if listing is None:
                return
            match = match_listing(request, listing, search_name)
            evaluated[repo_id] = (match, listing, downloads or listing.downloads)

        def decided() -> bool:
            return any(m.trust in DECISIVE for m, _, _ in evaluated.values())

        try:
            # Repos the publisher index says hold this file cost nothing: all are judged, so
            # that two holding one name and size with other bytes are both seen.
            for repo_id in self._index_candidates(request):
                evaluate(repo_id, None)
            # Repos named for this file (by the catalog or inside the file) cost one listing each.
            named = [e.repo_id for e in catalog_candidates(request) if valid_repo_id(e.repo_id)]
            named += embedded_candidates(request)[:MAX_EMBEDDED_REPOS]
            for repo_id in dict.fromkeys(named) if not decided() else ():
                evaluate(repo_id, None)
                if decided():
                    break
            for query in search_queries(request) if not decided() else ():
                lowered = query.lower()
                with self._lock:
                    empties = tuple(self._empty_queries)
                if any(empty in lowered for empty in empties):
                    continue  # contains a query that found nothing: finds nothing either
                found = self._search(query)
                if not found:
                    with self._lock:
                        self._empty_queries.add(lowered)
                    continue
                for hit in found:
                    hits.setdefault(hit.repo_id, hit)
                fresh = [h for h in rank_hits(request, found) if h.repo_id not in evaluated]
                paid = 0  # listings that cost a call: one already made in this run is free
                for hit in fresh:
                    # A repo holding the name with other bytes hints that a namesake holds
                    # these: it earns the query one more listing.
                    modified = sum(
                        1 for m, _, _ in evaluated.values() if m.trust is TrustLevel.MODIFIED
                    )
                    if paid >= LISTINGS_PER_QUERY + min(modified, 1):
                        break
                    before = self._budget
                    evaluate(hit.repo_id, hit.downloads)
                    paid += before > self._budget
                    if decided():
                        break
                if decided():
                    break
            self._list_namesakes(request, evaluated, hits, evaluate)
        except _BudgetSpent:
            pass
        # A namesake of a name-and-size match that the budget left unlisted may hold this name
        # with other bytes: the name and size then no longer say which repo this is.
        unchecked = not any(f.sha256 for f in request.files) and bool(
            _namesakes(evaluated, hits)
        )
        for hit in hits.values():  # searched but not listed: judged by name only
            if hit.repo_id not in evaluated and hit.repo_id not in request.base_models:
                judged = name_only_match(search_name, hit.repo_id)
                evaluated[hit.repo_id] = (judged, None, hit.downloads)
        return self._verdict(request, evaluated, unchecked_namesakes=unchecked)

    def _publisher_index(self) -> Any:
        if not self._index_opened:
            from modelimport.identify.publishers import open_index

            with self._lock:
                if not self._index_opened:
                    self._index = open_index(self.endpoint, self._cache_dir)
                    self._index_opened = True
        return self._index

    def _index_candidates(self, request: LookupRequest) -> list[str]:
        """Repos the publisher index says hold one of these files, their listings put where
        `_listing` finds them (no call). Never more than the index's MAX_CANDIDATES."""
        index = self._publisher_index()
        if index is None:
            return []
        found = []
        for repo_id in index.repos_holding(request.files):
            if repo_id in request.base_models:
                continue
            listing = index.listing(repo_id)
            if listing is None:
                continue
            with self._lock:
                if repo_id not in self._listings:
                    self._listings[repo_id] = listing
                    self._from_index[repo_id] = index.listed_at(repo_id)
            found.append(repo_id)
        return found

    def identify_from_index(self, request: LookupRequest) -> LookupResult | None:
        """The publisher index's verdict alone, no call (offline, the Hub down, or the
        SHA256s known after the copy): only a decisive one (Verified or High)."""
        search_name = search_base(request)
        evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]] = {}
        for repo_id in self._index_candidates(request):
            listing = self._listings.get(repo_id)
            if listing is not None:
                match = match_listing(request, listing, search_name)
                evaluated[repo_id] = (match, listing, listing.downloads)
        if not any(m.trust in DECISIVE for m, _, _ in evaluated.values()):
            return None
        result = self._verdict(request, evaluated)
        return result if result.trust in DECISIVE else None

    def _list_namesakes(
        self,
        request: LookupRequest,
        evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]],
        hits: dict[str, SearchHit],
        evaluate: Callable[[str, int | None], None],
    ) -> None:
        """After a name-and-size match with the bytes not yet hashed, list the namesakes of
        that repo (the same repo name under another owner: re-uploads, and quantisers who
        publish `<model>-GGUF` with the same file names), which may hold a file of the same
        name with other bytes; `settle_verification` then picks the one
        holding these bytes. Only repos a search already found, within the budget."""
        if any(f.sha256 for f in request.files):
            return
        for hit in _namesakes(evaluated, hits)[:MAX_NAMESAKES]:
            evaluate(hit.repo_id, hit.downloads)

    def _verdict(
        self,
        request: LookupRequest,
        evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]],
        *,
        unchecked_namesakes: bool = False,
    ) -> LookupResult:
        # Between equals, a repo the catalog names for this file (a well-known publisher)
        # before re-uploads and namesakes, then downloads.
        known = {e.repo_id for e in catalog_candidates(request)}
        ranked = sorted(
            evaluated.values(),
            key=lambda item: (
                SELECTION_RANK[item[0].trust],
                item[0].confidence,
                item[0].repo_id in known,
                item[2],
            ),
            reverse=True,
        )
        candidates = tuple(to_candidate(m, downloads) for m, _, downloads in ranked)
        if not ranked or ranked[0][0].trust is TrustLevel.NONE:
            return no_match(candidates=candidates)
        match, listing, _ = ranked[0]
        others = [
            self._result(request, m, other)
            for m, other, _ in ranked[1:]
            if other is not None and m.expected_sha256 and m.trust in SAME_NAME_TRUST
        ]
        result = self._result(request, match, listing, candidates, tuple(others))
        if result.trust is TrustLevel.HIGH and (
            unchecked_namesakes or _other_bytes_same_size(result, others)
        ):
            # Another candidate holds a file of this name and size with other bytes: the name
            # and size no longer say which one this is. Only the hash can (the import's copy
            # stream, or `lookup --verify`); until then this is a guess to confirm.
            result = replace(
                result, trust=TrustLevel.LOW, confidence=CONFIDENCE["ambiguous_exact"]
            )
        return result

    def _result(
        self,
        request: LookupRequest,
        match: RepoMatch,
        listing: RepoListing | None,
        candidates: tuple[Candidate, ...] = (),
        alternates: tuple[LookupResult, ...] = (),
    ) -> LookupResult:
        matched = match.matched_files
        first_path = next(iter(matched.values()), None)
        if listing is not None:
            metadata = repo_metadata(listing, request, first_path, self.endpoint)
        else:
            metadata = {"official_name": match.repo_id.split("/")[-1], "cleaned_name": request.name}
        if request.base_models and not metadata.get("base_model"):
            metadata["base_model"] = request.base_models[0]  # what the file says it came from
        if match.repo_id in self._from_index:
            # The listing came from the publisher index, not a call: say so, and how old it is.
            listed = self._from_index[match.repo_id]
            metadata["listing_source"] = "publisher_index"
            metadata["listing_date"] = (
                datetime.fromtimestamp(listed, UTC).isoformat(timespec="seconds")
                if listed is not None
                else None
            )
        metadata["hash_mismatch"] = match.trust is TrustLevel.MODIFIED
        return LookupResult(
            trust=match.trust,
            match_method=match.method,
            confidence=match.confidence,
            repo_id=match.repo_id,
            pending_verification=match.pending_verification,
            expected_sha256=match.expected_sha256,
            matched_files=matched,
            metadata=metadata,
            candidates=candidates,
            local_files=tuple(f.name for f in request.files),
            alternates=alternates,
        )

    # -- Hub calls ----------------------------------------------------------------------------

    def _search(self, query: str) -> list[SearchHit]:
        # The Hub's search is case-insensitive: one entry per query whatever its case.
        return self._shared(self._searches, query.lower(), lambda: self._search_hub(query))

    def _search_hub(self, query: str) -> list[SearchHit]:
        key = f"{self.endpoint}|{query.lower()}|{self.search_limit}"
        if not self.refresh:
            cached = self.cache.get("search", key)
            if isinstance(cached, list):
                return [SearchHit(str(r), int(d)) for r, d in cached]

        params = {"search": query, "sort": "downloads", "direction": -1, "limit": self.search_limit}
        hits = self._call(
            "search",
            lambda: search_hits(self._get_json("/api/models", params), self.search_limit),
        )
        hits = hits or []
        self.cache.put("search", key, [[h.repo_id, h.downloads] for h in hits])
        return hits

    def _listing(self, repo_id: str) -> RepoListing | None:
        return self._shared(self._listings, repo_id, lambda: self._listing_hub(repo_id))

    def _shared(self, table: dict[str, T], key: str, fetch: Callable[[], T]) -> T:
        """`table[key]`, fetched once per session; a thread asking for a key another thread
        is fetching waits for that answer instead of asking the Hub again."""
        with self._lock:
            if key in table:
                return table[key]
            key_lock = self._key_locks.setdefault(f"{id(table)}|{key}", threading.Lock())
        with key_lock:
            with self._lock:
                if key in table:
                    return table[key]
            value = fetch()  # Hub trouble raises: nothing is remembered
            with self._lock:
                table[key] = value
            return value

    def _listing_hub(self, repo_id: str) -> RepoListing | None:
        key = f"{self.endpoint}|{repo_id}"
        if not self.refresh:
            cached = self.cache.get("repo", key)
            if isinstance(cached, dict):
                try:
                    return RepoListing.from_json(cached)
                except (KeyError, TypeError, ValueError):
                    pass
        # repo_id is a checked repo id (`valid_repo_id`): safe in a URL path as it is.
        path = f"/api/models/{repo_id}"
        listing = self._call(
            "model_info", lambda: repo_listing(repo_id, self._get_json(path, {"blobs": True}))
        )
        if listing is None:
            return None
        self.cache.put("repo", key, listing.to_json())
        return listing

    def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        """One GET of the Hub API, decoded as JSON (`get_json`), minding the rate limit."""
        data, _ = get_json(
            f"{self.endpoint}{path}",
            params,
            token=self.token,
            timeout=self.timeout,
            observe=self._note_rate_limit,
        )
        return data

    def _call(self, kind: str, fn: Callable[[], T]) -> T | None:
        """One Hub request with bounded retries; None when the repo does not exist."""
        retries_5xx = retries_429 = 0
        while True:
            if self._budget <= 0:
                raise _BudgetSpent()
            self._wait_turn()
            if self.failure:
                raise HubUnavailable(self.failure)
            self._budget -= 1
            with self._lock:
                self.calls[kind] += 1
                self._first_request = self._first_request or self._clock()
            try:
                return fn()
            except (RepositoryNotFoundError, RevisionNotFoundError):
                return None
            except MalformedAnswer as exc:
                self._trip(f"The Hugging Face Hub sent {exc}.")
            except OfflineModeIsEnabled:
                self._trip("offline")
            except HfHubHTTPError as exc:
                status = _status(exc)
                wait = _retry_after(exc)
                if status == 429 and retries_429 < MAX_429_RETRIES and self._budget > 0:
                    if wait is not None and wait <= MAX_RETRY_AFTER_S:
                        retries_429 += 1
                        self._hold(wait)  # every thread waits, not just this one
                        continue
                elif (
                    status is not None
                    and status >= 500
                    and retries_5xx < MAX_5XX_RETRIES
                    and self._budget > 0
                ):
                    retries_5xx += 1
                    self._sleep(RETRY_BACKOFF_S)
                    continue
                if status == 429:
                    self._trip("The Hugging Face Hub is rate-limiting requests (HTTP 429).")
                self._trip(f"The Hugging Face Hub answered HTTP {status}.")
            except httpx2.TimeoutException:
                self._trip(f"The Hugging Face Hub did not answer within {self.timeout:g} s.")
            except (httpx2.HTTPError, OSError, ValueError) as exc:
                why = unreachable_reason(exc)
                self._trip(f"The Hugging Face Hub could not be reached ({why}).")

    # -- pace ---------------------------------------------------------------------------------

    def _hold(self, seconds: float) -> None:
        """No request of this session starts for `seconds` (a 429, a spent quota)."""
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def _wait_turn(self) -> None:
        """Wait for this request's turn: after any hold, and `_gap` after the previous start
        while the Hub's quota is nearly spent (each thread reserves its own start time)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._not_before)
            if self._gap:
                self._not_before = start + self._gap
        if start > now:
            self._sleep(start - now)

    def _note_rate_limit(self, response: httpx2.Response) -> None:
        """Follow the Hub's RateLimit headers (`"api";r=<left>;t=<reset s>`): with the quota
        spent, wait for the reset (or, if that is far off, stop asking: the breaker); with a
        few requests left, spread them over the time left."""
        try:
            info = parse_ratelimit_headers(response.headers)
        except (TypeError, ValueError):
            return
        if info is None:
            return
        reset = float(info.reset_in_seconds)
        if info.remaining <= 0:
            if reset > MAX_RETRY_AFTER_S:
                with self._lock:
                    self.failure = self.failure or (
                        f"The Hugging Face Hub's rate limit is spent for the next {reset:g} s."
                    )
                return
            self._hold(reset)
        with self._lock:
            self._gap = (
                min(reset / max(1, info.remaining), MAX_RETRY_AFTER_S)
                if info.remaining < PACE_BELOW_REMAINING
                else 0.0
            )

    def _trip(self, reason: str) -> None:
        with self._lock:
            if self.failed_after is None and self._first_request is not None:
                self.failed_after = self._clock() - self._first_request
        self.failure = reason
        raise HubUnavailable(reason)


def _namesakes(
    evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]],
    hits: dict[str, SearchHit],
) -> list[SearchHit]:
    """Search hits not listed yet that have the repo name of a name-and-size match under
    another owner (re-uploads; quantisers publishing `<model>-GGUF` with the same file
    names), most downloaded first."""
    names = {
        repo.split("/")[-1].lower()
        for repo, (match, _, _) in evaluated.items()
        if match.trust is TrustLevel.HIGH
    }
    found = [
        hit for hit in hits.values()
        if hit.repo_id not in evaluated and hit.repo_id.split("/")[-1].lower() in names
    ]
    return sorted(found, key=lambda hit: -hit.downloads)
