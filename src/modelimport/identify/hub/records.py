"""Records crossing the hub boundary: what we ask (LookupRequest), what we learn (LookupResult)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelimport.names import clean_model_name


class TrustLevel(StrEnum):
    VERIFIED = "verified"
    HIGH = "high_confidence"
    LOW = "low_confidence"
    MODIFIED = "modified"
    NONE = "no_match"


# How strongly a level identifies a repo, for choosing between candidates. A file whose exact
# name is in a repo but whose bytes differ (MODIFIED) is better evidence of *which* repo it came
# from than a fuzzy name, although it is less trustworthy as a copy of it.
SELECTION_RANK: dict[TrustLevel, int] = {
    TrustLevel.VERIFIED: 4,
    TrustLevel.HIGH: 3,
    TrustLevel.MODIFIED: 2,
    TrustLevel.LOW: 1,
    TrustLevel.NONE: 0,
}

# match_method -> confidence, for the methods with a fixed confidence.
CONFIDENCE = {
    "hash": 1.0,
    "filename_exact": 0.95,
    "hash_mismatch": 0.7,
    # Same name and size in two repos with different bytes: which one is for the hash to say.
    "ambiguous_exact": 0.6,
}


@dataclass(frozen=True)
class FileStamp:
    """Which file, in which state: its real path, size and modification time.

    What rsync trusts to tell an unchanged file: a SHA256 read from a file is reused for it
    only while its stamp (and fast hash) stay the same.
    """

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, st: os.stat_result | None = None) -> FileStamp:
        st = st or path.stat()
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class LocalFile:
    """One file of the model being identified."""

    name: str
    size: int
    fast_hash: str | None = None
    sha256: str | None = None
    # Where and as what the file was read; without it no SHA256 is remembered or reused.
    stamp: FileStamp | None = None


@dataclass(frozen=True)
class LookupRequest:
    name: str  # cleaned model name, as people search for it
    files: tuple[LocalFile, ...]
    folder_name: str | None = None  # used when the file names are generic (model.safetensors)
    embedded_repos: tuple[str, ...] = ()
    # False for a sharded set missing shards: what is not there was not compared, so the
    # set is at most high confidence however well the present files match.
    whole_set: bool = True
    # Names the file gives itself (GGUF general.basename + size + finetune, modelspec.title,
    # kohya ss_output_name, config _name_or_path): more queries, and words to rank hits by.
    hints: tuple[str, ...] = ()
    # Repos the file names as the model it was made from (GGUF general.base_model.*): rarely
    # the repo holding these bytes, so searched last and recorded as `base_model`.
    base_models: tuple[str, ...] = ()
    # What the probe found (model type, family), for generic names and for ranking hits.
    model_type: str | None = None
    family: str | None = None

    @classmethod
    def for_files(
        cls,
        files: tuple[LocalFile, ...],
        folder_name: str | None,
        embedded_repos: tuple[str, ...] = (),
        *,
        whole_set: bool = True,
        hints: tuple[str, ...] = (),
        base_models: tuple[str, ...] = (),
        model_type: str | None = None,
        family: str | None = None,
    ) -> LookupRequest:
        """The request for a model's files: searched by the cleaned name of its first file
        (what people and repos call it), which the names inside a file often are not."""
        # A base model is what the file was made from, not where it lives: never a holder.
        holders = tuple(r for r in embedded_repos if r not in base_models)
        return cls(
            clean_model_name(files[0].name),
            files,
            folder_name or None,
            holders,
            whole_set,
            hints,
            base_models,
            model_type if model_type not in (None, "", "unknown") else None,
            family if family not in (None, "", "unknown", "?") else None,
        )


@dataclass(frozen=True)
class RepoFileEntry:
    """One file of a Hub repo as its listing gives it; `sha256` only for LFS files."""

    path: str
    size: int | None
    sha256: str | None = None


@dataclass(frozen=True)
class RepoListing:
    """What one `model_info(files_metadata=True)` call tells us about a repo; cached 24 h."""

    repo_id: str
    sha: str | None
    downloads: int
    tags: tuple[str, ...]
    pipeline_tag: str | None
    library_name: str | None
    gated: Any
    card_data: dict[str, Any]
    files: tuple[RepoFileEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "sha": self.sha,
            "downloads": self.downloads,
            "tags": list(self.tags),
            "pipeline_tag": self.pipeline_tag,
            "library_name": self.library_name,
            "gated": self.gated,
            "card_data": self.card_data,
            "files": [[f.path, f.size, f.sha256] for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepoListing:
        return cls(
            repo_id=str(data["repo_id"]),
            sha=data.get("sha"),
            downloads=int(data.get("downloads") or 0),
            tags=tuple(str(t) for t in data.get("tags") or ()),
            pipeline_tag=data.get("pipeline_tag"),
            library_name=data.get("library_name"),
            gated=data.get("gated"),
            card_data=dict(data.get("card_data") or {}),
            files=tuple(RepoFileEntry(str(p), s, h) for p, s, h in data.get("files") or ()),
        )


@dataclass(frozen=True)
class SearchHit:
    repo_id: str
    downloads: int


@dataclass(frozen=True)
class Candidate:
    """One row of the lookup table: how well one repo explains the local files."""

    repo_id: str
    matched_file: str | None
    size: int | None
    match_method: str | None
    confidence: float
    trust: TrustLevel
    downloads: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "matched_file": self.matched_file,
            "size": self.size,
            "match_method": self.match_method,
            "confidence": self.confidence,
            "trust": self.trust.value,
            "downloads": self.downloads,
        }


@dataclass(frozen=True)
class LookupResult:
    trust: TrustLevel
    # "hash" | "filename_exact" | "filename_fuzzy" | "hash_mismatch" | None
    match_method: str | None
    confidence: float
    repo_id: str | None
    pending_verification: bool  # sha256 not yet compared (the import's copy stream will)
    expected_sha256: dict[str, str] = field(default_factory=dict)  # local name -> LFS sha256
    matched_files: dict[str, str] = field(default_factory=dict)  # local name -> repo path
    metadata: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()
    hub_error: str | None = None
    # Every local file the verdict is about (the whole request, matched or not): `verified`
    # needs each one's sha256 equal to the Hub's. Not part of the JSON: the caller knows them.
    local_files: tuple[str, ...] = ()
    # Which identity source answered ("hub", "civitai", ...; see `identify.source`).
    source: str = "hub"
    # Other repos holding files of the same names (and sizes) whose bytes may be these: when
    # the copy stream's sha256 differs from this result's, `settle_verification` tries them
    # before settling on Modified. Each is a whole result of its own (metadata included).
    alternates: tuple[LookupResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "trust": self.trust.value,
            "match_method": self.match_method,
            "confidence": self.confidence,
            "repo_id": self.repo_id,
            "pending_verification": self.pending_verification,
            "expected_sha256": dict(self.expected_sha256),
            "matched_files": dict(self.matched_files),
            "metadata": self.metadata,
            "candidates": [c.to_json() for c in self.candidates],
            "hub_error": self.hub_error,
        }


def no_match(
    hub_error: str | None = None,
    candidates: tuple[Candidate, ...] = (),
    source: str = "hub",
) -> LookupResult:
    return LookupResult(
        source=source,
        trust=TrustLevel.NONE,
        match_method=None,
        confidence=0.0,
        repo_id=None,
        pending_verification=False,
        candidates=candidates,
        hub_error=hub_error,
    )
