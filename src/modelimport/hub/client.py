"""HubSession: every Hub call of a batch goes through one object that bounds and counts it.

Invariants:
- `identify` never raises for Hub trouble: timeouts, 5xx, 429 and unreachable hosts end in a
  result with `hub_error` set, and the caller imports offline-style.
- At most `MAX_CALLS_PER_MODEL` HTTP requests per `identify`, retries included.
- Once the Hub failed (after bounded retries), no further request is made in this session
  (the breaker): huggingface_hub's own backoff would spend ~23 s per search against a 500.
- Offline (`offline=True`, HF_HUB_OFFLINE=1): no request at all.
- Searches go straight through huggingface_hub's shared session with our timeout, because
  `HfApi.list_models` takes no timeout and retries 5xx/429 by itself for tens of seconds;
  `model_info` takes a timeout and does not retry, so it is called as is.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from modelimport.hub.cache import HubCache
from modelimport.hub.candidates import REPO_ID, embedded_candidates, search_base, search_queries
from modelimport.hub.describe import repo_metadata
from modelimport.hub.records import (
    SELECTION_RANK,
    LocalFile,
    LookupRequest,
    LookupResult,
    RepoFileEntry,
    RepoListing,
    SearchHit,
    TrustLevel,
    no_match,
)
from modelimport.hub.scoring import RepoMatch, match_listing, name_only_match, to_candidate

T = TypeVar("T")

MAX_CALLS_PER_MODEL = 4
MAX_EMBEDDED_REPOS = 2
DEFAULT_SEARCH_LIMIT = 5
MAX_5XX_RETRIES = 1
RETRY_BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 10.0  # a 429 asking for longer than this counts as the Hub being down
MAX_429_RETRIES = 1
DECISIVE = (TrustLevel.VERIFIED, TrustLevel.HIGH)


class HubUnavailable(Exception):
    """The Hub failed in this session; str() is one sentence."""


class _BudgetSpent(Exception):
    pass


def _env_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"} or constants.is_offline_mode()


def _retry_after(exc: HfHubHTTPError) -> float | None:
    response = getattr(exc, "response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _status(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    return response.status_code if response is not None else None


class HubSession:
    """One per batch or command: the HfApi client, disk cache, call counters and breaker."""

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
    ) -> None:
        self.offline = offline or _env_offline()
        self.timeout = timeout
        self.refresh = refresh
        # HF_ENDPOINT is read now, not at huggingface_hub's import time.
        endpoint = endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self.cache = HubCache(cache_dir)
        self.search_limit = search_limit
        self.calls: Counter[str] = Counter()  # HTTP requests made, by kind ("search", "model_info")
        self.failure: str | None = None  # set once the Hub failed: the breaker is open
        self._sleep = sleep
        self._budget = MAX_CALLS_PER_MODEL

    # -- public API ---------------------------------------------------------------------------

    def identify(self, request: LookupRequest) -> LookupResult:
        """Find the repo the files come from; never raises for Hub trouble."""
        if self.offline:
            return no_match(hub_error="offline")
        if self.failure:
            return no_match(hub_error=self.failure)
        self._budget = MAX_CALLS_PER_MODEL
        request = self._with_known_hashes(request)
        self.remember_hashes(request.files)
        try:
            return self._identify(request)
        except HubUnavailable as exc:
            return no_match(hub_error=str(exc))

    def remember_hashes(self, files: tuple[LocalFile, ...] | list[LocalFile]) -> None:
        """Record fast hash -> sha256 of files hashed whole, so they are known next time."""
        for local in files:
            if local.fast_hash and local.sha256:
                self.cache.put(
                    "fasthash", local.fast_hash, {"size": local.size, "sha256": local.sha256}
                )

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # -- identification -----------------------------------------------------------------------

    def _with_known_hashes(self, request: LookupRequest) -> LookupRequest:
        files = []
        for local in request.files:
            if local.sha256 is None and local.fast_hash:
                known = self.cache.get("fasthash", local.fast_hash)
                if isinstance(known, dict) and known.get("size") == local.size:
                    local = replace(local, sha256=str(known.get("sha256")))
            files.append(local)
        return replace(request, files=tuple(files))

    def _identify(self, request: LookupRequest) -> LookupResult:
        search_name = search_base(request)
        evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]] = {}

        def evaluate(repo_id: str, downloads: int | None) -> RepoMatch | None:
            listing = self._listing(repo_id)
            if listing is None:
                return None
            match = match_listing(request, listing, search_name)
            evaluated[repo_id] = (match, listing, downloads or listing.downloads)
            return match

        def decided() -> bool:
            return any(m.trust in DECISIVE for m, _, _ in evaluated.values())

        try:
            for repo_id in embedded_candidates(request)[:MAX_EMBEDDED_REPOS]:
                evaluate(repo_id, None)
                if decided():
                    break
            hits: list[SearchHit] = []
            if not decided():
                for query in search_queries(request):
                    hits = [h for h in self._search(query) if h.repo_id not in evaluated]
                    if hits:
                        break
            for hit in sorted(hits, key=lambda h: -h.downloads):
                if decided():
                    break
                if hit.repo_id not in evaluated:
                    evaluate(hit.repo_id, hit.downloads)
        except _BudgetSpent:
            hits = locals().get("hits") or []
        for hit in hits:  # searched but not listed: judged by name only
            if hit.repo_id not in evaluated:
                judged = name_only_match(search_name, hit.repo_id)
                evaluated[hit.repo_id] = (judged, None, hit.downloads)
        return self._verdict(request, evaluated)

    def _verdict(
        self,
        request: LookupRequest,
        evaluated: dict[str, tuple[RepoMatch, RepoListing | None, int]],
    ) -> LookupResult:
        ranked = sorted(
            evaluated.values(),
            key=lambda item: (SELECTION_RANK[item[0].trust], item[0].confidence, item[2]),
            reverse=True,
        )
        candidates = tuple(to_candidate(m, downloads) for m, _, downloads in ranked)
        if not ranked or ranked[0][0].trust is TrustLevel.NONE:
            return no_match(candidates=candidates)
        match, listing, _ = ranked[0]
        matched = match.matched_files
        first_path = next(iter(matched.values()), None)
        if listing is not None:
            metadata = repo_metadata(listing, request, first_path, self.endpoint)
        else:
            metadata = {"official_name": match.repo_id.split("/")[-1], "cleaned_name": request.name}
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
        )

    # -- Hub calls ----------------------------------------------------------------------------

    def _search(self, query: str) -> list[SearchHit]:
        key = f"{self.endpoint}|{query}|{self.search_limit}"
        if not self.refresh:
            cached = self.cache.get("search", key)
            if isinstance(cached, list):
                return [SearchHit(str(r), int(d)) for r, d in cached]

        def fetch() -> list[ModelInfo]:
            response = get_session().get(
                f"{self.endpoint}/api/models",
                params={
                    "search": query,
                    "sort": "downloads",
                    "direction": -1,
                    "limit": self.search_limit,
                },
                headers=build_hf_headers(token=self.token),
                timeout=self.timeout,
            )
            hf_raise_for_status(response)
            return [ModelInfo(**item) for item in response.json()]

        infos = self._call("search", fetch)
        hits = [
            SearchHit(info.id, int(info.downloads or 0))
            for info in infos or ()
            if isinstance(info.id, str) and REPO_ID.match(info.id)
        ][: self.search_limit]
        self.cache.put("search", key, [[h.repo_id, h.downloads] for h in hits])
        return hits

    def _listing(self, repo_id: str) -> RepoListing | None:
        key = f"{self.endpoint}|{repo_id}"
        if not self.refresh:
            cached = self.cache.get("repo", key)
            if isinstance(cached, dict):
                try:
                    return RepoListing.from_json(cached)
                except (KeyError, TypeError, ValueError):
                    pass
        info = self._call(
            "model_info",
            lambda: self.api.model_info(repo_id, files_metadata=True, timeout=self.timeout),
        )
        if info is None:
            return None
        listing = _listing_from_info(repo_id, info)
        self.cache.put("repo", key, listing.to_json())
        return listing

    def _call(self, kind: str, fn: Callable[[], T]) -> T | None:
        """One Hub request with bounded retries; None when the repo does not exist."""
        retries_5xx = retries_429 = 0
        while True:
            if self.failure:
                raise HubUnavailable(self.failure)
            if self._budget <= 0:
                raise _BudgetSpent()
            self._budget -= 1
            self.calls[kind] += 1
            try:
                return fn()
            except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError):
                return None
            except OfflineModeIsEnabled:
                self._trip("offline")
            except HfHubHTTPError as exc:
                status = _status(exc)
                wait = _retry_after(exc)
                if status == 429 and retries_429 < MAX_429_RETRIES and self._budget > 0:
                    if wait is not None and wait <= MAX_RETRY_AFTER_S:
                        retries_429 += 1
                        self._sleep(wait)
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
                self._trip(f"The Hugging Face Hub could not be reached ({type(exc).__name__}).")

    def _trip(self, reason: str) -> None:
        self.failure = reason
        raise HubUnavailable(reason)


def _listing_from_info(repo_id: str, info: ModelInfo) -> RepoListing:
    card: dict[str, Any] = {}
    if info.card_data is not None:
        try:
            card = info.card_data.to_dict()
        except Exception:  # card data is free-form text from the Hub
            card = {}
    files = tuple(
        RepoFileEntry(
            path=s.rfilename,
            size=(s.lfs.size if s.lfs else s.size),
            sha256=(s.lfs.sha256.lower() if s.lfs and s.lfs.sha256 else None),
        )
        for s in info.siblings or ()
    )
    return RepoListing(
        repo_id=info.id or repo_id,
        sha=info.sha,
        downloads=int(info.downloads or 0),
        tags=tuple(info.tags or ()),
        pipeline_tag=info.pipeline_tag,
        library_name=info.library_name,
        gated=info.gated,
        card_data=card,
        files=files,
    )


def settle_verification(result: LookupResult, sha256_by_name: dict[str, str]) -> LookupResult:
    """Decide a pending verification once the full sha256s are known (from the copy stream).

    All expected hashes equal -> Verified; any different -> Modified version (hash_mismatch),
    except for a fuzzy match, which stays Low confidence; nothing to compare -> unchanged.
    """
    expected = result.expected_sha256
    compared = {
        name: sha256_by_name[name].lower() == sha.lower()
        for name, sha in expected.items()
        if sha256_by_name.get(name)
    }
    if not compared:
        return result
    if not all(compared.values()):
        if result.match_method == "filename_fuzzy":
            # Only the guess "same size, so a renamed copy" is refuted; the similar name
            # remains what it was: low-confidence evidence, not a modified version.
            return replace(result, pending_verification=False, expected_sha256={})
        return replace(
            result,
            trust=TrustLevel.MODIFIED,
            match_method="hash_mismatch",
            confidence=0.7,
            pending_verification=False,
            metadata={**result.metadata, "hash_mismatch": True},
        )
    if len(compared) < len(expected):
        return result  # some files still unverified
    return replace(
        result,
        trust=TrustLevel.VERIFIED,
        match_method="hash",
        confidence=1.0,
        pending_verification=False,
        metadata={**result.metadata, "hash_mismatch": False},
    )
