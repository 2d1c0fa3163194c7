"""The import pipeline: collect -> group -> identify -> (review) -> stage -> commit.

`plan_import` reads only headers and a fast hash of each file and decides what each model
is; `execute_plan` then stages every model in its own transaction and commits it.

Invariants (checked by the crash tests):
- The library only changes by one atomic rename of a complete staged model directory
  (files + metadata.json, all fsynced), done under the commit lock; the index row follows.
- A source file is never deleted or lost: copies leave it alone; a same-filesystem move
  renames it into staging only after a journal entry says where it came from, and a
  rollback (now, or by `recover` after a crash) renames it back; a cross-filesystem move
  deletes the source only after the commit.
- A file whose SHA256 is already in the library is a duplicate: nothing is copied, and the
  check is repeated under the commit lock so two processes cannot both add it.
- A failed model leaves nothing in the library and nothing in staging.
- Identification never holds the batch hostage: the models' lookups run concurrently
  (`identify.batch`), overlapping the copies when nobody reviews the plan, and a model not
  identified when the batch's lookup budget runs out is imported pending (retry-pending).
- A bundle (a folder that is one model) is one transaction: every file is journalled before
  it is moved, so a rollback or recovery puts the whole tree back; its model directory keeps
  each file at its relative path. A move removes the emptied source folders only after the
  commit (and recovery finishes that for a committed move).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.errors import (
    InvalidModelFile,
    ModelImportError,
    SourceChanged,
    UnreadableFile,
    beyond_windows_path_limit,
    raise_if_in_use,
)
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress
from modelimport.faults import fault_point
from modelimport.formats import GGUF_MAGIC, PICKLE_PROTOCOLS, ZIP_MAGIC, FileFacts, inspect_file
from modelimport.formats.torch_file import scan_folder_pickle
from modelimport.hashing import FileDigests, copy_and_hash, fast_hash, hash_file
from modelimport.identify.batch import LOOKUP_BUDGET_S
from modelimport.importer.sources import SourceStamp, open_as_reviewed, replaced, stamp_source
from modelimport.library import index, staging
from modelimport.library.contained import OutsideLibrary, model_file
from modelimport.library.ids import model_slug, unique_model_id
from modelimport.library.layout import METADATA_NAME, Library, fsync_dir, is_within
from modelimport.library.metadata import new_record, now_iso, resolve_fields, set_candidate
from modelimport.names import (
    clean_model_name,
    is_generic_name,
    keep_or_sanitize_component,
    model_name_for,
    sanitize_component,
)
from modelimport.probe import ModelProbe, probe_model
from modelimport.readers.bundles.describe import BundleDescription, describe_bundle
from modelimport.readers.collect import collect_paths
from modelimport.readers.shards import ModelFiles, group_bundle, group_files

# Result statuses, as the JSON contract names them.
IMPORTED, DUPLICATE, FAILED, REJECTED, SKIPPED = (
    "imported",
    "duplicate",
    "failed",
    "rejected",
    "skipped",
)


@dataclass(frozen=True)
class ImportOptions:
    move: bool = False
    allow_incomplete: bool = False
    allow_unsafe_pickle: bool = False
    offline: bool = True
    # After the import, fetch what a model lacks from its matched repo (modelimport.downloads):
    # the missing shards of a set (which then imports although incomplete) / related files.
    download_missing: bool = False
    with_related: bool = False
    lookup_budget: float | None = LOOKUP_BUDGET_S  # seconds the batch waits for lookups


@dataclass
class ItemResult:
    status: str
    sources: list[str]
    model_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model_id": self.model_id,
            "sources": self.sources,
            "files": self.files,
            "error": self.error,
            **self.details,
        }


@dataclass
class PlannedModel:
    """One model the plan will import; the review may edit name, model_type and family."""

    group: ModelFiles
    facts: list[FileFacts]
    probe: ModelProbe
    fast_hashes: dict[str, str]
    name: str
    model_type: str
    family: str
    lookup: Any = None  # modelimport.identify.hub.LookupResult when the Hub was asked
    match_confirmed: bool = False  # a person accepted a low-confidence match in the review
    match_declined: bool = False  # ... or turned it down (a hash match still proves it)
    user_edits: dict[str, str] = field(default_factory=dict)
    # Identity sources by content (CivitAI) still to ask once the copy has every SHA256.
    awaiting_sources: tuple[str, ...] = ()
    # (LookupBatch, index) while the lookup runs in the background; see `resolve_lookup`.
    lookup_ticket: Any = field(default=None, repr=False)
    # Each source as collected, before it was read: the copy takes only that very file.
    stamps: dict[Path, SourceStamp] = field(default_factory=dict, repr=False)

    def resolve_lookup(self) -> None:
        """Take this model's lookup result, waiting at most until the batch's budget ends."""
        if self.lookup_ticket is not None:
            batch, index = self.lookup_ticket
            self.lookup = batch.result(index)
            self.lookup_ticket = None
    description: BundleDescription | None = None  # what a bundle's config files say

    @functools.cached_property
    def lookup_request(self) -> Any:
        """What the identity sources are asked about this model (built once: the Hub's
        lookup and the content sources' `asks_about` both need it)."""
        return _lookup_request(self)

    @property
    def sources(self) -> list[str]:
        return [str(p) for p in self.group.all_paths]

    @property
    def key(self) -> str:
        """What identifies this model in progress events: its first source path."""
        return _key_of(self.group)

    @property
    def total_size(self) -> int:
        """Every byte the import copies: weights, a set's index json, sidecars, a bundle's
        configs and tokenizers (the copy's progress counts them all)."""
        return sum(_size(p) for p in self.group.all_paths)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass
class ImportPlan:
    models: list[PlannedModel] = field(default_factory=list)
    settled: list[ItemResult] = field(default_factory=list)  # decided without importing
    lookups: Any = None  # identify.batch.LookupBatch of the models' lookups, if any
    links: Any = None  # modelimport.apps.SyncReport of the batch, once executed


def plan_import(
    paths: list[Path],
    library: Library,
    db: sqlite3.Connection,
    options: ImportOptions,
    progress: ProgressSink = ignore_progress,
    hub_session: Any = None,
    *,
    wait_for_lookups: bool = True,
) -> ImportPlan:
    """Decide what each model is. The Hub lookups of all models start together, run
    concurrently, and are waited for here (`wait_for_lookups`, e.g. for the review), or
    only when each model's record is built, after its copy (`--yes`)."""
    plan = ImportPlan()
    outside = []
    for path in paths:
        held = _models_holding(library, path)
        if held is None:
            outside.append(path)
        for model_id in held or ():
            plan.settled.append(
                ItemResult(DUPLICATE, [str(path)], model_id=model_id,
                           details={"duplicate_of": model_id, "bundle": None})
            )
    collected = collect_paths(outside, exclude=library.root)
    for path, reason in collected.failures:
        status = FAILED if not os.path.exists(path) else REJECTED  # never raises (EACCES)
        plan.settled.append(ItemResult(status, [str(path)], error=reason))
    for path, reason in collected.unreadable:
        plan.settled.append(ItemResult(FAILED, [str(path)], error=reason))
    for path, reason in collected.skipped:
        plan.settled.append(ItemResult(SKIPPED, [str(path)], error=reason))
    groups = [_with_sidecars(g, collected.sidecars) for g in group_files(collected.files)]
    groups += [group_bundle(bundle) for bundle in collected.bundles]
    for group in groups:
        progress(ProgressEvent(Stage.IDENTIFYING, group.display_name, key=_key_of(group)))
        try:
            stamps = {path: stamp_source(path) for path in group.all_paths}
            planned = _plan_model(group)
            planned.stamps = stamps
            # Duplicates first: a file already in the library is "there", whatever the
            # policies below would say about importing it (re-importing the library itself
            # must not call its incomplete sets and allowed pickles "rejected").
            duplicate_of = _find_duplicate(library, db, planned)
            if not duplicate_of:
                _check_policies(planned, options)
        except ModelImportError as exc:
            # A file we could not read is a failure (nothing is known to be wrong with it).
            status = FAILED if isinstance(exc, UnreadableFile) else REJECTED
            plan.settled.append(
                ItemResult(
                    status,
                    [str(p) for p in group.all_paths],
                    error=str(exc),
                    details=bundle_details(group),
                )
            )
            continue
        except OSError as exc:
            error = _describe_error(exc, group.display_name)
            plan.settled.append(
                ItemResult(
                    FAILED,
                    [str(p) for p in group.all_paths],
                    error=error,
                    details=bundle_details(group),
                )
            )
            continue
        if duplicate_of:
            plan.settled.append(_duplicate_result(planned, duplicate_of))
            continue
        plan.models.append(planned)
    if plan.models:
        check_free_space(plan, library, options)  # before the review asks anything
    if hub_session is not None and not options.offline and plan.models:
        from modelimport.identify.batch import LookupBatch

        requests = [planned.lookup_request for planned in plan.models]
        plan.lookups = LookupBatch(hub_session, requests, budget_s=options.lookup_budget)
        for index, planned in enumerate(plan.models):
            planned.lookup_ticket = (plan.lookups, index)
            if wait_for_lookups:
                planned.resolve_lookup()
    return plan


# Room kept free beyond the model bytes, for what an import writes besides them
# (metadata.json, staging journals, the index's growth): a share of the filesystem, at most
# FREE_SPACE_MARGIN (8 MiB on a big disk), never less than the batch's own records need.
# A flat 8 MiB refused 15.6 MiB of models with 19.9 MiB free on a small disk.
FREE_SPACE_MARGIN = 8 * 1024 * 1024
MARGIN_SHARE_OF_DISK = 100  # 1 %
RECORD_BYTES_PER_MODEL = 32 * 1024
RECORD_BYTES_PER_BATCH = 64 * 1024


def free_space_margin(models: int, disk_total: int) -> int:
    """Bytes kept free beyond the models' own for a batch of `models` models."""
    records = RECORD_BYTES_PER_BATCH + RECORD_BYTES_PER_MODEL * models
    return max(records, min(FREE_SPACE_MARGIN, disk_total // MARGIN_SHARE_OF_DISK))


def check_free_space(plan: ImportPlan, library: Library, options: ImportOptions) -> None:
    """Refuse a batch whose bytes cannot fit in the library's filesystem, before any is
    written (a same-filesystem move writes nothing; a copy writes every byte, unless the
    filesystem clones)."""
    import shutil

    from modelimport.errors import NotEnoughSpace
    from modelimport.fastpaths import can_clone
    from modelimport.hashing import CLONE
    from modelimport.names import human_size

    staging_dev = library.staging_dir.stat().st_dev
    needed = same_fs_copies = 0
    for planned in plan.models:
        for path in planned.group.all_paths:
            st = path.stat()
            same_fs = st.st_dev == staging_dev
            if options.move and same_fs and not path.is_symlink():
                continue  # a rename
            needed += st.st_size
            same_fs_copies += st.st_size if same_fs else 0
    usage = shutil.disk_usage(library.staging_dir)
    free, margin = usage.free, free_space_margin(len(plan.models), usage.total)
    if needed + margin <= free:
        return
    if same_fs_copies and CLONE and can_clone(library.staging_dir):
        needed -= same_fs_copies  # clones share the sources' blocks
        if needed + margin <= free:
            return
    raise NotEnoughSpace(
        f"Not enough free space in {library.root}: this import needs {human_size(needed)} "
        f"(+{human_size(margin)} kept free for metadata.json, journals and the index) and "
        f"{human_size(free)} are free; nothing was imported."
    )


def _models_holding(library: Library, path: Path) -> list[str] | None:
    """For a path named inside the library: the models it is part of or holds (a model's
    file or folder: that model; a type or family folder, or the root: every model below).
    They are already imported, and reading them as new sources would copy a model into a
    second one (and `--move` would take it apart). None for a path outside the library, and
    for one inside it that holds no model (a file or folder dropped there by hand), which is
    imported like any other (`check --repair` adopts such files so)."""
    if not is_within(path, library.root):
        return None
    resolved, root = path.resolve(), library.root.resolve()
    for folder in (resolved, *resolved.parents):
        if folder == root:
            break
        if (folder / "metadata.json").is_file():
            return [folder.relative_to(root).as_posix()]
    if not resolved.is_dir():
        return None
    held = sorted(
        record.parent.relative_to(root).as_posix()
        for record in resolved.rglob(METADATA_NAME)
        if ".modelimport" not in record.relative_to(root).parts
    )
    return held or None


def _with_sidecars(group: ModelFiles, sidecars: dict[Path, list[Path]]) -> ModelFiles:
    """A model file takes the sidecars found beside it; a set, those of any of its files."""
    found = tuple(sidecar for path in group.files for sidecar in sidecars.get(path, ()))
    if not found:
        return group
    from dataclasses import replace

    return replace(group, companions=found)


def _key_of(group: ModelFiles) -> str:
    paths = group.all_paths
    return str(paths[0]) if paths else group.display_name


def _check_policies(planned: PlannedModel, options: ImportOptions) -> None:
    """Refuse what the person did not allow: an incomplete set, an unsafe pickle."""
    group = planned.group
    if group.bundle is not None:
        root = group.bundle.root
        if group.missing and not (options.allow_incomplete or options.download_missing):
            raise InvalidModelFile(
                f"{root} holds an incomplete sharded set ({group.describe_incomplete()});"
                " pass --allow-incomplete to import it anyway."
            )
        if planned.probe.unsafe_pickle and not options.allow_unsafe_pickle:
            raise InvalidModelFile(
                f"{root} holds a pickle that {_pickle_refusal(planned.probe)}; "
                "pass --allow-unsafe-pickle to import it anyway."
            )
        return
    if not group.complete and not (options.allow_incomplete or options.download_missing):
        raise InvalidModelFile(
            f"{group.display_name} is an incomplete sharded set ({group.describe_incomplete()});"
            " pass --allow-incomplete to import it anyway."
        )
    if planned.probe.unsafe_pickle and not options.allow_unsafe_pickle:
        raise InvalidModelFile(
            f"{group.display_name} is a pickle that {_pickle_refusal(planned.probe)}; "
            "pass --allow-unsafe-pickle to import it anyway."
        )


def _pickle_refusal(probe: ModelProbe) -> str:
    """Why a pickle is refused: what would run code, else what we cannot vouch for."""
    if probe.pickle_dangerous:
        return f"would run code when loaded ({', '.join(probe.pickle_dangerous)})"
    return (f"imports globals this tool does not know to be harmless "
            f"({', '.join(probe.pickle_unknown) or 'unvettable globals'})")


def _plan_model(group: ModelFiles) -> PlannedModel:
    if group.bundle is not None:
        return _plan_bundle(group)
    if not group.files:
        raise InvalidModelFile(
            f"{group.display_name} names a sharded set but none of its shards are here."
        )
    facts = [inspect_file(path) for path in group.files]
    probe = probe_model(facts, display_name=group.files[0].name)
    facts = _without_tensor_tables(facts)
    return PlannedModel(
        group=group,
        facts=facts,
        probe=probe,
        fast_hashes={group.original_name(f.path): fast_hash(f.path) for f in facts},
        name=model_name_for(group.files[0]) if is_generic_name(group.files[0].name) else probe.name,
        model_type=probe.model_type,
        family=probe.family,
    )


def _without_tensor_tables(facts: list[FileFacts]) -> list[FileFacts]:
    """The facts a plan keeps once the probe has read them: without the tensor tables, which
    nothing after the probe reads. A LoRA's table holds ~700 tensors (~200 KB in memory) and
    a batch plans thousands of models before the first is copied."""
    from dataclasses import replace

    return [replace(f, tensors={}) for f in facts]


def _plan_bundle(group: ModelFiles) -> PlannedModel:
    """A folder that is one model: every weight file is read (pickles scanned), the probe
    reads the model's own weights, and the bundle's config decides type and family."""
    bundle = group.bundle
    assert bundle is not None
    if bundle.problems:
        raise InvalidModelFile(
            f"{bundle.root} cannot be imported whole: {'; '.join(bundle.problems)}."
        )
    facts = [f for path in group.files if (f := _inspect_bundle_weights(path, bundle.root))]
    if not facts:
        raise InvalidModelFile(f"{bundle.root} holds no weights this tool can read.")
    # A GGUF folder is its model; the projector beside it would only blur what the probe reads.
    probe_facts = (
        [f for f in facts if f.path == group.files[0]] if bundle.kind == "gguf-folder" else facts
    )
    # Every other file that is a pickle counts in the verdict: its loader may torch.load it.
    weights = set(group.files)
    companions = [f for b in bundle.files if b.path not in weights
                  if (f := _bundle_pickle(b.path, bundle.root))]
    probe = probe_model(probe_facts + companions, display_name=probe_facts[0].path.name)
    facts = _without_tensor_tables(facts)
    description = describe_bundle(bundle)
    return PlannedModel(
        group=group,
        facts=facts,
        probe=probe,
        fast_hashes={group.original_name(f.path): fast_hash(f.path) for f in facts},
        name=_bundle_name(bundle.root, description, probe),
        model_type=description.model_type or probe.model_type,
        family=description.family or probe.family,
        description=description,
    )


def _inspect_bundle_weights(path: Path, root: Path) -> FileFacts | None:
    """Read a bundle's weight file; None for one this tool does not read (ONNX, OpenVINO's
    .bin, flax msgpack), which is carried as it is. A file that is a pickle, a ZIP
    checkpoint, safetensors or GGUF must read correctly: a damaged or unscannable one
    rejects the bundle (its pickle could run code, its loader would fail)."""
    if not path.name.lower().endswith((".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt")):
        return _bundle_pickle(path, root)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InvalidModelFile(
            f"{path.relative_to(root)} in {root} could not be read ({exc.strerror or exc})."
        ) from exc
    recognised = (
        head[:4] in (GGUF_MAGIC, ZIP_MAGIC)
        or (len(head) >= 2 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS)
        or path.name.lower().endswith((".safetensors", ".gguf"))
    )
    if not recognised:
        return _bundle_pickle(path, root)  # a protocol 0 or 1 pickle runs on torch.load too
    try:
        return inspect_file(path, require_tensors=False)
    except InvalidModelFile as exc:
        raise InvalidModelFile(f"{root.name}/{path.relative_to(root).as_posix()}: {exc}") from exc


def _bundle_pickle(path: Path, root: Path) -> FileFacts | None:
    """The scan of a bundle's file that no reader claims, if it is a pickle of any protocol."""
    try:
        return scan_folder_pickle(path)
    except InvalidModelFile as exc:
        raise InvalidModelFile(f"{root.name}/{path.relative_to(root).as_posix()}: {exc}") from exc
    except OSError as exc:
        raise InvalidModelFile(
            f"{path.relative_to(root)} in {root} could not be read ({exc.strerror or exc})."
        ) from exc


def _bundle_name(root: Path, description: BundleDescription, probe: ModelProbe) -> str:
    """The folder's name, as people and `hf download` name it after the repo; a generic
    folder name (`model`, `vae`, a snapshot hash) gives way to the config's `_name_or_path`."""
    generic = is_generic_name(root.name) or re.fullmatch(r"[0-9a-f]{40}", root.name) is not None
    cache = re.fullmatch(r"models--[^/]*--(.+)", root.parent.parent.name)
    if generic and root.parent.name == "snapshots" and cache:
        # The Hugging Face cache keeps a repo as models--<org>--<name>/snapshots/<commit>/.
        return clean_model_name(cache[1])
    if generic and description.name_or_path:
        return clean_model_name(description.name_or_path.rstrip("/").rsplit("/", 1)[-1])
    return clean_model_name(root.name) or probe.name


def _lookup_request(planned: PlannedModel) -> Any:
    from modelimport.identify.hub import LocalFile
    from modelimport.identify.hub.candidates import request_for
    from modelimport.probe.provenance import as_repo_id
    from modelimport.readers.bundles.detect import search_folder_name

    group = planned.group
    names = [group.original_name(f.path) for f in planned.facts]
    files = tuple(
        LocalFile(name, f.size, planned.fast_hashes.get(name))
        for name, f in zip(names, planned.facts, strict=True)
    )
    probe = planned.probe
    folder_name = (
        search_folder_name(group.bundle.root) if group.bundle is not None
        else group.files[0].parent.name
    )
    embedded, metadata = probe.embedded_repos, probe.file_says.get("embedded_metadata")
    said = planned.description.name_or_path if planned.description is not None else ""
    if said:
        # A bundle's config.json names the repo it was saved from (`_name_or_path`): a
        # candidate and a query like any name inside a file; the weights' hashes still decide.
        embedded = (*embedded, *(r for r in [as_repo_id(said)] if r and r not in embedded))
        metadata = {**(metadata or {}), "_name_or_path": said}
    return request_for(
        files,
        folder_name,
        embedded_repos=embedded,
        metadata=metadata,
        model_type=planned.model_type,
        family=planned.family,
    )


def _find_duplicate(library: Library, db: sqlite3.Connection, planned: PlannedModel) -> str | None:
    """The model id already holding every file of `planned`, or None.

    The fast hash (first and last 8 MiB + size) finds candidates without reading whole files.
    A candidate is confirmed without reading when it was imported from these very paths and
    they have not changed since (same size and mtime, as rsync decides); otherwise by the full
    SHA256 of each file, read once, with nothing written.
    """
    owners: set[str] | None = None
    for facts in planned.facts:
        fast = planned.fast_hashes[planned.group.original_name(facts.path)]
        rows = index.find_by_fast_hash(db, facts.size, fast)
        found = {
            r["model_id"]
            for r in rows
            if _in_library(library, r["model_id"], r["name"], facts.size)
        }
        owners = found if owners is None else owners & found
        if not owners:
            return None
    candidates = sorted(owners or ())
    for owner in candidates:
        if _imported_from_unchanged(library, owner, planned):
            return owner
    digests = [hash_file(path).sha256 for path in _identity_paths(planned)]
    for owner in candidates:
        # From the owner's metadata.json, the truth: an index row may have been changed.
        wanted = {sha for sha, _ in _recorded_files(library, owner)}
        if all(d in wanted for d in digests):
            return owner
    return None


# Roles whose bytes make a model what it is: a model already holding all of them is the same
# model (a sidecar or README that differs does not make a second copy of the weights).
IDENTITY_ROLES = {"weights", "index", "config", "tokenizer"}


def _identity_paths(planned: PlannedModel) -> list[Path]:
    """The files compared to call a model a duplicate: a single file or set by its weights (as
    always), a bundle by everything a loader reads, so a bare copy of its weights already in
    the library does not swallow a folder that brings its config and tokenizer."""
    group = planned.group
    if group.bundle is None:
        return [f.path for f in planned.facts]
    return [f.path for f in group.bundle.files if f.role in IDENTITY_ROLES]


def _identity_entries(planned: PlannedModel, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if planned.group.bundle is None:
        return [f for f in files if f["role"] == "weights"]
    return [f for f in files if f["role"] in IDENTITY_ROLES]


def _in_library(library: Library, model_id: str, name: str, size: int) -> bool:
    """The index says `model_id` holds the file; is it really there, whole? A file deleted or
    truncated by hand must not make a new copy a "duplicate" that the user then deletes."""
    try:
        return model_file(library.root, model_id, name).stat().st_size == size
    except (OSError, OutsideLibrary):
        return False


def _holders(library: Library, db: sqlite3.Connection, entry: dict[str, Any]) -> set[str]:
    """The models whose library file has `entry`'s SHA256 and is present."""
    rows = db.execute(
        "SELECT model_id, name FROM files WHERE sha256 = ? AND size = ?",
        (entry["sha256"], entry["size"]),
    ).fetchall()  # read whole: an unfinished statement would hold a read snapshot open
    return {
        model_id
        for model_id, name in rows
        if _in_library(library, model_id, name, entry["size"])
        # The index finds candidates; the owner's metadata.json (the truth) confirms them, so
        # an index row changed by hand or by another program never turns a new file away.
        and (entry["sha256"], entry["size"]) in _recorded_files(library, model_id)
    }


def _recorded_files(library: Library, model_id: str) -> set[tuple[Any, Any]]:
    """(sha256, size) of every file the model's metadata.json lists."""
    try:
        record = library.read_metadata(model_id)
    except ModelImportError:
        return set()
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list):
        return set()
    entries = [f for f in files if isinstance(f, dict)]
    return {
        (f["sha256"], f["size"])
        for f in entries
        if isinstance(f.get("sha256"), str) and isinstance(f.get("size"), int)
    }


def _imported_from_unchanged(library: Library, owner: str, planned: PlannedModel) -> bool:
    try:
        sources = library.read_metadata(owner).get("sources") or []
    except ModelImportError:
        return False
    known = {(s.get("path"), s.get("size"), s.get("mtime_ns")) for s in sources}
    for path in _identity_paths(planned):
        st = path.stat()
        if (str(path), st.st_size, st.st_mtime_ns) not in known:
            return False
    return True


def _duplicate_result(planned: PlannedModel, owner: str) -> ItemResult:
    return ItemResult(
        DUPLICATE,
        planned.sources,
        model_id=owner,
        error=None,
        details={"duplicate_of": owner, **bundle_details(planned.group)},
    )


def bundle_details(group: ModelFiles) -> dict[str, Any]:
    """What a result says about the folder it came from, when that folder is one model; every
    result of a planned model has the key (None for a single file or a set)."""
    bundle = group.bundle
    if bundle is None:
        return {"bundle": None}
    return {
        "bundle": {
            "kind": bundle.kind,
            "root": bundle.root.name,
            "reason": bundle.reason,
            "folder": str(bundle.root),
        },
        "left_out": [{"path": path, "reason": why} for path, why in bundle.left_out],
    }


def execute_plan(
    plan: ImportPlan,
    library: Library,
    db: sqlite3.Connection,
    options: ImportOptions,
    progress: ProgressSink = ignore_progress,
    hub_session: Any = None,
    content_sources: Sequence[Any] = (),
) -> list[ItemResult]:
    """Import every planned model; then ask the sources by content (CivitAI), which need the
    SHA256 the copy computed, once for the whole batch (see `identify.enrich`)."""
    results = list(plan.settled)
    if plan.models:
        check_free_space(plan, library, options)
        fault_point("batch.start")
    progress(
        ProgressEvent(
            Stage.BATCH,
            "import",
            bytes_total=sum(m.total_size for m in plan.models),
            items_total=len(plan.models),
        )
    )
    awaiting = tuple(s.name for s in content_sources) if not options.offline else ()
    try:
        # Each planned model is let go once imported (headers, probe, lookup): memory holds
        # the results, not the whole plan, however large the batch. The plan is empty after.
        plan.models.reverse()
        while plan.models:
            planned = plan.models.pop()
            if awaiting:
                planned.awaiting_sources = tuple(
                    s.name for s in content_sources if s.asks_about(planned.lookup_request)
                )
            result = import_model(planned, library, db, options, progress)
            if hub_session is not None and result.status == IMPORTED:
                _remember_hashes(hub_session, library, result)
            results.append(result)
    finally:
        if plan.lookups is not None:
            plan.lookups.close()  # lookups not needed any more (failed or rolled-back models)
    if awaiting:
        _identify_by_content(results, library, db, content_sources, progress)
    if options.download_missing or options.with_related:
        _complete_models(results, library, db, options, progress, hub_session)
    plan.links = _link_batch(results, library, db, progress)
    return results


def _identify_by_content(
    results: list[ItemResult],
    library: Library,
    db: sqlite3.Connection,
    sources: Sequence[Any],
    progress: ProgressSink,
) -> None:
    """Ask the content sources about the imported models that await them, in one batch, and
    show the outcome in each item's result. A model committed before this step stays pending
    (`pending_sources`) if the process dies or the source is down: `retry-pending` asks."""
    from modelimport.identify.enrich import enrich_models

    imported = {r.model_id: r for r in results if r.status == IMPORTED and r.model_id}
    waiting = [m for m, r in imported.items() if r.details.get("pending_online_lookup")]
    if not waiting:
        return
    try:
        answers = enrich_models(library, db, waiting, sources, progress, relink=False)
    except (OSError, ModelImportError, sqlite3.Error):
        return  # the models are in the library, still pending: retry-pending asks again
    for asked_id, answer in answers.items():
        item = imported[asked_id]
        # An answer that decided the type or family moved the model (`identify.enrich`).
        item.model_id = answer["model_id"]
        record = library.read_metadata(answer["model_id"])
        item.details.update(
            {
                key: record.get(key)
                for key in (
                    "model_type",
                    "family",
                    "trust_level",
                    "match_method",
                    "match_confidence",
                    "repo_id",
                    "identity_source",
                    "pending_online_lookup",
                )
            }
        )


def _complete_models(
    results: list[ItemResult],
    library: Library,
    db: sqlite3.Connection,
    options: ImportOptions,
    progress: ProgressSink,
    hub_session: Any,
) -> None:
    """`--download-missing` / `--with-related`: complete each imported (or already present)
    model from its matched repo; the outcome goes into the item's `downloads`."""
    from modelimport.downloads import DownloadOptions, complete_model

    download = DownloadOptions(
        missing_shards=options.download_missing,
        related=options.with_related,
        timeout=getattr(hub_session, "timeout", 10.0),
    )
    done: set[str] = set()
    for result in results:
        if result.status not in (IMPORTED, DUPLICATE) or not result.model_id:
            continue
        if result.model_id in done:
            continue
        done.add(result.model_id)
        try:
            record = library.read_metadata(result.model_id)
        except ModelImportError:
            continue
        wanted = (options.download_missing and record.get("incomplete_set")) or (
            options.with_related and record.get("repo_id")
        )
        if not wanted:
            continue
        outcome = complete_model(library, db, result.model_id, download, hub_session, progress)
        result.details["downloads"] = outcome.to_json()


def _link_batch(
    results: list[ItemResult], library: Library, db: sqlite3.Connection, progress: ProgressSink
) -> Any:
    """Link the models this batch imported into the configured apps, once for the batch.
    A link that cannot be made is reported; it never fails an import that succeeded."""
    from modelimport.apps import SyncReport, link_new_models

    new = [r for r in results if r.status == IMPORTED and r.model_id and not r.error]
    try:
        report = link_new_models(library, db, [r.model_id for r in new], progress)  # type: ignore[misc]
    except (OSError, sqlite3.Error, ModelImportError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return SyncReport(problems=[f"Linking the new models into apps failed: {reason}."])
    for r in new:
        r.details["links"] = [c.to_json() for c in report.for_model(r.model_id)]  # type: ignore[arg-type]
    return report


def _remember_hashes(hub_session: Any, library: Library, result: ItemResult) -> None:
    """Teach the lookup cache the SHA256s the copy computed, so `lookup` knows these files
    unread: the library copy as it is now, and each source while it is still as it was read
    (the size and mtime in `sources`). A file changed since is not recognised by it."""
    from modelimport.identify.hub.records import FileStamp, LocalFile

    def stamp_of(path: Path) -> FileStamp | None:
        try:
            return FileStamp.of(path)
        except OSError:
            return None  # moved into the library, or gone

    try:
        record = library.read_metadata(result.model_id)
    except ModelImportError:
        return
    as_read = {Path(s["path"]).name: s for s in record.get("sources") or []}
    known = []
    for f in record.get("files") or []:
        if not f.get("fast_hash"):
            continue  # an index file: never looked up
        stamps = [stamp_of(library.root / result.model_id / f["name"])]
        source = as_read.get(f["original_name"])
        if source is not None:
            now = stamp_of(Path(source["path"]))
            if now and (now.size, now.mtime_ns) == (source["size"], source["mtime_ns"]):
                stamps.append(now)
        known += [
            LocalFile(f["original_name"], f["size"], f["fast_hash"], f["sha256"], stamp)
            for stamp in stamps
            if stamp is not None
        ]
    hub_session.remember_hashes(known)


def import_model(
    planned: PlannedModel,
    library: Library,
    db: sqlite3.Connection,
    options: ImportOptions,
    progress: ProgressSink = ignore_progress,
) -> ItemResult:
    item, key = planned.group.display_name, planned.key
    bundle = bundle_details(planned.group)
    try:
        txn = staging.begin(library, "move" if options.move else "copy")
    except (OSError, ModelImportError) as exc:  # a full disk, a planted staging folder
        error = _describe_error(exc, item)
        progress(ProgressEvent(Stage.ERROR, item, message=error, key=key))
        return ItemResult(FAILED, planned.sources, error=error, details=bundle)
    if planned.group.bundle is not None:
        txn.source_root = str(planned.group.bundle.root)
    try:
        files, sources = _stage_files(planned, txn, options, progress)
        record = _build_record(planned, files, sources, txn.txn_id)
        progress(ProgressEvent(Stage.WRITING_METADATA, item, key=key))
        result = _commit(planned, record, txn, library, db, progress)
    except BaseException as exc:
        if txn.committed_on_disk:
            # The model is whole in the library; only its index row is missing. Undoing the
            # rename now could race a reader, so the journal stays for the next command.
            txn.release()
            if isinstance(exc, OSError | sqlite3.Error):
                pending = _index_pending_result(planned, txn.dest, exc)
                progress(ProgressEvent(Stage.ERROR, item, message=pending.error or "", key=key))
                return pending
            raise
        staging.rollback(txn)
        if isinstance(exc, OSError | ModelImportError):
            error = _describe_error(exc, item)
            progress(ProgressEvent(Stage.ERROR, item, message=error, key=key))
            return ItemResult(FAILED, planned.sources, error=error, details=bundle)
        raise
    if result.status == IMPORTED and options.move:
        # The journal stays until the move is finished, so recovery can finish it too.
        fault_point("move.before_delete")
        _delete_copied_sources(txn.entries)
        if txn.source_root:
            fault_point("move.before_prune")
            staging.prune_emptied_folders(txn.entries, Path(txn.source_root))
    txn.close()
    fault_point("txn.closed")
    final = Stage.COMPLETE if result.status == IMPORTED else Stage.DUPLICATE
    progress(ProgressEvent(final, item, message=result.model_id or "", key=key))
    return result


def _index_pending_result(
    planned: PlannedModel, model_id: str | None, exc: BaseException
) -> ItemResult:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ItemResult(
        IMPORTED,
        planned.sources,
        model_id=model_id,
        error=(
            f"{planned.group.display_name} is in the library as {model_id}, but the index "
            f"could not be updated ({reason}); the next modelimport command indexes it."
        ),
    )


def _stage_files(
    planned: PlannedModel,
    txn: staging.StagingTxn,
    options: ImportOptions,
    progress: ProgressSink,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stage every file; return metadata.json's `files` and `sources` entries."""
    item = planned.group.display_name
    total = sum(p.stat().st_size for p in planned.group.all_paths)
    done_before = 0
    files: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    staging_dev = txn.model_path.stat().st_dev
    # metadata.json is the record's own name: a bundle file called that is numbered instead.
    used_names: set[str] = {METADATA_NAME}
    moved = 0
    for number, source in enumerate(planned.group.all_paths):
        original = planned.group.original_name(source)
        name = _library_name(original, number, used_names, planned.group.bundle is not None)
        used_names.add(name)
        staged = txn.model_path / name
        if "/" in name:
            staged.parent.mkdir(parents=True, exist_ok=True)

        # Opened as reviewed (the same file, no link swapped in) and read from that descriptor.
        reviewed = planned.stamps.get(source) or stamp_source(source)
        fd = open_as_reviewed(source, reviewed)
        try:
            source_stat = os.fstat(fd)
            # A symlink is never renamed (that would move the link, not the file) nor deleted:
            # the bytes behind it are copied and both the link and its target stay as they are.
            rename = options.move and source_stat.st_dev == staging_dev and not reviewed.is_link
            stage = Stage.HASHING if rename else Stage.COPYING

            def on_bytes(done: int, base: int = done_before, stage: Stage = stage) -> None:
                progress(ProgressEvent(stage, item, base + done, total, key=planned.key))

            if rename:
                digests = hash_file(fd, on_bytes)
                # Windows renames no file we hold open: the descriptor goes, and the inode
                # check after the rename stands in for it.
                os.close(fd)
                fd = -1
                txn.record(source, name, moved=True)
                fault_point("move.before_rename", number + 1)
                try:
                    os.rename(source, staged)
                except OSError as exc:
                    raise_if_in_use(exc, source)  # Windows: an app has it open; rolled back
                    raise
                moved += 1
                fault_point("move.after_rename", moved)
                after = os.lstat(staged)
                if (after.st_dev, after.st_ino) != (source_stat.st_dev, source_stat.st_ino):
                    raise replaced(source)  # another file took its place before the rename
                _check_unchanged(source, source_stat, after, digests)
            else:
                txn.record(source, name, moved=False)
                fault_point("copy.before_copy", number + 1)
                digests = copy_and_hash(fd, staged, on_bytes)
                _check_unchanged(source, source_stat, os.fstat(fd), digests)
        finally:
            if fd >= 0:
                os.close(fd)
        done_before += digests.size
        files.append(_file_entry(planned, source, name, digests))
        sources.append(
            {"path": str(source), "size": digests.size, "mtime_ns": source_stat.st_mtime_ns}
        )
        fault_point("stage.file_done", number + 1)
    for folder in sorted({(txn.model_path / f["name"]).parent for f in files}, reverse=True):
        fsync_dir(folder)
    fault_point("stage.all_done")
    return files, sources


def _library_name(original: str, number: int, used: set[str], in_bundle: bool) -> str:
    """The file's path inside the model directory, numbered if two collide. Names are kept
    exactly where safe, as people and apps know them (A1111's `<lora:name>`, a workflow's
    file name, a set's index json naming its shards, a bundle's loader finding its files);
    an unsafe component (a separator, `..`, a control character, a character Windows
    refuses) is sanitised, so an untrusted name never leaves the directory. Outside a
    bundle, a name starting with a dot is sanitised too (it would be hidden from apps)."""
    safe = [
        sanitize_component(part, fallback=f"file-{number}")
        if not in_bundle and part.startswith(".")
        else keep_or_sanitize_component(part, fallback=f"file-{number}")
        for part in original.split("/")
    ]
    name = "/".join(safe)
    if name in used or any(name.startswith(u + "/") for u in used):
        safe[-1] = f"{number}-{safe[-1]}"
        name = "/".join(safe)
    return name


def _check_unchanged(
    source: Path, before: os.stat_result, after: os.stat_result, digests: FileDigests
) -> None:
    """The hashes describe the bytes read; refuse them if the file changed meanwhile.

    A download still being written, or a file saved over during the import, would otherwise
    be recorded with hashes of a state that no longer exists (for a move: not the bytes now
    in the library). Size and mtime are what rsync trusts; the staged copy is rolled back.
    """
    if digests.size == before.st_size == after.st_size and (
        before.st_mtime_ns == after.st_mtime_ns
    ):
        return
    raise SourceChanged(
        f"{source.name} changed while it was being imported (is it still being downloaded "
        "or written?); nothing was imported from it."
    )


def _file_entry(
    planned: PlannedModel, source: Path, name: str, digests: FileDigests
) -> dict[str, Any]:
    group = planned.group
    facts = next((f for f in planned.facts if f.path == source), None)
    role = group.role_of(source)
    shard_index, shard_total = group.shard_position(source)
    original = group.original_name(source)
    return {
        "name": name,
        "role": role,
        "size": digests.size,
        "sha256": digests.sha256,
        "blake3": digests.blake3,
        "fast_hash": planned.fast_hashes.get(original),
        "format": facts.format if facts else _other_format(role, source),
        "shard_index": shard_index,
        "shard_total": shard_total,
        "original_name": original,
    }


def _other_format(role: str, source: Path) -> str:
    """The `format` of a file no reader inspected: an index, or its extension."""
    if role == "index":
        return "index-json"
    suffix = source.suffix.lower().lstrip(".")
    return suffix if suffix.isalnum() else "other"


def _build_record(
    planned: PlannedModel,
    files: list[dict[str, Any]],
    sources: list[dict[str, Any]],
    txn_id: str,
) -> dict[str, Any]:
    planned.resolve_lookup()  # after the copy: the lookup ran meanwhile
    probe = planned.probe
    record = new_record(
        official_name=None,
        is_sharded_set=planned.group.is_sharded,
        incomplete_set=not planned.group.complete,
        missing_shards=list(planned.group.missing),
        files=files,
        file_says=probe.file_says,
        embedded_repos=list(probe.embedded_repos),
        unsafe_pickle=probe.unsafe_pickle,
        # Classes a loader must import: torch.load(weights_only=True) refuses this file.
        pickle_needs_classes=list(probe.pickle_needs),
        subtype=probe.subtype,
        sources=sources,
        import_txn=txn_id,
        pending_online_lookup=planned.lookup is None,
        bundle=_bundle_key(planned),
        companions=[f["name"] for f in files if f["role"] == "companion"],
    )
    description = planned.description
    if description is not None:
        if planned.group.bundle is not None and planned.group.bundle.left_out:
            record["left_out"] = [
                {"path": path, "reason": why} for path, why in planned.group.bundle.left_out
            ]
        if description.says:
            record["file_says"] = {**record["file_says"], "config": description.says}
    for fld, value in (
        ("model_type", probe.model_type),
        ("family", probe.family),
        ("precision", probe.precision),
        ("variant", probe.variant),
        ("cleaned_name", planned.name),
    ):
        source = probe.field_sources.get(fld, "file")
        # A value the name decided, or a guess the shapes cannot back, is not the file's word.
        set_candidate(record, fld, source if source in ("filename", "default") else "file", value)
    if description is not None:
        set_candidate(record, "model_type", "config", description.model_type)
        set_candidate(record, "family", "config", description.family)
    resolve_fields(record)
    if probe.subtype:
        record["field_sources"]["subtype"] = probe.field_sources.get("subtype", "file")
    sha_by_name = {f["original_name"]: f["sha256"] for f in files}
    if planned.lookup is None and not planned.match_declined:
        # Offline (no lookup was made): the publisher index may still know these exact
        # bytes, with no network (None without an index).
        from modelimport.identify.publishers import verified_by_hash
        from modelimport.library.metadata import apply_lookup

        exact = verified_by_hash(planned.lookup_request, sha_by_name)
        if exact is not None:
            apply_lookup(record, exact)
    if planned.lookup is not None:
        from modelimport.identify.hub import settle_verification
        from modelimport.identify.publishers import verified_by_hash
        from modelimport.library.metadata import apply_lookup

        # A set missing shards was not compared whole: never verified as a whole.
        settled = settle_verification(
            planned.lookup, sha_by_name, whole_set=planned.group.complete
        )
        if str(settled.trust) != "verified":
            # Renamed, or listed nowhere the lookup looked: the publisher index may hold
            # these exact bytes (no network; None without an index).
            settled = verified_by_hash(planned.lookup_request, sha_by_name) or settled
        if planned.match_declined and str(settled.trust) != "verified":
            # The person said the guessed repo is not it, and the bytes did not prove otherwise.
            from modelimport.identify.hub.records import no_match

            settled = no_match()
        # Set first: apply_lookup marks a fuzzy match as needing confirmation unless a
        # person said yes in the review.
        record["match_confirmed"] = planned.match_confirmed
        apply_lookup(record, settled)
        if planned.awaiting_sources and record["trust_level"] != "verified":
            # Asked after the commit, with the SHA256s the copy computed (`execute_plan`).
            record["pending_sources"] = list(planned.awaiting_sources)
            record["pending_online_lookup"] = True
    if not record.get("base_model"):
        # What the file says it was made from (GGUF general.base_model.*), matched or not.
        from modelimport.identify.hub.candidates import metadata_hints

        _, base_models = metadata_hints(probe.file_says.get("embedded_metadata"))
        record["base_model"] = base_models[0] if base_models else None
    from modelimport.library.edits import apply_user_edits

    apply_user_edits(record, planned.user_edits)
    return record


def _bundle_key(planned: PlannedModel) -> dict[str, str] | None:
    bundle = planned.group.bundle
    if bundle is None:
        return None
    return {"kind": bundle.kind, "root": bundle.root.name, "reason": bundle.reason}


def slug_for(planned: PlannedModel, record: dict[str, Any]) -> str:
    return model_slug(
        record.get("cleaned_name") or planned.name,
        record.get("precision"),
        planned.facts[0].format,
    )




def _commit(
    planned: PlannedModel,
    record: dict[str, Any],
    txn: staging.StagingTxn,
    library: Library,
    db: sqlite3.Connection,
    progress: ProgressSink,
) -> ItemResult:
    item = planned.group.display_name
    slug = slug_for(planned, record)
    with library.lock("commit"):
        fault_point("commit.locked")
        owners: set[str] | None = None
        for entry in _identity_entries(planned, record["files"]):
            held = _holders(library, db, entry)
            owners = held if owners is None else owners & held
            if not owners:
                break
        if owners:
            staging.rollback(txn)
            return _duplicate_result(planned, min(owners))
        model_id = unique_model_id(library, db, record["model_type"], record["family"], slug)
        record["model_id"] = model_id
        from modelimport.library.layout import write_json_atomic

        write_json_atomic(txn.model_path / "metadata.json", record)
        fault_point("commit.metadata_written")
        dest = library.root / model_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        txn.dest = model_id
        txn.state = "committing"
        txn.save()
        fault_point("commit.before_rename")
        os.rename(txn.model_path, dest)
        fsync_dir(dest.parent)
        fault_point("commit.after_rename")
        progress(ProgressEvent(Stage.INDEXING, item, key=planned.key))
        fault_point("commit.index")
        index.upsert_model(db, model_id, record)
        fault_point("commit.indexed")
    return ItemResult(
        IMPORTED,
        planned.sources,
        model_id=model_id,
        files=[
            {k: f[k] for k in ("name", "role", "size", "sha256", "blake3")} for f in record["files"]
        ],
        details={
            **bundle_details(planned.group),
            "model_type": record["model_type"],
            "family": record["family"],
            "precision": record["precision"],
            "trust_level": record["trust_level"],
            "match_method": record["match_method"],
            "match_confidence": record["match_confidence"],
            "repo_id": record["repo_id"],
            "pending_online_lookup": record["pending_online_lookup"],
            "identity_source": record.get("identity_source"),
            # A pickle that needs harmless classes is imported, flagged: say so in the run too.
            "pickle_needs_classes": record.get("pickle_needs_classes") or [],
            "unsafe_pickle": bool(record.get("unsafe_pickle")),  # --allow-unsafe-pickle
        },
    )


def _delete_copied_sources(entries: list[dict[str, Any]]) -> None:
    """After a commit, a cross-filesystem move removes the sources it copied (never a
    symlink: the file behind it belongs to someone else)."""
    for entry in entries:
        source = Path(entry["source"])
        if not entry["moved"] and not source.is_symlink():
            with contextlib.suppress(OSError):  # a source that cannot go simply stays
                source.unlink(missing_ok=True)
            fault_point("move.source_deleted")


def _describe_error(exc: BaseException, item: str) -> str:
    if isinstance(exc, ModelImportError):
        return str(exc)
    assert isinstance(exc, OSError)
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"The disk is full while importing {item}{where}."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"Permission denied while importing {item}{where}."
    if exc.errno == errno.ENOENT and beyond_windows_path_limit(exc.filename):
        return (
            f"The path of {item} in the library is longer than the 260 characters Windows "
            f"allows{where}; turn on long paths (LongPathsEnabled, the Python installer's "
            "\"Disable path length limit\") or use a library folder with a shorter path."
        )
    if exc.errno == errno.ENOENT:
        return f"A file of {item} disappeared during the import{where}."
    return f"Importing {item} failed: {exc.strerror or exc}{where}."


def recover_library(library: Library, db: sqlite3.Connection) -> staging.RecoveryReport:
    """Run before any command: finish or roll back imports whose process died."""

    def reindex(model_id: str) -> None:
        index.upsert_model(db, model_id, library.read_metadata(model_id))

    return staging.recover(library, reindex, lambda model_id: index.delete_model(db, model_id))


def mark_updated(record: dict[str, Any]) -> None:
    record["updated_at"] = now_iso()
