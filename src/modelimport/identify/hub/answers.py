"""Hub answers -> records: the JSON of a search or of a repo listing, read field by field.

Everything the Hub sends is untrusted input: any field may be missing, null, of another type,
out of range or hostile. huggingface_hub's `ModelInfo(**data)` raises KeyError, TypeError or
AttributeError on such answers (a sibling without `rfilename`, `lfs` as a string, a list where
an object belongs), so the few fields we use are read here instead.

Invariants:
- A field we cannot use is dropped (None, 0, empty); a file entry or search hit we cannot use
  is left out. Only an answer that is not the right kind of JSON value at all is refused, with
  `MalformedAnswer`, which the session treats as the Hub failing (the lookup stays pending).
- A sha256 is 64 hex digits or absent, and a size a non-negative int or absent: a broken value
  must never turn into evidence that a local file was modified, let alone verified.
- A repo file path is relative, without `.`/`..` components, control characters, backslashes
  or lone surrogates, so it is safe to put into a URL, metadata.json and a terminal. (It never
  becomes a library path: model ids are made from local names, see `importer.pipeline.slug_for`.)
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Any

from modelimport.identify.hub.candidates import valid_repo_id
from modelimport.identify.hub.records import RepoFileEntry, RepoListing, SearchHit

MAX_REPO_PATH_LENGTH = 1024
# Files kept from one listing. Each is compared with each local file, fuzzily when names
# differ (~20 µs a pair): a listing of a million files would take minutes. Model repos hold
# tens to hundreds; a file beyond the cap only weakens a match, never makes a false one.
MAX_REPO_FILES = 10_000
MAX_SIZE = 2**63 - 1  # what SQLite and every file system can hold

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UNSAFE_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters, backslash


class MalformedAnswer(Exception):
    """The Hub answered, but not with the JSON value asked for; str() is a short phrase."""


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


def search_hits(data: Any, limit: int) -> list[SearchHit]:
    """The first `limit` usable hits of a `/api/models` answer."""
    if not isinstance(data, list):
        raise MalformedAnswer(f"a search answer that is {_json_kind(data)}, not an array")
    hits: list[SearchHit] = []
    for item in data:
        if len(hits) >= limit:  # a Hub ignoring `limit` costs nothing beyond the answer's size
            break
        repo_id = valid_repo_id(item.get("id")) if isinstance(item, dict) else None
        if repo_id is not None:
            hits.append(SearchHit(repo_id, count(item.get("downloads"))))
    return hits


def repo_listing(repo_id: str, data: Any) -> RepoListing:
    """A `/api/models/{repo_id}?blobs=true` answer as a RepoListing."""
    if not isinstance(data, dict):
        raise MalformedAnswer(f"a repo answer that is {_json_kind(data)}, not an object")
    siblings = data.get("siblings")
    tags = data.get("tags")
    gated = data.get("gated")
    return RepoListing(
        repo_id=valid_repo_id(data.get("id")) or repo_id,
        sha=text(data.get("sha")),
        downloads=count(data.get("downloads")),
        tags=tuple(c for t in tags if (c := text(t))) if isinstance(tags, list) else (),
        pipeline_tag=text(data.get("pipeline_tag")),
        library_name=text(data.get("library_name")),
        gated=gated if isinstance(gated, bool) else text(gated),
        card_data=card_data(data.get("cardData")),
        files=tuple(
            islice(
                (
                    entry
                    for sibling in (siblings if isinstance(siblings, list) else ())
                    if (entry := file_entry(sibling)) is not None
                ),
                MAX_REPO_FILES,
            )
        ),
    )


def file_entry(sibling: Any) -> RepoFileEntry | None:
    """One sibling of a repo answer; None when it names no safe path."""
    if not isinstance(sibling, dict):
        return None
    path = repo_path(sibling.get("rfilename"))
    if path is None:
        return None
    lfs = sibling.get("lfs") if isinstance(sibling.get("lfs"), dict) else {}
    size = file_size(lfs.get("size"))
    return RepoFileEntry(
        path=path,
        size=size if size is not None else file_size(sibling.get("size")),
        sha256=sha256_hex(lfs.get("sha256")),
    )


# C0 and C1 control characters: in a terminal they are escape sequences (clear the screen,
# move the cursor over the line that said "pending", set the title, make links).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_CARD_DEPTH = 8


def text(value: Any) -> str | None:
    return _plain(value) if isinstance(value, str) else None


def _plain(value: str) -> str:
    """A Hub string with control characters removed (tab and newline stay)."""
    return _CONTROL_CHARS.sub("", value)


def _plain_data(value: Any, depth: int = 0) -> Any:
    """Free-form JSON with every string made plain; nesting beyond MAX_CARD_DEPTH dropped."""
    if isinstance(value, str):
        return _plain(value)
    if depth >= MAX_CARD_DEPTH:
        return None
    if isinstance(value, dict):
        return {_plain(str(k)): _plain_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_data(v, depth + 1) for v in value]
    return value


def repo_path(value: Any) -> str | None:
    # Checked raw: a path with a control character is refused, not quietly repaired.
    path = value if isinstance(value, str) else None
    if not path or len(path) > MAX_REPO_PATH_LENGTH or _UNSAFE_PATH_CHARS.search(path):
        return None
    if any(part in ("", ".", "..") for part in path.split("/")):  # also catches "/abs", "a//b"
        return None
    try:  # JSON's "\ud800" decodes to a lone surrogate, which quote() cannot encode
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return path


def file_size(value: Any) -> int | None:
    # bool is an int subclass; a float, string or negative number is no size at all
    if type(value) is int and 0 <= value <= MAX_SIZE:
        return value
    return None


def count(value: Any) -> int:
    return value if type(value) is int and 0 <= value <= MAX_SIZE else 0


def sha256_hex(value: Any) -> str | None:
    if isinstance(value, str) and _SHA256.fullmatch(value):
        return value.lower()
    return None


def card_data(value: Any) -> dict[str, Any]:
    """The model card's front matter as sent: free-form data, read by `describe` with care."""
    return _plain_data(value) if isinstance(value, dict) else {}
