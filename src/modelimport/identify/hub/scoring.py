"""How well a repo explains the local files: per-file evidence, then one trust level.

Evidence per local file, strongest first:
  hash            the local sha256 (when known) equals a file's LFS sha256
  filename_exact  a repo file has the same name and size (sha256 still to compare)
  hash_mismatch   a repo file has the same name but a different size or sha256
  filename_fuzzy  a repo file has the same size and a similar name, or only a similar name
Per-file evidence is combined so that a set of shards is judged as one model: the set is
verified only when every file of it, and no shard is missing, matched by hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import PurePosixPath

from modelimport.identify.hub.records import (
    CONFIDENCE,
    Candidate,
    LocalFile,
    LookupRequest,
    RepoFileEntry,
    RepoListing,
    TrustLevel,
)
from modelimport.names import MODEL_EXTENSIONS, clean_model_name, strip_model_extension

FUZZY_MIN_SIMILARITY = 0.6  # below this a name is not evidence at all
FUZZY_MIN_CONFIDENCE = 0.5
FUZZY_MAX_CONFIDENCE = 0.85  # always below filename_exact: fuzzy needs confirmation
SAME_SIZE_CONFIDENCE = 0.85  # same size and extension, different name: likely a renamed copy


@dataclass(frozen=True)
class FileEvidence:
    local: LocalFile
    method: str | None
    confidence: float
    repo_file: RepoFileEntry | None = None


@dataclass(frozen=True)
class RepoMatch:
    trust: TrustLevel
    method: str | None
    confidence: float
    repo_id: str
    evidence: tuple[FileEvidence, ...] = field(default=())

    @property
    def matched_files(self) -> dict[str, str]:
        return {e.local.name: e.repo_file.path for e in self.evidence if e.repo_file}

    @property
    def expected_sha256(self) -> dict[str, str]:
        return {
            e.local.name: e.repo_file.sha256
            for e in self.evidence
            if e.repo_file and e.repo_file.sha256 and e.method != "hash_mismatch"
        }

    @property
    def pending_verification(self) -> bool:
        return any(
            e.local.sha256 is None and e.repo_file is not None and e.repo_file.sha256
            for e in self.evidence
            if e.method != "hash_mismatch"
        ) and self.trust in (TrustLevel.HIGH, TrustLevel.LOW)


def similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, a.lower(), b.lower()).ratio()


def fuzzy_confidence(sim: float) -> float:
    """Map a similarity in [FUZZY_MIN_SIMILARITY, 1] onto [0.5, 0.85]."""
    span = (sim - FUZZY_MIN_SIMILARITY) / (1 - FUZZY_MIN_SIMILARITY)
    value = FUZZY_MIN_CONFIDENCE + (FUZZY_MAX_CONFIDENCE - FUZZY_MIN_CONFIDENCE) * span
    return round(max(FUZZY_MIN_CONFIDENCE, min(FUZZY_MAX_CONFIDENCE, value)), 3)


def _basename(path: str) -> str:
    return PurePosixPath(path).name


def same_file_name(repo_path: str, local_name: str) -> bool:
    """Is `repo_path` the file `local_name` names? A bare name is compared with the repo
    file's name; a bundle's relative name (`unet/diffusion_pytorch_model.safetensors`) with
    the repo path, whole or as its tail: a pipeline holds that file name once per component."""
    local = local_name.lower()
    if "/" not in local:
        return _basename(repo_path).lower() == local
    path = repo_path.lower()
    return path == local or path.endswith(f"/{local}")


def _is_model_file(path: str) -> bool:
    return path.lower().endswith(MODEL_EXTENSIONS)


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def file_evidence(local: LocalFile, listing: RepoListing) -> FileEvidence:
    files = listing.files
    if local.sha256:
        for entry in files:
            if entry.sha256 and entry.sha256.lower() == local.sha256.lower():
                return FileEvidence(local, "hash", CONFIDENCE["hash"], entry)
    same_name = [e for e in files if same_file_name(e.path, local.name)]
    if same_name:
        same_size = [e for e in same_name if e.size == local.size]
        if same_size:
            entry = same_size[0]
            if local.sha256 and entry.sha256:  # equal sha256 was caught above
                return FileEvidence(local, "hash_mismatch", CONFIDENCE["hash_mismatch"], entry)
            return FileEvidence(local, "filename_exact", CONFIDENCE["filename_exact"], entry)
        sized = [e for e in same_name if e.size is not None]
        if sized:
            return FileEvidence(local, "hash_mismatch", CONFIDENCE["hash_mismatch"], sized[0])
        # The listing gave no usable size (a broken or hostile answer): that is no evidence
        # the file was modified. The name alone is weak; a listed sha256 can still settle it.
        entry = same_name[0]
        if local.sha256 and entry.sha256:  # equal sha256 was caught above
            return FileEvidence(local, "hash_mismatch", CONFIDENCE["hash_mismatch"], entry)
        return FileEvidence(local, "filename_fuzzy", fuzzy_confidence(1.0), entry)
    local_stem = strip_model_extension(_basename(local.name))
    best: tuple[float, RepoFileEntry] | None = None
    for entry in files:
        if not _is_model_file(entry.path) or _suffix(entry.path) != _suffix(local.name):
            continue
        sim = similarity(local_stem, strip_model_extension(_basename(entry.path)))
        if entry.size == local.size:
            if not (local.sha256 and entry.sha256):  # same size, sha256 unknown: renamed copy?
                return FileEvidence(local, "filename_fuzzy", SAME_SIZE_CONFIDENCE, entry)
            continue
        if best is None or sim > best[0]:
            best = (sim, entry)
    if best and best[0] >= FUZZY_MIN_SIMILARITY:
        return FileEvidence(local, "filename_fuzzy", fuzzy_confidence(best[0]), best[1])
    return FileEvidence(local, None, 0.0, None)


def repo_name_similarity(request_name: str, repo_id: str) -> float:
    name = repo_id.split("/")[-1]
    return max(similarity(request_name, name), similarity(request_name, clean_model_name(name)))


def match_listing(request: LookupRequest, listing: RepoListing, search_name: str) -> RepoMatch:
    """Combine per-file evidence into one verdict for this repo."""
    evidence = tuple(file_evidence(f, listing) for f in request.files)
    methods = {e.method for e in evidence}
    if methods == {"hash"} and request.whole_set:
        return RepoMatch(TrustLevel.VERIFIED, "hash", 1.0, listing.repo_id, evidence)
    if "hash_mismatch" in methods:
        return RepoMatch(
            TrustLevel.MODIFIED, "hash_mismatch", CONFIDENCE["hash_mismatch"], listing.repo_id,
            evidence,
        )
    if methods <= {"hash", "filename_exact"}:
        return RepoMatch(
            TrustLevel.HIGH, "filename_exact", CONFIDENCE["filename_exact"], listing.repo_id,
            evidence,
        )
    if methods != {None}:
        confidence = min(e.confidence for e in evidence if e.method) * (
            sum(1 for e in evidence if e.method) / len(evidence)
        )
        confidence = round(max(FUZZY_MIN_CONFIDENCE, min(FUZZY_MAX_CONFIDENCE, confidence)), 3)
        return RepoMatch(TrustLevel.LOW, "filename_fuzzy", confidence, listing.repo_id, evidence)
    return name_only_match(search_name, listing.repo_id, evidence)


def name_only_match(
    search_name: str, repo_id: str, evidence: tuple[FileEvidence, ...] = ()
) -> RepoMatch:
    """A repo none of whose files matched: its name alone is weak, fuzzy evidence at best."""
    sim = repo_name_similarity(search_name, repo_id)
    if sim >= FUZZY_MIN_SIMILARITY:
        # No file to compare against: never more than the low end of the fuzzy range.
        confidence = round(min(fuzzy_confidence(sim), 0.6), 3)
        return RepoMatch(TrustLevel.LOW, "filename_fuzzy", confidence, repo_id, evidence)
    return RepoMatch(TrustLevel.NONE, None, 0.0, repo_id, evidence)


def to_candidate(match: RepoMatch, downloads: int) -> Candidate:
    first = next((e for e in match.evidence if e.repo_file), None)
    return Candidate(
        repo_id=match.repo_id,
        matched_file=first.repo_file.path if first and first.repo_file else None,
        size=first.repo_file.size if first and first.repo_file else None,
        match_method=match.method,
        confidence=match.confidence,
        trust=match.trust,
        downloads=downloads,
    )
