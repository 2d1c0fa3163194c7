"""Enrich models imported offline: look them up on the Hub again (`retry-pending`).

Invariants:
- A record whose match_source is "manual" is never changed, whatever the Hub says.
- A failed attempt changes only lookup_attempts, last_lookup_attempt and hub_error; the
  model stays pending. A successful one merges the match and clears the flag.
- metadata.json is rewritten atomically and the index row follows under the commit lock.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.library import index
from modelimport.library.maintenance import OpenLibrary
from modelimport.library.metadata import apply_lookup, now_iso


def lookup_request_for(record: dict[str, Any]) -> Any:
    """A Hub request from an imported record: full SHA256s are known, so no file is read."""
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


def retry_pending(
    opened: OpenLibrary, session: Any, progress: ProgressSink = ignore_progress
) -> list[dict[str, Any]]:
    results = []
    for model_id in index.pending_model_ids(opened.db):
        progress(ProgressEvent(Stage.IDENTIFYING, model_id))
        record = opened.library.read_metadata(model_id)
        if record.get("match_source") == "manual":
            results.append({"model_id": model_id, "status": "manual", "error": None})
            continue
        result = session.identify(lookup_request_for(record))
        apply_lookup(record, result)
        record["updated_at"] = now_iso()
        with opened.library.lock("commit"):
            opened.library.write_metadata(model_id, record)
            index.upsert_model(opened.db, model_id, record)
        results.append(
            {
                "model_id": model_id,
                "status": "pending" if result.hub_error else "enriched",
                "trust_level": record["trust_level"],
                "repo_id": record["repo_id"],
                "match_method": record["match_method"],
                "error": result.hub_error,
            }
        )
        if result.hub_error:
            progress(ProgressEvent(Stage.ERROR, model_id, message="still pending"))
        else:
            progress(ProgressEvent(Stage.COMPLETE, model_id))
    return results
