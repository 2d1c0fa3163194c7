"""Metadata for a matched repo, from its listing: names, family, type, license, files.

Everything here comes from the Hub and is untrusted text; it is data for metadata.json, and
anything that becomes a path goes through `sanitize_component` first (see `official_slug`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from modelimport.identify.hub.records import LookupRequest, RepoListing
from modelimport.names import clean_model_name, is_generic_name, sanitize_component

# Pattern in repo id, tags or base model -> family. First match wins; extend with one line.
FAMILY_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"stable-diffusion-xl|sdxl|sd_xl", "sdxl"),
    (r"stable-diffusion-3|\bsd3", "sd3"),
    (r"stable-diffusion|\bsd-?1\.?5|\bsd15", "sd1.5"),
    (r"\bflux", "flux"),
    (r"mixtral|mistral", "mistral"),
    (r"llama", "llama"),
    (r"qwen", "qwen"),
    (r"gemma", "gemma"),
    (r"\bphi-?\d", "phi"),
    (r"deepseek", "deepseek"),
    (r"whisper", "whisper"),
    (r"\bt5\b|flan-t5", "t5"),
    (r"\bclip\b", "clip"),
    (r"bert", "bert"),
)

# Hub pipeline tag -> our model type.
PIPELINE_MODEL_TYPE: dict[str, str] = {
    "text-generation": "llm",
    "text2text-generation": "llm",
    "conversational": "llm",
    "image-text-to-text": "llm",
    "text-to-image": "checkpoint",
    "image-to-image": "checkpoint",
    "feature-extraction": "embedding",
    "sentence-similarity": "embedding",
    "automatic-speech-recognition": "audio",
    "text-to-speech": "audio",
}

# Tag -> subtype, first match wins.
SUBTYPE_TAGS: tuple[tuple[str, str], ...] = (
    ("lora", "lora"),
    ("controlnet", "controlnet"),
    ("gguf", "gguf"),
    ("conversational", "instruct"),
)


def family_of(listing: RepoListing) -> str | None:
    base = listing.card_data.get("base_model")
    bases = base if isinstance(base, list) else [str(base or "")]
    haystack = " ".join([listing.repo_id, *listing.tags, *map(str, bases)]).lower()
    for pattern, family in FAMILY_PATTERNS:
        if re.search(pattern, haystack):
            return family
    return None


def subtype_of(listing: RepoListing) -> str | None:
    if "instruct" in listing.repo_id.lower():
        return "instruct"
    tags = {t.lower() for t in listing.tags}
    return next((subtype for tag, subtype in SUBTYPE_TAGS if tag in tags), None)


def license_of(listing: RepoListing) -> str | None:
    value = listing.card_data.get("license")
    if isinstance(value, str):
        return value
    return next((t.split(":", 1)[1] for t in listing.tags if t.startswith("license:")), None)


def official_slug(repo_id: str) -> str:
    """A path-safe name for a matched repo (the Hub's names are untrusted)."""
    return sanitize_component(repo_id.split("/")[-1], fallback="model")


def _cleaned_name(listing: RepoListing, request: LookupRequest) -> str:
    """The local name, unless it is generic (`model`, `pytorch_model`, a bare shard name):
    then the matched repo's name says what the model is."""
    if request.name and not is_generic_name(request.name):
        return request.name
    return clean_model_name(listing.repo_id.split("/")[-1])


def repo_metadata(
    listing: RepoListing,
    request: LookupRequest,
    matched_filename: str | None,
    endpoint: str,
) -> dict[str, Any]:
    base_model = listing.card_data.get("base_model")
    download_url = None
    if matched_filename:
        download_url = (
            f"{endpoint}/{quote(listing.repo_id, safe='/')}/resolve/main/"
            f"{quote(matched_filename, safe='/')}"
        )
    return {
        "official_name": listing.repo_id.split("/")[-1],
        "cleaned_name": _cleaned_name(listing, request),
        "family": family_of(listing),
        "model_type": PIPELINE_MODEL_TYPE.get(listing.pipeline_tag or ""),
        "subtype": subtype_of(listing),
        "tags": list(listing.tags),
        "base_model": base_model,
        "license": license_of(listing),
        "pipeline_tag": listing.pipeline_tag,
        "library_name": listing.library_name,
        "download_url": download_url,
        "gated": listing.gated,
        "repo_files": [{"path": f.path, "size": f.size} for f in listing.files],
        "matched_filename": matched_filename,
        "card_data": listing.card_data,
        "repo_sha": listing.sha,
        "downloads": listing.downloads,
        "hash_mismatch": False,
    }
