"""One bounded GET of the Hub API, shared by the lookup session and the publisher index."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx2
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from modelimport.identify.hub.answers import MalformedAnswer

MAX_ANSWER_BYTES = 64 << 20  # a listing of a repo with 10 000 files is a few MiB


def read_bounded(streamed: httpx2.Response, deadline: float, max_bytes: int) -> bytes:
    """A streamed answer's whole body, read by time.monotonic() `deadline` and within
    `max_bytes`: httpx's timeout bounds each read, not the answer, so a server trickling a
    byte at a time would hold a lookup for ever and one sending gigabytes would fill memory.
    Raises MalformedAnswer past `max_bytes`, httpx2.ReadTimeout past the deadline."""
    body = bytearray()
    for chunk in streamed.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise MalformedAnswer(f"an answer over {max_bytes >> 20} MiB")
        if time.monotonic() > deadline:
            raise httpx2.ReadTimeout("answer too slow", request=streamed.request)
    return bytes(body)


def get_json(
    url: str,
    params: dict[str, Any] | None,
    *,
    token: str | bool | None,
    timeout: float,
    observe: Callable[[httpx2.Response], None] | None = None,
) -> tuple[Any, httpx2.Response]:
    """One GET of the Hub API through huggingface_hub's session: (decoded JSON, response),
    whole within about `timeout` seconds and at most MAX_ANSWER_BYTES (`read_bounded`).
    `observe` sees every response before its status is judged (the RateLimit headers of a
    429 matter). Raises huggingface_hub's errors for HTTP errors, MalformedAnswer for what
    is not JSON.
    """
    deadline = time.monotonic() + timeout
    with get_session().stream(
        "GET", url, params=params, headers=build_hf_headers(token=token), timeout=timeout
    ) as streamed:
        body = read_bounded(streamed, deadline, MAX_ANSWER_BYTES)
    # The body is decoded already; a whole response for huggingface_hub's error mapping.
    response = httpx2.Response(
        streamed.status_code,
        headers=[
            (k, v)
            for k, v in streamed.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ],
        content=body,
        request=streamed.request,
    )
    if observe is not None:
        observe(response)
    hf_raise_for_status(response)
    try:
        return json.loads(body), response
    except (ValueError, RecursionError) as exc:  # an HTML page, a cut body, [[[[...
        raise MalformedAnswer("an answer that is not JSON") from exc
