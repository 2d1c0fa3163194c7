"""metadata.json records: built from what the file says, what the Hub says, and the digests.

Where sources disagree, the more trustworthy wins (FIELD_PRECEDENCE, highest first):
user edit > manual record > verified Hub match > the model's own config (config.json,
model_index.json of a folder that is one model) > file contents > CivitAI (exact by hash) >
unverified Hub match > filename. What the model's structure proves (its config, its tensors)
outranks any match (STRUCTURE_PRECEDENCE, for model_type and family): a LoRA verified against
a text-to-image repo, or filed on CivitAI as a checkpoint, stays a LoRA; a match only fills
what the tensors leave open. The record keeps, per field, where its value came from
(`field_sources`): `config`, `file`, `filename` (the name decided it), `hub`/`hub_verified`,
`civitai`, `default`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelimport.library.layout import SCHEMA_VERSION

FIELD_PRECEDENCE = (
    "user",
    "manual",
    "hub_verified",
    "config",
    "file",
    "civitai",
    "hub",
    "filename",
    "default",
)
STRUCTURE_PRECEDENCE = (
    "user",
    "manual",
    "config",
    "file",
    "hub_verified",
    "civitai",
    "hub",
    "filename",
    "default",
)
PRECEDENCE_BY_FIELD = {"model_type": STRUCTURE_PRECEDENCE, "family": STRUCTURE_PRECEDENCE}
MERGED_FIELDS = ("model_type", "family", "precision", "variant", "cleaned_name")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def choose(
    candidates: dict[str, Any], precedence: tuple[str, ...] = FIELD_PRECEDENCE
) -> tuple[Any, str]:
    """The value from the most trusted source that has one; `candidates` maps source -> value."""
    for source in precedence:
        value = candidates.get(source)
        # "unknown" is no answer, except from a person, who may undo a classification.
        if value not in (None, "", "unknown") or (source == "user" and value == "unknown"):
            return value, source
    return "unknown", "default"


def new_record(**fields: Any) -> dict[str, Any]:
    """A metadata.json skeleton with every documented key present."""
    stamp = now_iso()
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model_id": None,
        "official_name": None,
        "cleaned_name": None,
        "family": "unknown",
        "model_type": "unknown",
        "subtype": None,
        "variant": None,
        "precision": None,
        "tags": [],
        "base_model": None,
        "repo_id": None,
        "download_url": None,
        "license": None,
        "match_source": "auto",
        "identity_source": None,  # which source named the model: "hub", "civitai", None
        "trigger_words": [],  # words a LoRA or embedding was trained on (CivitAI)
        "page_url": None,
        "match_method": None,
        "match_confidence": 0.0,
        # None until the Hub has been asked: "no_match" would claim the Hub has nothing.
        "trust_level": None,
        "hash_mismatch": False,
        "match_confirmed": False,  # a person accepted a low-confidence match
        "needs_confirmation": False,  # a low-confidence match nobody has confirmed yet
        "pending_online_lookup": False,
        "pending_sources": [],  # identity sources that still owe an answer
        "lookup_attempts": 0,
        "last_lookup_attempt": None,
        "is_sharded_set": False,
        "incomplete_set": False,
        "missing_shards": [],
        "files": [],  # name: path relative to the model directory; role: weights, config, ...
        # A folder imported as one model: {"kind", "root" (its original name), "reason"}.
        "bundle": None,
        "companions": [],  # names of the files[] that describe the model (sidecars, README)
        "file_says": {},
        "hub": {},
        "field_sources": {},
        "notes": "",
        "sources": [],
        "import_txn": None,
        "added_at": stamp,
        "updated_at": stamp,
    }
    record.update(fields)
    return record


def set_candidate(record: dict[str, Any], field: str, source: str, value: Any) -> None:
    """Offer `value` for `field` from `source`; `resolve_fields` picks the winner. Unknown
    is no offer, except from a person (undoing a classification)."""
    if value in (None, "") or (value == "unknown" and source != "user"):
        return
    record.setdefault("field_candidates", {}).setdefault(field, {})[source] = value


def resolve_fields(record: dict[str, Any]) -> None:
    """Set each merged field from its most trusted candidate and note where it came from."""
    candidates = record.get("field_candidates", {})
    for field in MERGED_FIELDS:
        precedence = PRECEDENCE_BY_FIELD.get(field, FIELD_PRECEDENCE)
        value, source = choose(candidates.get(field, {}), precedence)
        record[field] = value
        record.setdefault("field_sources", {})[field] = source


def apply_lookup(record: dict[str, Any], result: Any) -> None:
    """Merge a `LookupResult` of any identity source into a record (not for manual records:
    callers check). Sources are applied in order (the Hub, then CivitAI): a source that could
    not answer leaves the model pending; a content source's miss (CivitAI has no such file)
    says nothing about the other sources' verdict and changes only its own key."""
    source = getattr(result, "source", "hub")
    error_key = f"{source}_error"
    if source == "hub":
        record["lookup_attempts"] = int(record.get("lookup_attempts") or 0) + 1
        record["last_lookup_attempt"] = now_iso()
    if result.hub_error:
        record["pending_online_lookup"] = True
        record[error_key] = result.hub_error
        return
    record.pop(error_key, None)
    if source != "hub":
        pending = [s for s in record.get("pending_sources") or [] if s != source]
        record["pending_sources"] = pending
        if result.repo_id is None and str(result.trust) == "no_match":
            record[source] = {"found": False, "checked_at": now_iso()}
            record["pending_online_lookup"] = bool(pending) or "hub_error" in record
            return
        _apply_content_match(record, result, source)
        return
    record["pending_online_lookup"] = bool(record.get("pending_sources"))
    record["match_method"] = result.match_method
    record["match_confidence"] = result.confidence
    record["trust_level"] = str(result.trust)
    # A fuzzy match is a guess until a person confirms it (import's review, or by hand).
    record["needs_confirmation"] = record["trust_level"] == "low_confidence" and not record.get(
        "match_confirmed", False
    )
    record["hash_mismatch"] = result.match_method == "hash_mismatch"
    record["pending_verification"] = bool(result.pending_verification)
    record["repo_id"] = result.repo_id
    meta = dict(result.metadata or {})
    record["hub"] = meta
    for key in (
        "official_name",
        "tags",
        "base_model",
        "license",
        "download_url",
        "pipeline_tag",
        "library_name",
        "gated",
        "matched_filename",
    ):
        if key in meta:
            record[key] = meta[key]
    record["identity_source"] = "hub" if result.repo_id else None
    # A subtype the tensors proved (t2i_adapter, i2v, llm_encoder, ...) outranks a repo tag.
    if meta.get("subtype") and record.get("field_sources", {}).get("subtype") != "file":
        record["subtype"] = meta["subtype"]
        record.setdefault("field_sources", {})["subtype"] = "hub"
    if result.repo_id is None:
        return
    source = "hub_verified" if str(result.trust) == "verified" else "hub"
    for field, key in (
        ("model_type", "model_type"),
        ("family", "family"),
        ("cleaned_name", "cleaned_name"),
    ):
        set_candidate(record, field, source, meta.get(key))
    resolve_fields(record)


def _apply_content_match(record: dict[str, Any], result: Any, source: str) -> None:
    """An exact match by hash from a source other than the Hub (CivitAI): it names the model
    the file is, so it replaces the Hub's guess; the model is no longer pending."""
    meta = dict(result.metadata or {})
    record["pending_online_lookup"] = False
    record.pop("hub_error", None)
    record["identity_source"] = source
    record["match_method"] = result.match_method
    record["match_confidence"] = result.confidence
    record["trust_level"] = str(result.trust)
    record["needs_confirmation"] = False
    record["hash_mismatch"] = False
    record["pending_verification"] = False
    record["repo_id"] = None  # a Hub repo id: none was proven
    record[source] = meta.get(source) or {}
    for key in ("official_name", "base_model", "download_url", "page_url", "trigger_words"):
        if meta.get(key) not in (None, "", []):
            record[key] = meta[key]
    for field in ("model_type", "family"):
        set_candidate(record, field, source, meta.get(field))
    resolve_fields(record)
