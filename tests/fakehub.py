"""A fake Hugging Face Hub for tests: stdlib HTTP server on 127.0.0.1, data-driven repos.

The real huggingface_hub client reaches it through HF_ENDPOINT (see the `fake_hub` fixture in
conftest.py). It answers the endpoints the client uses, counts requests per endpoint, and can
inject latency, 5xx errors and 429s with Retry-After.

    hub.add_repo("org/name", files={"model.safetensors": b"...", "big.gguf": (size, sha256)},
                 downloads=10, tags=["gguf"], pipeline_tag="text-generation")
    hub.counts["search"], hub.counts["model_info"], hub.total
    hub.fail(500, times=None)            # every request answers 500 (times=n: the next n)
    hub.fail(429, times=1, retry_after=1)
    hub.latency = 0.05                   # seconds before each answer
    hub.rate_limit(500, window=300)      # the Hub's RateLimit headers; 429 once spent
    hub.rejected_429                     # 429s the rate limit answered
    hub.answer_raw("model_info", b"<html>", repo="org/name", content_type="text/html")
    hub.counts["author_list"]            # /api/models?author=X pages (the publisher index)
                                         # a hostile or broken answer, served as given

Files given as bytes can be downloaded (`/{repo}/resolve/{revision}/{path}`, as
`hf_hub_download` asks); files given as (size, sha256) exist only as metadata (listings,
HEAD), and GET answers 404 for them.

    hub.serve_other_bytes("org/name", "model.safetensors", b"...")
                                         # listings keep the real sha256; downloads get these
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeFile:
    path: str
    size: int
    sha256: str
    content: bytes | None = None
    lfs: bool = True
    served: bytes | None = None  # what a download gets instead of `content` (a corrupt Hub)

    @property
    def blob_id(self) -> str:
        return hashlib.sha1(f"blob {self.path}".encode()).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    license: str | None = None
    card_data: dict[str, Any] = field(default_factory=dict)
    gated: bool | str = False
    last_modified: str = "2024-01-02T00:00:00.000Z"  # change it to make the repo "changed"

    def summary(self) -> dict[str, Any]:
        """What a search result shows for this repo."""
        return {
            "_id": hashlib.sha1(self.repo_id.encode()).hexdigest()[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "likes": self.likes,
            "downloads": self.downloads,
            "private": False,
            "tags": self.tags,
            "pipeline_tag": self.pipeline_tag,
            "library_name": self.library_name,
            "createdAt": "2024-01-01T00:00:00.000Z",
            "lastModified": self.last_modified,
        }

    def info(self, blobs: bool) -> dict[str, Any]:
        card = dict(self.card_data)
        if self.license and "license" not in card:
            card["license"] = self.license
        data = {
            **self.summary(),
            "author": self.repo_id.split("/")[0],
            "sha": COMMIT,
            "lastModified": self.last_modified,
            "gated": self.gated,
            "disabled": False,
            "cardData": card,
            "siblings": [],
        }
        for f in self.files.values():
            sibling: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            data["siblings"].append(sibling)
        return data

    def tree_entry(self, f: FakeFile) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
        return entry


@dataclass
class RawAnswer:
    """One canned answer for an endpoint, sent byte for byte whatever the request asked."""

    endpoint: str
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str
    repo: str | None  # only for requests about this repo id (None: any)
    times: int | None  # answers left (None: every time)
    trickle: float = 0.0  # seconds between bytes of the body: a Hub that never quite finishes


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []  # (endpoint, path) per request
        self.authorizations: list[str | None] = []  # the Authorization header per request
        self.latency = 0.0
        self.rejected_429 = 0
        self._limit: tuple[int, float] | None = None  # (requests, window seconds)
        self._window: tuple[float, int] = (0.0, 0)  # (window start, requests in it)
        self._failures: list[tuple[int, int | None, float | None, str | None]] = []
        self._raw: list[RawAnswer] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- data -----------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | tuple[int, str]],
        **attrs: Any,
    ) -> FakeRepo:
        fake_files = {}
        for path, spec in files.items():
            if isinstance(spec, bytes):
                lfs = not path.endswith((".json", ".md", ".txt"))
                fake_files[path] = FakeFile(
                    path, len(spec), hashlib.sha256(spec).hexdigest(), spec, lfs
                )
            else:
                size, sha256 = spec
                fake_files[path] = FakeFile(path, size, sha256)
        repo = FakeRepo(repo_id, fake_files, **attrs)
        self.repos[repo_id] = repo
        return repo

    def serve_other_bytes(self, repo_id: str, path: str, served: bytes) -> None:
        """Downloads of `path` get `served`, while listings and HEAD keep the size and sha256
        of the real content: a Hub (or a proxy) sending bytes other than the ones it lists."""
        self.repos[repo_id].files[path].served = served

    def fail(
        self,
        status: int,
        times: int | None = None,
        retry_after: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Answer `status` to the next `times` requests (None: all) of `endpoint` (None: any)."""
        with self._lock:
            self._failures.append((status, times, retry_after, endpoint))

    def answer_raw(
        self,
        endpoint: str,
        body: Any = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        repo: str | None = None,
        times: int | None = None,
        trickle: float = 0.0,
    ) -> None:
        """Answer requests to `endpoint` (about `repo`, if given) with exactly this: `body` as
        bytes, str (UTF-8), or anything else as JSON. For malformed, mis-shaped or hostile
        answers; the newest matching answer wins, and injected failures come first."""
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        raw = RawAnswer(
            endpoint, status, body, dict(headers or {}), content_type, repo, times, trickle
        )
        with self._lock:
            self._raw.insert(0, raw)

    def rate_limit(self, requests: int, window: float = 300.0) -> None:
        """Limit lookups as the Hub does: a fixed window of `requests` per `window` seconds,
        told in every answer (`RateLimit: "api";r=<left>;t=<reset>` and `RateLimit-Policy`),
        and 429 with Retry-After once spent."""
        with self._lock:
            self._limit = (requests, window)
            self._window = (time.monotonic(), 0)

    def _rate(self) -> tuple[dict[str, str], float | None]:
        """(RateLimit headers, Retry-After when this request is over the limit)."""
        with self._lock:
            if self._limit is None:
                return {}, None
            quota, window = self._limit
            start, used = self._window
            now = time.monotonic()
            if now - start >= window:
                start, used = now, 0
            reset = max(1, int(window - (now - start) + 0.999))
            over = used >= quota
            if not over:
                used += 1
            else:
                self.rejected_429 += 1
            self._window = (start, used)
        headers = {
            "RateLimit": f'"api";r={max(0, quota - used)};t={reset}',
            "RateLimit-Policy": f'"fixed window";"api";q={quota};w={int(window)}',
        }
        return headers, (float(reset) if over else None)

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()
            self._raw.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.log.clear()

    @property
    def total(self) -> int:
        """Requests to model endpoints: huggingface_hub's own daily agent-registry fetch
        (`counts["agent_harnesses"]`) is not a lookup call and is left out."""
        return sum(n for endpoint, n in self.counts.items() if endpoint != "agent_harnesses")

    # -- server ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # stop() waits for one poll: the default 0.5 s made every test 0.5 s longer
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _injected_failure(self, endpoint: str) -> tuple[int, float | None] | None:
        with self._lock:
            for i, (status, times, retry_after, only) in enumerate(self._failures):
                if only is not None and only != endpoint:
                    continue
                if times is not None:
                    if times <= 1:
                        self._failures.pop(i)
                    else:
                        self._failures[i] = (status, times - 1, retry_after, only)
                return status, retry_after
        return None

    def _raw_answer(self, endpoint: str, repo_id: str | None) -> RawAnswer | None:
        with self._lock:
            for raw in self._raw:
                if raw.endpoint != endpoint or raw.repo not in (None, repo_id):
                    continue
                if raw.times is not None:
                    raw.times -= 1
                    if raw.times <= 0:
                        self._raw.remove(raw)
                return raw
        return None

    def _record(self, endpoint: str, path: str, authorization: str | None = None) -> None:
        with self._lock:
            self.counts[endpoint] += 1
            self.log.append((endpoint, path))
            self.authorizations.append(authorization)


def _classify(method: str, path: str) -> tuple[str, str | None, str | None, str | None]:
    """(endpoint, repo_id, revision, rest) for a request path."""
    if path == "/api/models":
        return "search", None, None, None
    if path == "/api/agent-harnesses":  # huggingface_hub fetches it once a day by itself
        return "agent_harnesses", None, None, None
    if path.startswith("/api/models/"):
        rest = path[len("/api/models/") :]
        for marker, endpoint in (
            ("/revision/", "model_info"),
            ("/tree/", "tree"),
            ("/paths-info/", "paths_info"),
        ):
            if marker in rest:
                repo, tail = rest.split(marker, 1)
                rev, _, sub = tail.partition("/")
                return endpoint, repo, unquote(rev), sub
        return "model_info", rest, None, None
    if "/resolve/" in path:
        repo, tail = path.lstrip("/").split("/resolve/", 1)
        rev, _, file_path = tail.partition("/")
        return "resolve", repo, unquote(rev), unquote(file_path)
    return "unknown", None, None, None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        trickle: float = 0.0,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        headers = {**getattr(self, "_rate_headers", {}), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if not trickle:
                self.wfile.write(body)
            for byte in body if trickle else b"":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(trickle)
        except OSError:  # the client gave up (a timeout, an answer too large to read)
            self.close_connection = True

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _not_found(self, code: str, message: str) -> None:
        self._json(404, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        body = b""
        if method == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        endpoint, repo_id, rev, rest = _classify(method, unquote(split.path))
        if endpoint == "search" and "author" in query:
            endpoint = "author_list"  # a publisher's models (the publisher index's update)
        self.fake._record(endpoint, self.path, self.headers.get("Authorization"))
        if self.fake.latency:
            time.sleep(self.fake.latency)
        rate_headers: dict[str, str] = {}
        if endpoint in ("search", "model_info", "author_list"):
            rate_headers, retry_after = self.fake._rate()
            if retry_after is not None:
                headers = {**rate_headers, "Retry-After": f"{retry_after:g}"}
                self._json(429, {"error": "rate limited"}, headers)
                return
        self._rate_headers = rate_headers
        failure = self.fake._injected_failure(endpoint)
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._json(status, {"error": f"injected {status}"}, headers)
            return
        raw = self.fake._raw_answer(endpoint, repo_id)
        if raw is not None:
            self._send(raw.status, raw.body, raw.headers, raw.content_type, raw.trickle)
            return
        if endpoint == "search":
            self._search(query)
            return
        if endpoint == "author_list":
            self._author_list(query)
            return
        if endpoint == "agent_harnesses":
            self._json(200, {"standardEnvVars": [], "harnesses": {}})
            return
        repo = self.fake.repos.get(repo_id or "")
        if repo is None:
            self._not_found("RepoNotFound", "Repository not found")
            return
        if rev not in (None, "main", COMMIT):
            self._not_found("RevisionNotFound", "Invalid rev id")
            return
        if endpoint == "model_info":
            blobs = query.get("blobs", [""])[0].lower() == "true"
            self._json(200, repo.info(blobs))
        elif endpoint == "tree":
            prefix = (rest or "").strip("/")
            entries = [
                repo.tree_entry(f)
                for f in repo.files.values()
                if not prefix or f.path.startswith(prefix + "/")
            ]
            self._json(200, entries)
        elif endpoint == "paths_info":
            form = parse_qs(body.decode())
            paths = form.get("paths", [])
            self._json(200, [repo.tree_entry(repo.files[p]) for p in paths if p in repo.files])
        elif endpoint == "resolve":
            self._resolve(method, repo, rest or "")
        else:
            self._not_found("EntryNotFound", "Not found")

    def _search(self, query: dict[str, list[str]]) -> None:
        text = query.get("search", [""])[0].lower()
        limit = int(query.get("limit", ["1000"])[0])
        sort = query.get("sort", [None])[0]
        repos = [r for r in self.fake.repos.values() if text in r.repo_id.lower()]
        if sort in ("downloads", "likes"):
            repos.sort(key=lambda r: getattr(r, sort), reverse=True)
        self._json(200, [r.summary() for r in repos[:limit]])

    def _author_list(self, query: dict[str, list[str]]) -> None:
        """`/api/models?author=X`: the author's repos, `limit` a page, the next page named by
        a Link header as the Hub does (huggingface_hub's `paginate` follows it)."""
        author = query.get("author", [""])[0].lower()
        limit = int(query.get("limit", ["1000"])[0])
        start = int(query.get("cursor", ["0"])[0])
        repos = [r for r in self.fake.repos.values() if r.repo_id.split("/")[0].lower() == author]
        page = repos[start : start + limit]
        headers = {}
        if start + limit < len(repos):
            headers["Link"] = (
                f'<{self.fake.url}/api/models?author={author}&limit={limit}'
                f'&cursor={start + limit}>; rel="next"'
            )
        self._json(200, [r.summary() for r in page], headers)

    def _resolve(self, method: str, repo: FakeRepo, file_path: str) -> None:
        f = repo.files.get(file_path)
        if f is None:
            self._not_found("EntryNotFound", "Entry not found")
            return
        etag = f'"{f.sha256 if f.lfs else f.blob_id}"'
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": etag,
            "Accept-Ranges": "bytes",
        }
        if f.lfs:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(f.size)})
        if f.content is None:
            if method == "HEAD":
                self.send_response(200)
                self.send_header("Content-Length", str(f.size))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
            else:
                self._not_found("EntryNotFound", "This fake file has no content")
            return
        content = f.served if f.served is not None else f.content
        status = 200
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start_s, _, end_s = range_header[6:].partition("-")
            start = int(start_s or 0)
            end = int(end_s) if end_s else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content = content[start : end + 1]
            status = 206
        self._send(status, content, headers, content_type="application/octet-stream")


class FakeClock:
    """A clock for `HubSession(sleep=clock.sleep, clock=clock.monotonic)`: time moves only
    when the session sleeps, so a test reads how long it waited (`slept`) without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def session(self) -> dict[str, Any]:
        """The HubSession keyword arguments that make it use this clock."""
        return {"sleep": self.sleep, "clock": self.monotonic}
