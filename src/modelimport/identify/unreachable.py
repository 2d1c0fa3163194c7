"""Why an identity source's server could not be reached, in the words a person uses."""

from __future__ import annotations

import re

# How an OS error reads inside an HTTP client's message: "[Errno 111] Connection refused".
ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^\]\n]+)")


def unreachable_reason(exc: BaseException) -> str:
    """"connection refused", "name or service not known": the OS error under an HTTP
    client's exception (its cause or context, or its message); else the class name."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror).lower()
        said = ERRNO_TEXT.search(str(current))
        if said:
            return said.group(1).strip().lower()
        current = current.__cause__ or current.__context__
    return type(exc).__name__
