"""Completing a library model from its matched repo: download, verify, add atomically.

Invariants (checked by tests/test_downloads.py):
- Every file is downloaded and verified (size, and SHA256 where the Hub lists one) into the
  library's staging before the model is touched; one file that fails discards all of them
  and the model stays exactly as it was (files, metadata.json, index row).
- The model changes by an add-files transaction (library.staging, mode ADD_FILES): under the
  commit lock the verified files are renamed into the model folder, then metadata.json is
  replaced atomically (the commit point), then the index row follows. A crash before the
  commit point is rolled back by the next command; after it, the model is only reindexed.
- Nothing from the Hub names a path unchecked (see `plan`), and the Hub is only asked when
  the person did not ask for offline mode.
"""

from __future__ import annotations

import copy
import os
import posixpath
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.downloads.fetch import DownloadFailed, fetch
from modelimport.downloads.plan import (
    DownloadItem,
    DownloadPlan,
    NothingToDownload,
    original_name,
    plan_downloads,
    weight_files,
)
from modelimport.errors import InvalidModelFile, ModelImportError, UsageError
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.faults import fault_point
from modelimport.hashing import FileDigests, fast_hash
from modelimport.identify.hub.records import CONFIDENCE
from modelimport.library import index, staging
from modelimport.library.contained import inside
from modelimport.library.layout import METADATA_NAME, Library, fsync_dir, write_json_atomic
from modelimport.library.metadata import now_iso, resolve_fields

COMPLETED, UNCHANGED, FAILED = "completed", "unchanged", "failed"
# Trust levels whose repo is taken to be the model's own (a confirmed guess too, below).
TRUSTED_MATCHES = ("verified", "high_confidence")


@dataclass(frozen=True)
class DownloadOptions:
    missing_shards: bool = True  # fetch the shards a set lacks
    related: bool = False  # fetch config, tokenizer, index json, model card the model lacks
    timeout: float = 10.0  # seconds for the Hub's answer before each file


@dataclass
class CompletionResult:
    """What `complete_model` did to one model; `to_json` is the CLI's JSON for it."""

    target: str
    model_id: str | None
    status: str
    repo_id: str | None = None
    downloaded: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    complete: bool | None = None  # the set is whole now (None: not a set, or unknown)
    trust_level: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model_id": self.model_id,
            "status": self.status,
            "repo_id": self.repo_id,
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "error": self.error,
            "complete": self.complete,
            "trust_level": self.trust_level,
        }


def require_hub(offline: bool) -> None:
    """Downloading is the one thing offline mode cannot do: say so before anything starts."""
    if offline:
        raise UsageError(
            "Downloading files needs the Hugging Face Hub, but offline mode is on "
            "(--offline or HF_HUB_OFFLINE=1); run again without it."
        )


def complete_models(
    library: Library,
    db: sqlite3.Connection,
    targets: list[str],
    options: DownloadOptions,
    session: Any,
    progress: ProgressSink = ignore_progress,
) -> list[CompletionResult]:
    """`shards --download-missing`: each target (a model id or a path) completed in turn."""
    results = []
    for target in targets:
        try:
            model_ids = resolve_target(library, db, target)
        except ModelImportError as exc:
            results.append(CompletionResult(target, None, FAILED, error=str(exc)))
            continue
        for model_id in model_ids:
            results.append(
                complete_model(library, db, model_id, options, session, progress, target)
            )
    return results


def resolve_target(library: Library, db: sqlite3.Connection, target: str) -> list[str]:
    """The library model(s) a person means by `target`: a model id, a folder or file of the
    library, or files outside it that were imported (found by their fast hash)."""
    from modelimport.library.layout import validate_model_id

    path = Path(target).expanduser()
    if not path.exists():
        try:
            model_id = validate_model_id(target)
        except ModelImportError:
            model_id = None
        if model_id and (library.root / model_id / METADATA_NAME).is_file():
            return [model_id]
        raise NothingToDownload(
            f"{target} is neither a model id in the library at {library.root} nor a path."
        )
    real, root = path.resolve(), library.root.resolve()
    if real.is_relative_to(root):
        for folder in (real, *real.parents):
            if folder == root:
                break
            if (folder / METADATA_NAME).is_file():
                return [folder.relative_to(root).as_posix()]
        raise NothingToDownload(f"{target} is inside the library but not inside a model.")
    return _imported_from(library, db, path, target)


def _imported_from(library: Library, db: sqlite3.Connection, path: Path, target: str) -> list[str]:
    from modelimport.readers.collect import collect_paths
    from modelimport.readers.shards import group_files

    found: list[str] = []
    for group in group_files(collect_paths([path], exclude=library.root).files):
        owners: set[str] | None = None
        for file in group.files:
            rows = index.find_by_fast_hash(db, file.stat().st_size, fast_hash(file))
            here = {r["model_id"] for r in rows}
            owners = here if owners is None else owners & here
        if owners and len(owners) == 1 and (owner := owners.pop()) not in found:
            found.append(owner)
    if not found:
        raise NothingToDownload(
            f"Nothing at {target} is in the library yet; import it first (`modelimport import "
            f"{target} --download-missing` imports and completes it)."
        )
    return found


def complete_model(
    library: Library,
    db: sqlite3.Connection,
    model_id: str,
    options: DownloadOptions,
    session: Any,
    progress: ProgressSink = ignore_progress,
    target: str | None = None,
) -> CompletionResult:
    """Download what `model_id` lacks from its matched repo and add it atomically."""
    result = CompletionResult(target or model_id, model_id, FAILED)
    try:
        record = library.read_metadata(model_id)
        result.repo_id = record.get("repo_id")
        plan = _plan(model_id, record, options, session)
        result.skipped = list(plan.skipped)
        if plan.items:
            record = _download_and_commit(
                library, db, model_id, plan, options, session, progress, result
            )
    except ModelImportError as exc:
        result.error = str(exc)
        return result
    result.status = COMPLETED if plan.items else UNCHANGED
    if record.get("is_sharded_set"):
        result.complete = not record.get("incomplete_set")
    result.trust_level = record.get("trust_level")
    return result


def _plan(
    model_id: str, record: dict[str, Any], options: DownloadOptions, session: Any
) -> DownloadPlan:
    from modelimport.identify.hub import HubUnavailable

    repo_id = record.get("repo_id")
    if not repo_id:
        why = (
            "it has not been looked up on the Hub yet (run `modelimport retry-pending`)"
            if record.get("pending_online_lookup")
            else "no Hub repo was matched to it"
        )
        raise NothingToDownload(f"{model_id} has nothing to download from: {why}.")
    trusted = record.get("trust_level") in TRUSTED_MATCHES or (
        record.get("trust_level") == "low_confidence" and record.get("match_confirmed")
    )
    if not trusted or record.get("hash_mismatch"):
        raise NothingToDownload(
            f"{model_id} is only a {record.get('trust_level') or 'unsettled'} match for "
            f"{repo_id}; files are downloaded only from a repo known to hold this model."
        )
    try:
        listing = session.listing(repo_id)
    except HubUnavailable as exc:
        reason = str(exc)
        if reason == "offline":
            require_hub(True)
        raise DownloadFailed(f"Nothing was downloaded for {model_id}: {reason}") from exc
    if listing is None:
        raise DownloadFailed(f"{repo_id} is no longer on the Hub; nothing was downloaded.")
    return plan_downloads(
        model_id, record, listing, missing_shards=options.missing_shards, related=options.related
    )


@dataclass
class _Fetched:
    item: DownloadItem
    path: Path
    digests: FileDigests
    file_format: str
    fast_hash: str | None


def _download_and_commit(
    library: Library,
    db: sqlite3.Connection,
    model_id: str,
    plan: DownloadPlan,
    options: DownloadOptions,
    session: Any,
    progress: ProgressSink,
    result: CompletionResult,
) -> dict[str, Any]:
    txn = staging.begin(library, staging.ADD_FILES)
    txn.extra = {"target": model_id, "placements": [], "created_dirs": []}
    txn.save()
    try:
        fetched = [
            _fetch_one(item, plan, txn.path / "download", options, session, progress)
            for item in plan.items
        ]
        record, fetched = _commit(library, db, model_id, plan, fetched, txn)
    except BaseException as exc:
        if txn.state == "committing" and _committed_on_disk(library, model_id, txn.txn_id):
            # metadata.json lists the files already: only the index row is missing, and the
            # journal stays so the next command's recovery writes it.
            txn.release()
            if isinstance(exc, OSError | sqlite3.Error):
                raise DownloadFailed(
                    f"{model_id} was completed, but the index could not be updated ({exc}); "
                    "the next modelimport command indexes it."
                ) from exc
            raise
        if txn.state == "committing":
            staging.undo_added_files(txn)
        txn.close()
        if isinstance(exc, OSError):
            raise DownloadFailed(
                f"Adding the downloaded files to {model_id} failed ({exc.strerror or exc}); "
                "the model is unchanged."
            ) from exc
        if isinstance(exc, ModelImportError) and not str(exc).endswith("unchanged."):
            raise type(exc)(f"{exc} {model_id} is unchanged.") from exc
        raise
    txn.close()
    result.downloaded = [
        {
            "name": f.item.dest,
            "repo_path": f.item.repo_path,
            "role": f.item.role,
            "size": f.digests.size,
            "sha256": f.digests.sha256,
            "verified_by": "sha256" if f.item.sha256 else "size",
        }
        for f in fetched
    ]
    return record


def _committed_on_disk(library: Library, model_id: str, txn_id: str) -> bool:
    try:
        return library.read_metadata(model_id).get("amend_txn") == txn_id
    except ModelImportError:
        return False


def _fetch_one(
    item: DownloadItem,
    plan: DownloadPlan,
    download_dir: Path,
    options: DownloadOptions,
    session: Any,
    progress: ProgressSink,
) -> _Fetched:
    label = f"{plan.model_id.rsplit('/', 1)[-1]}: {item.dest}"
    path, digests = fetch(
        item,
        plan.repo_id,
        plan.revision,
        download_dir,
        endpoint=session.endpoint,
        token=session.token,
        timeout=options.timeout,
        progress=progress,
        label=label,
    )
    file_format, fast = _describe(item, path)
    progress(ProgressEvent(Stage.COMPLETE, label, digests.size, digests.size))
    return _Fetched(item, path, digests, file_format, fast)


# Extension -> metadata.json `format` of a file that is not a model file.
OTHER_FORMATS = {".json": "json", ".md": "text", ".txt": "text", ".jinja": "text"}


def _describe(item: DownloadItem, path: Path) -> tuple[str, str | None]:
    """(format, fast hash) for the record. A weight file is read by content like any import."""
    from modelimport.formats import inspect_file

    if item.role == "index":
        return "index-json", None
    if item.role != "weights":
        return OTHER_FORMATS.get(Path(item.dest).suffix.lower(), "other"), None
    try:
        facts = inspect_file(path)
    except InvalidModelFile as exc:
        raise DownloadFailed(
            f"{item.repo_path} from the Hub is not a usable model file: {exc}"
        ) from exc
    return facts.format, fast_hash(path)


def _commit(
    library: Library,
    db: sqlite3.Connection,
    model_id: str,
    plan: DownloadPlan,
    fetched: list[_Fetched],
    txn: staging.StagingTxn,
) -> tuple[dict[str, Any], list[_Fetched]]:
    """Add `fetched` to the model; returns the new record and the files actually added."""
    model_dir = library.root / model_id
    with library.lock("commit"):
        # Read again under the lock: another process may have completed or changed it since.
        record = library.read_metadata(model_id)
        listed = {f.get("name") for f in record.get("files") or [] if isinstance(f, dict)}
        fetched = [f for f in fetched if f.item.dest not in listed]
        if not fetched:  # another process added them meanwhile
            return record, []
        for f in fetched:
            inside(model_dir, f.item.dest, f"the files of {model_id}")  # or OutsideLibrary
            if os.path.lexists(model_dir / f.item.dest):
                raise DownloadFailed(
                    f"{model_dir / f.item.dest} exists but metadata.json does not list it; "
                    "move it away and try again."
                )
        amended = _amended_record(record, plan, fetched, txn.txn_id)
        write_json_atomic(txn.path / METADATA_NAME, amended)
        created = _missing_dirs(model_dir, [f.item.dest for f in fetched])
        txn.extra["placements"] = [{"staged": str(f.path), "dest": f.item.dest} for f in fetched]
        txn.extra["created_dirs"] = created
        txn.state = "committing"
        txn.save()
        for name in created:
            (model_dir / name).mkdir()
        for f in fetched:
            os.rename(f.path, model_dir / f.item.dest)
            fault_point("download.after_place")
        for folder in {(model_dir / f.item.dest).parent for f in fetched}:
            fsync_dir(folder)
        os.replace(txn.path / METADATA_NAME, model_dir / METADATA_NAME)  # the commit point
        fsync_dir(model_dir)
        fault_point("download.after_commit")
        index.upsert_model(db, model_id, amended)
    return amended, fetched


def _missing_dirs(model_dir: Path, names: list[str]) -> list[str]:
    """Folders (relative, parents first) that placing `names` will create."""
    created: list[str] = []
    for name in names:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in created and not (model_dir / folder).exists():
                created.append(folder)
    return created


def _amended_record(
    record: dict[str, Any], plan: DownloadPlan, fetched: list[_Fetched], txn_id: str
) -> dict[str, Any]:
    amended = copy.deepcopy(record)
    files = amended.setdefault("files", [])
    prefix = f"{plan.folder}/" if plan.folder else ""
    for f in fetched:
        files.append(
            {
                "name": f.item.dest,
                "size": f.digests.size,
                "sha256": f.digests.sha256,
                "blake3": f.digests.blake3,
                "fast_hash": f.fast_hash,
                "format": f.file_format,
                "shard_index": f.item.shard_index,
                "shard_total": f.item.shard_total if f.item.shard_index else None,
                # As found in the repo folder that is this model's folder (see plan).
                "original_name": f.item.repo_path[len(prefix) :],
                "role": f.item.role,
                "downloaded_from": {
                    "repo_id": plan.repo_id,
                    "revision": plan.revision,
                    "path": f.item.repo_path,
                },
            }
        )
    # Shards in set order, everything else after them in the order it came.
    files.sort(key=lambda e: (e.get("shard_index") is None, e.get("shard_index") or 0))
    added = {posixpath.basename(f.item.dest) for f in fetched}
    missing = [m for m in amended.get("missing_shards") or [] if m not in added]
    amended["missing_shards"] = missing
    if amended.get("is_sharded_set"):
        amended["incomplete_set"] = bool(missing)
    amended.setdefault("downloads", []).append(
        {
            "repo_id": plan.repo_id,
            "revision": plan.revision,
            "files": [f.item.repo_path for f in fetched],
            "at": now_iso(),
        }
    )
    amended["amend_txn"] = txn_id
    amended["updated_at"] = now_iso()
    _settle_trust(amended, plan)
    return amended


def _settle_trust(record: dict[str, Any], plan: DownloadPlan) -> None:
    """A set made whole whose every weight file has the Hub's SHA256 is verified."""
    if record.get("match_source") == "manual" or record.get("repo_id") != plan.repo_id:
        return
    if record.get("incomplete_set"):
        return
    expected = plan.expected_sha256
    weights = weight_files(record)
    if not weights or any(expected.get(original_name(f)) != f.get("sha256") for f in weights):
        return
    record.update(
        trust_level="verified",
        match_method="hash",
        match_confidence=CONFIDENCE["hash"],
        hash_mismatch=False,
        pending_verification=False,
        needs_confirmation=False,
    )
    if isinstance(record.get("hub"), dict):
        record["hub"]["hash_mismatch"] = False
    for by_source in (record.get("field_candidates") or {}).values():
        if isinstance(by_source, dict) and "hub" in by_source:
            by_source["hub_verified"] = by_source.pop("hub")
    resolve_fields(record)
