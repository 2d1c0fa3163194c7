"""Where to look on the Hub: search queries from a model's name, and repos named by the file.

Generic file names (`model.safetensors`, `pytorch_model.bin`, `model-00001-of-00004.safetensors`)
say nothing about the model, so the folder they sit in is searched instead: people keep repo
downloads in folders named after the repo, including the Hub cache's `models--org--name`.
"""

from __future__ import annotations

import re

from modelimport.identify.hub.records import LookupRequest
from modelimport.names import GENERIC_STEMS, clean_model_name, is_generic_name

MAX_SEARCH_QUERIES = 3
MIN_QUERY_LENGTH = 3


# Trailing tokens that mark a person's copy rather than the model ("v2", "final", "copy (1)").
VERSION_NOISE = re.compile(r"^(v\d+(\.\d+)*|final|fixed|new|copy|latest|\(\d+\)|\d{8})$", re.I)

# A Hub repo id: one or two components of the characters the Hub allows.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_HUB_CACHE_FOLDER = re.compile(r"^models--([^/]+?)--(.+)$")
_REPO_URL = re.compile(r"^(?:https?://(?:www\.)?huggingface\.co/|hf://)?([^?#]+?)/?$")


def valid_repo_id(value: object) -> str | None:
    """`value` when it is a plausible Hub repo id (from a file or the Hub: untrusted), else None."""
    # fullmatch, not match: `$` also matches before a trailing newline, so "org/x\n" passed.
    if isinstance(value, str) and REPO_ID.fullmatch(value) and ".." not in value:
        return value
    return None


def normalize_repo_id(raw: str) -> str | None:
    """`org/name` from an id or URL found inside a file; None when it is not a plausible repo id."""
    match = _REPO_URL.match(raw.strip())
    if not match:
        return None
    repo = match.group(1)
    repo = re.sub(r"/(tree|blob|resolve)/.*$", "", repo)
    return valid_repo_id(repo)


def search_base(request: LookupRequest) -> str:
    """The name to search for: the model's name, or its folder's when the file names are generic."""
    generic = (
        not request.name
        or request.name.lower() in GENERIC_STEMS
        or all(is_generic_name(f.name) for f in request.files)
    )
    if generic and request.folder_name:
        folder = request.folder_name
        cached = _HUB_CACHE_FOLDER.match(folder)
        if cached:
            folder = cached.group(2)
        return clean_model_name(folder)
    return request.name


def search_queries(request: LookupRequest) -> list[str]:
    """Progressively shorter queries: the full cleaned name, without version noise, then
    dropping trailing tokens, so `Meta-Llama-3-8B-Instruct-v2` still finds something."""
    base = search_base(request)
    tokens = [t for t in re.split(r"[-_\s]+", base) if t]
    queries: list[str] = []

    def add(parts: list[str]) -> None:
        query = "-".join(parts)
        if len(query) >= MIN_QUERY_LENGTH and query.lower() not in (q.lower() for q in queries):
            queries.append(query)

    add(tokens)
    while tokens and VERSION_NOISE.match(tokens[-1]):
        tokens = tokens[:-1]
    add(tokens)
    while len(tokens) > 2:
        tokens = tokens[:-1]
        add(tokens)
    return queries[:MAX_SEARCH_QUERIES]


def embedded_candidates(request: LookupRequest) -> list[str]:
    """Repo ids named inside the files or by a Hub-cache folder, in order, valid ones only."""
    repos: list[str] = []
    raw = list(request.embedded_repos)
    if request.folder_name and (cached := _HUB_CACHE_FOLDER.match(request.folder_name)):
        raw.append(f"{cached.group(1)}/{cached.group(2)}")
    for item in raw:
        repo = normalize_repo_id(item)
        if repo and repo not in repos:
            repos.append(repo)
    return repos
