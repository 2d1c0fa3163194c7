"""A fake CivitAI for tests: stdlib HTTP server on 127.0.0.1 answering the by-hash API.

modelimport reaches it through CIVITAI_ENDPOINT (see the `fake_civitai` fixture in
conftest.py). It answers `GET /api/v1/model-versions/by-hash/<hash>` (404 when unknown) and
`POST /api/v1/model-versions/by-hash` (a JSON array of up to 100 SHA256s; 400 beyond),
counts requests per endpoint, and can inject latency, 5xx and 429 with Retry-After.

    civitai.add_version(b"file bytes", model_name="Detail Tweaker", model_type="LORA",
                        base_model="SD 1.5", trained_words=["detailed"])
    civitai.counts["by_hash"], civitai.counts["by_hash_batch"], civitai.total
    civitai.fail(503, times=None)      # every request answers 503 (times=n: the next n)
    civitai.answer_raw(b"<html>")      # a broken or hostile answer, served as given
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

BY_HASH = "/api/v1/model-versions/by-hash"


class FakeCivitai:
    def __init__(self) -> None:
        self.versions: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.authorizations: list[str | None] = []
        self.batch_sizes: list[int] = []
        self.latency = 0.0
        self._ids = itertools.count(1000)
        self._failures: list[tuple[int, int | None, float | None]] = []
        self._raw: tuple[int, bytes] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- data -----------------------------------------------------------------------------

    def add_version(
        self,
        content: bytes | str,
        *,
        model_name: str = "Some Model",
        version_name: str = "v1.0",
        model_type: str = "Checkpoint",
        base_model: str = "SD 1.5",
        trained_words: list[Any] | None = None,
        file_name: str = "model.safetensors",
        **extra: Any,
    ) -> dict[str, Any]:
        """A published version holding one file: its bytes, or its SHA256 as hex."""
        sha = content if isinstance(content, str) else hashlib.sha256(content).hexdigest()
        version_id, model_id = next(self._ids), next(self._ids)
        version = {
            "id": version_id,
            "modelId": model_id,
            "name": version_name,
            "baseModel": base_model,
            "trainedWords": trained_words or [],
            "model": {"name": model_name, "type": model_type, "nsfw": False, "poi": False},
            "files": [
                {
                    "id": next(self._ids),
                    "name": file_name,
                    "type": "Model",
                    "sizeKB": 1.0,
                    "hashes": {"AutoV2": sha[:10].upper(), "SHA256": sha.upper()},
                    "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
                    "primary": True,
                }
            ],
            "images": [],
            "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
            **extra,
        }
        self.versions.append(version)
        return version

    def fail(self, status: int, times: int | None = None, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures.append((status, times, retry_after))

    def answer_raw(self, body: Any, status: int = 200) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        with self._lock:
            self._raw = (status, body)

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()
            self._raw = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _find(self, sha: str) -> dict[str, Any] | None:
        sha = sha.upper()
        for version in self.versions:
            if any(f["hashes"].get("SHA256") == sha for f in version["files"]):
                return version
        return None

    # -- server ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCivitai:
        fake = self

        class Handler(_Handler):
            civitai = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _injected(self) -> tuple[int, float | None] | None:
        with self._lock:
            for i, (status, times, retry_after) in enumerate(self._failures):
                if times is not None:
                    if times <= 1:
                        self._failures.pop(i)
                    else:
                        self._failures[i] = (status, times - 1, retry_after)
                return status, retry_after
        return None


class _Handler(BaseHTTPRequestHandler):
    civitai: FakeCivitai
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _begin(self, endpoint: str) -> bool:
        fake = self.civitai
        with fake._lock:
            fake.counts[endpoint] += 1
            fake.authorizations.append(self.headers.get("Authorization"))
        if fake.latency:
            time.sleep(fake.latency)
        injected = fake._injected()
        if injected is not None:
            status, retry_after = injected
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self._json(status, {"error": f"injected {status}"}, headers)
            return False
        if fake._raw is not None:
            self._send(*fake._raw)
            return False
        return True

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if not path.startswith(BY_HASH + "/"):
            self._json(404, {"error": "Not found"})
            return
        if not self._begin("by_hash"):
            return
        version = self.civitai._find(path[len(BY_HASH) + 1 :])
        if version is None:
            self._json(404, {"error": "Model not found"})
        else:
            self._json(200, version)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urlsplit(self.path).path != BY_HASH:
            self._json(404, {"error": "Not found"})
            return
        if not self._begin("by_hash_batch"):
            return
        try:
            hashes = json.loads(body)
        except ValueError:
            hashes = None
        if (
            not isinstance(hashes, list)
            or len(hashes) > 100
            or not all(isinstance(h, str) and len(h) == 64 for h in hashes)
        ):
            self._json(400, {"error": "Request must include an array of SHA256 Hashes."})
            return
        with self.civitai._lock:
            self.civitai.batch_sizes.append(len(hashes))
        found = [v for h in hashes if (v := self.civitai._find(h)) is not None]
        self._json(200, found)
