"""Enrich imported models from the identity sources: `retry-pending`, and the step of an
import that asks the sources by content (CivitAI) once the copy stream has every SHA256.

Invariants:
- A record whose match_source is "manual" is never changed, whatever a source says.
- A source that could not answer changes only lookup_attempts, last_lookup_attempt and its
  `<source>_error`; the model stays pending. An answer merges its match (`apply_lookup`) and
  the model stops being pending once no source owes it an answer.
- Sources by content get one batch request for all the models of a run (`identify_many`).
- A model is asked about as its import asked (`lookup_request_for`, rebuilt from the record
  alone: the same weight files in the same order, folder name, names inside the files, type
  and family), so a model imported offline ends as it would have online; a different
  question can get a wrong answer that is final (the model stops being pending).
- metadata.json is rewritten atomically and the index row follows under the commit lock.
- An answer that fills a type or family the file's structure left open (a LoRA filed under
  lora/unknown/ that CivitAI says is SDXL) moves the model to the id the import would have
  given it, with `edit`'s move (`library.edits.refile_record`: one rename, the model is
  whole at the old or the new id whatever happens) and its app links follow. The decision is
  made from the record and the folder it is in, so a move a crash cut short is made again.
  A type or family the file, its config or a person decided never moves a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath, PurePosixPath
from typing import Any

from modelimport.errors import ModelNotFound
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.library import index
from modelimport.library.edits import (
    commit_record,
    id_for_record,
    refile_record,
    relink_moved_model,
)
from modelimport.library.layout import Library, make_model_id
from modelimport.library.maintenance import OpenLibrary
from modelimport.library.metadata import STRUCTURE_PRECEDENCE, apply_lookup, choose, now_iso

# Fields that are components of a model id, and where their value may come from for a late
# answer to move the model: an identity source, over a value nothing proved.
FILING_FIELDS = ("model_type", "family")
FILING_SOURCES = frozenset({"civitai", "hub", "hub_verified"})
# Where a type or family the import planned with came from: the model's config, its
# tensors, its name, a default. Never an identity source's later answer, nor a person's.
PLANNED_SOURCES = ("config", "file", "filename", "default")


def lookup_request_for(record: dict[str, Any]) -> Any:
    """The lookup request the import of this model made (`importer.pipeline`), rebuilt from its
    record: the same weight files in the same order (full SHA256s known, so nothing is read),
    the same folder name, the same names the model gives itself and the same type and
    family. A model imported offline is then asked about as if it had been imported online;
    any other question can get a wrong answer that is final (a bundle's configs and README
    sent as weights: no repo "holds" a README of other bytes, and the first file named the
    search)."""
    from modelimport.identify.hub import LocalFile
    from modelimport.identify.hub.candidates import request_for

    weights = _looked_up_files(record)
    files = tuple(
        LocalFile(_original_name(f), int(f["size"]), f.get("fast_hash"), f["sha256"])
        for f in weights
    )
    says = record.get("file_says") or {}
    bundle = record.get("bundle") or None
    config = says.get("config") if bundle and isinstance(says.get("config"), dict) else {}
    name_or_path = config.get("_name_or_path") if config else ""
    return request_for(
        files,
        _folder_name(record, weights),
        embedded_repos=tuple(record.get("embedded_repos") or ()),
        metadata=says.get("embedded_metadata"),
        model_type=_as_planned(record, "model_type"),
        family=_as_planned(record, "family"),
        whole_set=not record.get("incomplete_set"),  # a set missing shards is never verified
        name_or_path=name_or_path if isinstance(name_or_path, str) else "",
    )


def _original_name(entry: dict[str, Any]) -> str:
    return str(entry.get("original_name") or entry["name"])


def _looked_up_files(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The files the import looked up: the weights a reader of ours read (not a set's index,
    a sidecar, a bundle's configs, tokenizers, README, nor its ONNX weights), a bundle's in
    the order the import reads them (`bundles.detect.weights_order`)."""
    from modelimport.formats import READ_FORMATS
    from modelimport.readers.bundles.detect import weights_order

    every = [f for f in record.get("files") or [] if f.get("format") != "index-json"]
    files = [
        f
        for f in every
        if f.get("role", "weights") == "weights" and f.get("format") in READ_FORMATS
    ]
    if not files:
        return every  # a record no import of ours wrote so: ask about what it holds
    if record.get("bundle"):
        files.sort(key=lambda f: weights_order(PurePosixPath(_original_name(f))))
    return files


def _folder_name(record: dict[str, Any], weights: list[dict[str, Any]]) -> str | None:
    """The name of the folder the import took the model from: a bundle's own folder (its
    files may sit in subfolders), else the folder holding its first weight file."""
    bundle = record.get("bundle") or {}
    sources = record.get("sources") or []
    if bundle.get("root"):
        from modelimport.readers.bundles.detect import search_folder_name

        # The bundle's folder, found on its first source's path: the name the import
        # searched by (a Hub-cache snapshot's repo folder rather than its commit hash).
        root = next((parent for s in sources[:1] for parent in PurePath(s["path"]).parents
                     if parent.name == bundle["root"]), None)
        return search_folder_name(root) if root is not None else str(bundle["root"])
    first = _original_name(weights[0]) if weights else None
    path = next((s["path"] for s in sources if PurePath(s["path"]).name == first), None)
    if path is None and sources:
        path = sources[0]["path"]
    return PurePath(path).parent.name if path else None


def _as_planned(record: dict[str, Any], field: str) -> str | None:
    """The type or family the import planned with: what the model itself says, before any
    identity source filled it (`library.metadata.field_candidates`)."""
    candidates = (record.get("field_candidates") or {}).get(field) or {}
    own = {source: v for source, v in candidates.items() if source in PLANNED_SOURCES}
    if own:
        return str(choose(own, STRUCTURE_PRECEDENCE)[0])
    # A record written before field_candidates: its value, when the model itself said it.
    if (record.get("field_sources") or {}).get(field) in PLANNED_SOURCES:
        return record.get(field)
    return None


def owes_answer(record: dict[str, Any], source: Any) -> bool:
    """Does `source` still owe this pending record an answer? The Hub: when it failed or was
    never asked (imported offline). A content source: when it failed, or was never asked and
    nothing verified the model yet; never a source that cannot answer about it at all."""
    asks_about = getattr(source, "asks_about", None)
    if asks_about is not None and not asks_about(lookup_request_for(record)):
        return False
    if source.name in (record.get("pending_sources") or []):
        return True
    if f"{source.name}_error" in record:
        return True
    if not source.needs_sha256:
        return not record.get("lookup_attempts")
    return source.name not in record and record.get("trust_level") != "verified"


def refiled(model_id: str, record: dict[str, Any]) -> bool:
    """Is the model filed under another type or family than its record now says, because an
    identity source filled one the file's structure left open? Never for a value the file,
    its config or a person decided (`field_sources`)."""
    sources = record.get("field_sources") or {}
    filed = model_id.split("/")[:2]
    wanted = make_model_id(
        str(record.get("model_type") or "unknown"), str(record.get("family") or "unknown"), "m"
    ).split("/")[:2]
    changed = False
    for field, now, then in zip(FILING_FIELDS, wanted, filed, strict=True):
        if now == then:
            continue
        if sources.get(field) not in FILING_SOURCES:
            return False
        changed = True
    return changed


def enrich_models(
    library: Library,
    db: Any,
    model_ids: Sequence[str],
    sources: Sequence[Any],
    progress: ProgressSink = ignore_progress,
    *,
    only_owed: bool = True,
    relink: bool = True,
) -> dict[str, dict[str, Any]]:
    """Ask `sources` about these models and merge the answers: the id asked about -> its
    result, whose `model_id` is where the model is now (it moves when an answer decides its
    type or family, see the module invariants). `relink=False` when the models have no app
    links yet (an import links its batch afterwards, at the ids they end at)."""
    records: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for model_id in model_ids:
        try:
            record = library.read_metadata(model_id)
        except ModelNotFound:
            # Indexed, but not where the index says (a move a crash cut short): `rescan`
            # indexes it where it is; the other models are still asked about.
            results[model_id] = {
                "model_id": model_id,
                "status": "pending",
                "trust_level": None,
                "repo_id": None,
                "identity_source": None,
                "match_method": None,
                "error": "its folder is not where the index says: run `modelimport rescan`",
            }
            continue
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
        new_id = model_id
        with library.lock("commit"):
            if library.read_metadata(model_id).get("match_source") == "manual":
                # Marked manual while the sources were asked: a person's word wins.
                results[model_id] = {"model_id": model_id, "status": "manual", "error": None}
                continue
            if refiled(model_id, record):
                new_id = id_for_record(library, db, model_id, record)
            if new_id == model_id:
                commit_record(library, db, model_id, model_id, record)
            else:
                refile_record(library, db, model_id, new_id, record)
        if new_id != model_id and relink:
            relink_moved_model(library, db, model_id, new_id)  # under the links lock
        error = next((a.hub_error for a in asked[model_id] if a.hub_error), None)
        results[model_id] = {
            "model_id": new_id,
            "status": "pending" if record.get("pending_online_lookup") else "enriched",
            "trust_level": record["trust_level"],
            "repo_id": record["repo_id"],
            "identity_source": record.get("identity_source"),
            "match_method": record["match_method"],
            "error": error if record.get("pending_online_lookup") else None,
        }
        if record.get("pending_online_lookup"):
            progress(ProgressEvent(Stage.PENDING, model_id, message="lookup still pending"))
        else:
            progress(ProgressEvent(Stage.COMPLETE, model_id, message=new_id))
    return {m: results[m] for m in model_ids if m in results}


def retry_pending(
    opened: OpenLibrary, sources: Sequence[Any], progress: ProgressSink = ignore_progress
) -> list[dict[str, Any]]:
    """Look up every model still pending on the sources that owe it an answer."""
    model_ids = index.pending_model_ids(opened.db)
    answered = enrich_models(opened.library, opened.db, model_ids, sources, progress)
    results = list(answered.values())
    for model_id in model_ids:
        if model_id not in answered:  # pending, yet no enabled source owes it an answer
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
