"""CivitaiSession: CivitAI by SHA256, an identity source by content (`identify.source`).

`GET <endpoint>/api/v1/model-versions/by-hash/<sha256>` answers one file's hash with the
exact model version (404: not on CivitAI); `POST <endpoint>/api/v1/model-versions/by-hash`
with a JSON array of up to 100 SHA256s answers the versions holding any of them (public;
developer.civitai.com "Model versions", civitai's `by-hash/index.ts`). One request answers
one model, one request per 100 models answers a batch.

Invariants:
- Asked only with full SHA256s (after the copy stream), only for a model of exactly one
  weights file (what CivitAI hosts); a set or a folder of several costs no request.
- A hit is Verified only when the version CivitAI sends lists the very SHA256 asked for.
- A miss costs one request (or a share of a batch request) and is cached on disk for a day,
  a hit for a week, so a second run costs none; `--refresh` bypasses the cache.
- Never raises for CivitAI trouble: offline, timeouts, 5xx, 429 beyond a short Retry-After,
  malformed answers end in `hub_error` (the model stays pending for `retry-pending`), and
  once CivitAI failed it is not asked again in this session (the breaker).
- Thread-safe: counters under a lock, the cache writes whole files by rename.
- CIVITAI_ENDPOINT points it elsewhere (tests use a fake on 127.0.0.1); CIVITAI_API_TOKEN,
  when set, is sent as a Bearer token.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx2

from modelimport.identify.civitai.answers import (
    CivitaiVersion,
    MalformedAnswer,
    single_version,
    versions_list,
)
from modelimport.identify.hub.cache import HubCache
from modelimport.identify.hub.http import read_bounded
from modelimport.identify.hub.records import (
    CONFIDENCE,
    LookupRequest,
    LookupResult,
    TrustLevel,
    no_match,
)
from modelimport.identify.unreachable import unreachable_reason

DEFAULT_ENDPOINT = "https://civitai.com"
ENDPOINT_ENV = "CIVITAI_ENDPOINT"
TOKEN_ENV = "CIVITAI_API_TOKEN"
BATCH_LIMIT = 100  # the batch endpoint refuses more hashes than this
MAX_ANSWER_BYTES = 32 << 20  # a batch of 100 versions with their image lists is a few MiB
MAX_RETRY_AFTER_S = 10.0
RETRY_BACKOFF_S = 0.5
HIT_TTL = 7 * 24 * 3600.0
MISS_TTL = 24 * 3600.0
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")

# CivitAI model type -> our model_type (a candidate only: the file's structure decides).
MODEL_TYPES: dict[str, str] = {
    "checkpoint": "checkpoint",
    "lora": "lora",
    "locon": "lora",
    "dora": "lora",
    "lycoris": "lora",
    "textualinversion": "embedding",
    "vae": "vae",
    "controlnet": "controlnet",
    "upscaler": "upscaler",
    "motionmodule": "motion_module",
    "hypernetwork": "hypernetwork",
}

# CivitAI base model, lower-cased, by prefix -> our family. Longest prefix wins.
BASE_MODEL_FAMILIES: dict[str, str] = {
    "sd 1.": "sd15",
    "sd 2.": "sd2",
    "sdxl": "sdxl",
    "pony": "sdxl",
    "illustrious": "sdxl",
    "noobai": "sdxl",
    "sd 3": "sd3",
    "flux.1": "flux",
    "flux": "flux",
}


def family_for(base_model: str | None) -> str | None:
    if not base_model:
        return None
    lowered = base_model.lower()
    best = max((p for p in BASE_MODEL_FAMILIES if lowered.startswith(p)), key=len, default=None)
    return BASE_MODEL_FAMILIES[best] if best else None


def model_type_for(civitai_type: str | None) -> str | None:
    return MODEL_TYPES.get((civitai_type or "").replace(" ", "").lower())


class CivitaiUnavailable(Exception):
    """CivitAI failed in this session; str() is one sentence."""


def _env_token() -> str | None:
    return os.environ.get(TOKEN_ENV, "").strip() or None


def _retry_after(response: httpx2.Response) -> float | None:
    try:
        wait = float((response.headers.get("Retry-After") or "").strip())
    except ValueError:
        return None
    return wait if math.isfinite(wait) and wait >= 0 else None


def lookup_sha256(request: LookupRequest) -> str | None:
    """The SHA256 to ask CivitAI about: that of the request's only weights file, else None."""
    weights = [f for f in request.files if f.name.lower().endswith(WEIGHT_SUFFIXES)]
    if len(weights) != 1 or not weights[0].sha256:
        return None
    return weights[0].sha256.lower()


class CivitaiSession:
    """One per batch or command: HTTP client, disk cache, call counters and breaker."""

    name = "civitai"
    needs_sha256 = True

    @staticmethod
    def asks_about(request: LookupRequest) -> bool:
        """CivitAI answers the hash of one file: a model of one weights file (sidecars aside)."""
        weights = [f for f in request.files if f.name.lower().endswith(WEIGHT_SUFFIXES)]
        return len(weights) == 1

    def __init__(
        self,
        *,
        offline: bool = False,
        timeout: float = 5.0,
        refresh: bool = False,
        cache_dir: Path | None = None,
        endpoint: str | None = None,
        token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.offline = offline
        self.timeout = timeout
        self.refresh = refresh
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        self.endpoint = endpoint.rstrip("/")
        self.token = token or _env_token()
        self.cache = HubCache(cache_dir)
        self.calls: Counter[str] = Counter()  # requests made: "by_hash", "by_hash_batch"
        self.failure: str | None = None  # the breaker: set once CivitAI failed
        self.failed_after: float | None = None  # seconds from the first request to that
        self._first_request: float | None = None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._client: httpx2.Client | None = None

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # -- public API ---------------------------------------------------------------------------

    def identify(self, request: LookupRequest) -> LookupResult:
        return self.identify_many([request])[0]

    def identify_many(self, requests: Sequence[LookupRequest]) -> list[LookupResult]:
        """Each request's answer, in order: cached ones free, the rest in as few calls as
        the endpoints allow (one GET for one hash, one POST per 100 hashes)."""
        if self.offline:
            return [no_match(hub_error="offline", source=self.name) for _ in requests]
        hashes = [lookup_sha256(r) for r in requests]
        found: dict[str, CivitaiVersion | None] = {}
        for sha in dict.fromkeys(h for h in hashes if h):
            cached = self._cached(sha)
            if cached is not None:
                found[sha] = cached[0]
        wanted = [sha for sha in dict.fromkeys(h for h in hashes if h) if sha not in found]
        error: str | None = None
        try:
            for start in range(0, len(wanted), BATCH_LIMIT):
                chunk = wanted[start : start + BATCH_LIMIT]
                answers = self._lookup(chunk)
                for sha in chunk:
                    version = answers.get(sha)
                    found[sha] = version
                    self._store(sha, version)
        except CivitaiUnavailable as exc:
            error = str(exc)
        results = []
        for request, sha in zip(requests, hashes, strict=True):
            if sha is None:
                results.append(no_match(source=self.name))
            elif sha in found:
                results.append(self._result(request, sha, found[sha]))
            else:
                results.append(no_match(hub_error=error or self.failure, source=self.name))
        return results

    # -- results ------------------------------------------------------------------------------

    def _result(
        self, request: LookupRequest, sha: str, version: CivitaiVersion | None
    ) -> LookupResult:
        if version is None or sha not in version.sha256s:
            return no_match(source=self.name)
        local = next(f.name for f in request.files if (f.sha256 or "").lower() == sha)
        page_url = (
            f"{self.endpoint}/models/{version.model_id}?modelVersionId={version.version_id}"
            if version.model_id is not None
            else None
        )
        official = " ".join(n for n in (version.model_name, version.version_name) if n) or None
        civitai = {
            **version.to_json(),
            "page_url": page_url,
            "matched_sha256": sha,
        }
        civitai.pop("sha256s")
        civitai.pop("file_names")
        civitai["file_name"] = version.file_names.get(sha)
        metadata: dict[str, Any] = {
            "official_name": official,
            "base_model": version.base_model,
            "download_url": version.download_url,
            "page_url": page_url,
            "trigger_words": list(version.trained_words),
            "model_type": model_type_for(version.model_type),
            "family": family_for(version.base_model),
            "hash_mismatch": False,
            "civitai": civitai,
        }
        return LookupResult(
            trust=TrustLevel.VERIFIED,
            match_method="hash",
            confidence=CONFIDENCE["hash"],
            repo_id=None,
            pending_verification=False,
            matched_files={local: version.file_names.get(sha) or local},
            metadata=metadata,
            local_files=tuple(f.name for f in request.files),
            source=self.name,
        )

    # -- cache --------------------------------------------------------------------------------

    def _cache_key(self, sha: str) -> str:
        return f"{self.endpoint}|{sha}"

    def _cached(self, sha: str) -> tuple[CivitaiVersion | None] | None:
        """(version or None for a known miss,) when cached and fresh; None when not cached."""
        if self.refresh:
            return None
        entry = self.cache.get("civitai", self._cache_key(sha))
        if not isinstance(entry, dict) or not isinstance(entry.get("at"), int | float):
            return None
        version = entry.get("version")
        ttl = HIT_TTL if version else MISS_TTL
        if time.time() - entry["at"] > ttl:
            return None
        if version is None:
            return (None,)
        try:
            return (CivitaiVersion.from_json(version),)
        except (KeyError, TypeError, ValueError):
            return None

    def _store(self, sha: str, version: CivitaiVersion | None) -> None:
        value = {"at": time.time(), "version": version.to_json() if version else None}
        self.cache.put("civitai", self._cache_key(sha), value)

    # -- requests -----------------------------------------------------------------------------

    def _lookup(self, hashes: list[str]) -> dict[str, CivitaiVersion | None]:
        """sha256 -> the version holding it (None: not on CivitAI)."""
        try:
            return self._lookup_answers(hashes)
        except MalformedAnswer as exc:  # JSON, but not the shape asked for
            self._trip(f"CivitAI sent {exc}.")

    def _lookup_answers(self, hashes: list[str]) -> dict[str, CivitaiVersion | None]:
        if len(hashes) == 1:
            sha = hashes[0]
            data = self._request("by_hash", "GET", f"/api/v1/model-versions/by-hash/{sha}")
            return {sha: single_version(data) if data is not None else None}
        data = self._request("by_hash_batch", "POST", "/api/v1/model-versions/by-hash", hashes)
        answers: dict[str, CivitaiVersion | None] = {}
        for version in versions_list(data if data is not None else []):
            for sha in version.sha256s & set(hashes):
                answers.setdefault(sha, version)
        return answers

    def _http(self) -> httpx2.Client:
        with self._lock:
            if self._client is None:
                headers = {"Accept": "application/json", "User-Agent": "modelimport"}
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                self._client = httpx2.Client(headers=headers, timeout=self.timeout)
            return self._client

    def _request(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        """One CivitAI request with bounded retries; the decoded JSON, or None for a 404."""
        retried = False
        while True:
            with self._lock:
                if self.failure:
                    raise CivitaiUnavailable(self.failure)
                self.calls[kind] += 1
                self._first_request = self._first_request or time.monotonic()
            try:
                status, response, raw = self._send(method, path, body)
            except MalformedAnswer as exc:
                self._trip(f"CivitAI sent {exc}.")
            except httpx2.TimeoutException:
                self._trip(f"CivitAI did not answer within {self.timeout:g} s.")
            except (httpx2.HTTPError, OSError, ValueError) as exc:
                self._trip(f"CivitAI could not be reached ({unreachable_reason(exc)}).")
            if status == 404:
                return None
            if status == 429 or status >= 500:
                wait = _retry_after(response) if status == 429 else RETRY_BACKOFF_S
                if not retried and wait is not None and wait <= MAX_RETRY_AFTER_S:
                    retried = True
                    self._sleep(wait)
                    continue
                if status == 429:
                    self._trip("CivitAI is rate-limiting requests (HTTP 429).")
                self._trip(f"CivitAI answered HTTP {status}.")
            if status != 200:
                self._trip(f"CivitAI answered HTTP {status}.")
            try:
                return json.loads(raw)
            except (ValueError, RecursionError):
                self._trip("CivitAI sent an answer that is not JSON.")

    def _send(self, method: str, path: str, body: Any) -> tuple[int, httpx2.Response, bytes]:
        """The status, the response (for its headers) and the whole body, read within about
        `timeout` seconds and at most MAX_ANSWER_BYTES (a trickling or endless answer is cut)."""
        deadline = time.monotonic() + self.timeout
        with self._http().stream(
            method, f"{self.endpoint}{path}", json=body if method == "POST" else None
        ) as streamed:
            raw = read_bounded(streamed, deadline, MAX_ANSWER_BYTES)
            return streamed.status_code, streamed, raw

    def _trip(self, reason: str) -> NoReturn:
        with self._lock:
            if self.failure is None and self._first_request is not None:
                self.failed_after = time.monotonic() - self._first_request
            self.failure = self.failure or reason
        raise CivitaiUnavailable(reason)
