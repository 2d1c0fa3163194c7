"""Enrich imported models from the identity sources: `retry-pending`, and the step of an
import that asks the sources by content (CivitAI) once the copy stream has every SHA256.

Invariants:
- A record whose match_source is "manual" is never changed, whatever a source says.
- A source that could not answer changes only lookup_attempts, last_lookup_attempt and its
  `<source>_error`; the model stays pending. An answer merges its match (`apply_lookup`) and
  the model stops being pending once no source owes it an answer.
- Sources by content get one batch request for all the models of a run (`identify_many`).
- metadata.json is rewritten atomically and the index row follows under the commit lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.library import index
from modelimport.library.layout import Library
from modelimport.library.maintenance import OpenLibrary
from modelimport.library.metadata import apply_lookup, now_iso


def lookup_request_for(record: dict[str, Any]) -> Any:
    """A lookup request from an imported record: full SHA256s are known, so no file is read."""
    from modelimport.identify.hub import LocalFile
    from modelimport.identify.hub.candidates import request_for

    files = tuple(
        LocalFile(
            f.get("original_name") or f["name"], int(f["size"]), f.get("fast_hash"), f["sha256"]
        )
        for f in record.get("files", [])
        if f.get("format") != "index-json"
    )
    sources = record.get("sources") or []
    folder = PurePath(sources[0]["path"]).parent.name if sources else None
    says = record.get("file_says") or {}
    sourced = record.get("field_sources") or {}
    return request_for(
        files,
        folder,
        embedded_repos=tuple(record.get("embedded_repos") or ()),
        metadata=says.get("embedded_metadata"),
        # What the file said, not what an earlier match filled in.
        model_type=record.get("model_type") if sourced.get("model_type") == "file" else None,
        family=record.get("family") if sourced.get("family") == "file" else None,
        whole_set=not record.get("incomplete_set"),  # a set missing shards is never verified
    )


def owes_answer(record: dict[str, Any], source: Any) -> bool:
    """Does `source` still owe this pending record an answer? The Hub: when it failed or was
    never asked (imported offline). A content source: when it failed, or was never asked and
    nothing verified the model yet."""
    if source.name in (record.get("pending_sources") or []):
        return True
    if f"{source.name}_error" in record:
        return True
    if not source.needs_sha256:
        return not record.get("lookup_attempts")
    return source.name not in record and record.get("trust_level") != "verified"


def enrich_models(
    library: Library,
    db: Any,
    model_ids: Sequence[str],
    sources: Sequence[Any],
    progress: ProgressSink = ignore_progress,
    *,
    only_owed: bool = True,
) -> list[dict[str, Any]]:
    """Ask `sources` about these models and merge the answers; one result per model."""
    records: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for model_id in model_ids:
        record = library.read_metadata(model_id)
        if record.get("match_source") == "manual":
            results[model_id] = {"model_id": model_id, "status": "manual", "error": None}
            continue
        records[model_id] = record
    asked: dict[str, list[Any]] = {model_id: [] for model_id in records}
    for source in sources:
        ids = [m for m, r in records.items() if not only_owed or owes_answer(r, source)]
        if not ids:
            continue
        for model_id in ids:
            progress(ProgressEvent(Stage.IDENTIFYING, model_id))
        answers = source.identify_many([lookup_request_for(records[m]) for m in ids])
        for model_id, answer in zip(ids, answers, strict=True):
            apply_lookup(records[model_id], answer)
            asked[model_id].append(answer)
    for model_id, record in records.items():
        if not asked[model_id]:
            continue
        record["updated_at"] = now_iso()
        with library.lock("commit"):
            library.write_metadata(model_id, record)
            index.upsert_model(db, model_id, record)
        error = next((a.hub_error for a in asked[model_id] if a.hub_error), None)
        results[model_id] = {
            "model_id": model_id,
            "status": "pending" if record.get("pending_online_lookup") else "enriched",
            "trust_level": record["trust_level"],
            "repo_id": record["repo_id"],
            "identity_source": record.get("identity_source"),
            "match_method": record["match_method"],
            "error": error if record.get("pending_online_lookup") else None,
        }
        if record.get("pending_online_lookup"):
            progress(ProgressEvent(Stage.ERROR, model_id, message="still pending"))
        else:
            progress(ProgressEvent(Stage.COMPLETE, model_id))
    return [results[m] for m in model_ids if m in results]


def retry_pending(
    opened: OpenLibrary, sources: Sequence[Any], progress: ProgressSink = ignore_progress
) -> list[dict[str, Any]]:
    """Look up every model still pending on the sources that owe it an answer."""
    model_ids = index.pending_model_ids(opened.db)
    results = enrich_models(opened.library, opened.db, model_ids, sources, progress)
    done = {r["model_id"] for r in results}
    for model_id in model_ids:
        if model_id not in done:  # pending, yet no enabled source owes it an answer
            record = opened.library.read_metadata(model_id)
            results.append(
                {
                    "model_id": model_id,
                    "status": "pending",
                    "trust_level": record.get("trust_level"),
                    "repo_id": record.get("repo_id"),
                    "identity_source": record.get("identity_source"),
                    "match_method": record.get("match_method"),
                    "error": "no enabled source can answer it",
                }
            )
    return results
