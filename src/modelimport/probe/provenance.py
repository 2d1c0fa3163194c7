"""Repositories a model file names about itself (GGUF source/base-model keys, safetensors
`__metadata__`). Such names are untrusted input: only well-formed `org/name` ids pass."""

from __future__ import annotations

import re
from typing import Any

from modelimport.formats import FileFacts

# GGUF keys naming repositories; `{n}` counts base models from 0.
GGUF_REPO_KEYS = ("general.source.huggingface.repository", "general.source.repo_url",
                  "general.base_model.{n}.repo_url", "general.base_model.{n}.repository")
HF_URL = re.compile(r"^(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/([\w.-]+/[\w.-]+)")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
# safetensors __metadata__ keys that may name a repository.
METADATA_REPO_KEYS = ("modelspec.source", "source", "repo_id", "hf_repo", "base_model",
                      "ss_sd_model_name", "modelspec.base_model", "_name_or_path")


def embedded_repos(first: FileFacts, metadata: dict[str, Any]) -> tuple[str, ...]:
    candidates: list[str] = []
    if first.format == "gguf":
        for pattern in GGUF_REPO_KEYS:
            for n in range(16) if "{n}" in pattern else [None]:
                value = metadata.get(pattern.format(n=n))
                if value is None:
                    if n is not None and n > 0:
                        break
                    continue
                candidates.append(str(value))
    else:
        candidates += [str(metadata[k]) for k in METADATA_REPO_KEYS if k in metadata]
    repos: list[str] = []
    for value in candidates:
        repo = as_repo_id(value)
        if repo and repo not in repos:
            repos.append(repo)
    return tuple(repos)


def as_repo_id(value: str) -> str | None:
    """`https://huggingface.co/org/name` or `org/name` -> `org/name`; anything else -> None."""
    value = value.strip()
    found = HF_URL.match(value)
    if found:
        value = found.group(1)
    if value.endswith(".git"):
        value = value[:-4]
    return value if REPO_ID.match(value) and ".." not in value else None
