"""What a library model lacks that its matched Hub repo has: missing shards, related files.

Everything here reads two untrusted sources, the Hub's listing and the model's own record
(whose missing shard names came from file names and an index json), and turns them into
`DownloadItem`s: a repo path to fetch and the relative name the file will have in the model
folder.

Invariants:
- A repo path is one the listing accepted (`answers.repo_path`: relative, no `.`/`..`, no
  control characters) with no component too long to be created with huggingface_hub's
  `.incomplete`/`.metadata` suffixes; anything else is refused, never repaired into a path.
- A destination name is made of at most MAX_DEPTH components, each from `sanitize_component`,
  and never names a file the model already lists: it can only ever be inside the model folder.
- A missing shard is only taken from a repo whose files of the same set match the model's by
  SHA256 (where the Hub lists one): a set is never completed with another model's shards.
- Knowledge of which repo files are "related" is the RELATED_FILES table.
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field
from typing import Any

from modelimport.errors import ModelImportError
from modelimport.identify.hub.answers import repo_path as safe_repo_path
from modelimport.identify.hub.records import RepoListing
from modelimport.names import sanitize_component
from modelimport.readers.shard_names import INDEX_SUFFIX, parse_shard_name

MAX_DEPTH = 3  # `1_Pooling/config.json` is two; deeper trees are not "related files"
# huggingface_hub writes `<name>.<etag>.incomplete` and `<name>.metadata` next to a download;
# a component longer than this could not be created on a 255-byte NAME_MAX file system.
MAX_DOWNLOAD_COMPONENT_BYTES = 160
# A related file is a config, a tokenizer or a card; anything larger than this is not one.
MAX_RELATED_BYTES = 256 << 20

# Repo path (relative to the folder holding the model's weights) -> role, first match wins.
# Roles are metadata.json's `role` values (weights, config, tokenizer, companion, index).
RELATED_FILES: tuple[tuple[str, str], ...] = (
    ("config.json", "config"),
    ("generation_config.json", "config"),
    ("preprocessor_config.json", "config"),
    ("processor_config.json", "config"),
    ("params.json", "config"),
    ("modules.json", "config"),
    ("sentence_bert_config.json", "config"),
    ("config_sentence_transformers.json", "config"),
    ("1_Pooling/config.json", "config"),
    ("tokenizer.json", "tokenizer"),
    ("tokenizer_config.json", "tokenizer"),
    ("tokenizer.model", "tokenizer"),
    ("special_tokens_map.json", "tokenizer"),
    ("added_tokens.json", "tokenizer"),
    ("vocab.json", "tokenizer"),
    ("vocab.txt", "tokenizer"),
    ("merges.txt", "tokenizer"),
    ("chat_template.jinja", "tokenizer"),
    ("chat_template.json", "tokenizer"),
    ("README.md", "companion"),
    ("LICENSE", "companion"),
    ("LICENSE.md", "companion"),
    ("LICENSE.txt", "companion"),
    ("*.index.json", "index"),
)


class NothingToDownload(ModelImportError):
    """The model or its repo gives no reason to download (no repo, no trust, no gap)."""


@dataclass(frozen=True)
class DownloadItem:
    repo_path: str  # path in the repo, as the listing names it
    dest: str  # relative posix name inside the model folder, each component sanitised
    role: str  # weights | config | tokenizer | companion | index
    size: int | None  # what the listing says
    sha256: str | None  # the LFS sha256 the listing gives; None for small git files
    shard_index: int | None = None
    shard_total: int | None = None


@dataclass(frozen=True)
class DownloadPlan:
    model_id: str
    repo_id: str
    revision: str | None
    items: tuple[DownloadItem, ...]
    skipped: tuple[str, ...] = ()  # related files not taken, with the reason
    folder: str = ""  # the repo folder holding the model's weights
    # file name -> LFS sha256 of the files in `folder`, to settle the trust level after
    expected_sha256: dict[str, str] = field(default_factory=dict)


def safe_dest(relative: str) -> str | None:
    """A repo-relative path as a name inside the model folder, or None if it cannot be one."""
    parts = relative.split("/")
    if not 1 <= len(parts) <= MAX_DEPTH or any(p in ("", ".", "..") for p in parts):
        return None
    clean = [sanitize_component(p, fallback="") for p in parts]
    return "/".join(clean) if all(clean) else None


def downloadable(repo_path: str) -> bool:
    """Can huggingface_hub put this repo path under a local folder without escaping it?"""
    if safe_repo_path(repo_path) != repo_path:
        return False
    return all(len(p.encode("utf-8")) <= MAX_DOWNLOAD_COMPONENT_BYTES for p in repo_path.split("/"))


def weight_files(record: dict[str, Any]) -> list[dict[str, Any]]:
    files = [f for f in record.get("files") or [] if isinstance(f, dict)]
    return [
        f
        for f in files
        if f.get("role", "weights") == "weights"
        and f.get("format") != "index-json"
        and isinstance(f.get("name"), str)
    ]


def original_name(entry: dict[str, Any]) -> str:
    """A record file's name as it was found: relative to a bundle's root, or a bare name."""
    return str(entry.get("original_name") or entry["name"])


def _repo_folder(record: dict[str, Any], listing: RepoListing) -> str:
    """The repo folder that is this model's folder: where every present weight file is found
    at its relative name, with the same SHA256 where the Hub lists one. Refuses a repo whose
    files differ from the model's."""
    folders: set[str] | None = None
    for local in weight_files(record):
        name = original_name(local)
        found = [e for e in listing.files if e.path == name or e.path.endswith(f"/{name}")]
        same = [e for e in found if e.sha256 is None or e.sha256 == local.get("sha256")]
        if found and not same:
            raise NothingToDownload(
                f"{name} in the library differs from {listing.repo_id}'s (another SHA256): "
                "completing it from there would mix two models; nothing was downloaded."
            )
        here = {e.path[: -len(name)].rstrip("/") for e in same}
        folders = here if folders is None else folders & here
    if not folders:
        raise NothingToDownload(
            f"{listing.repo_id} does not hold this model's files together; nothing was downloaded."
        )
    matched = str((record.get("hub") or {}).get("matched_filename") or "")
    chosen = [f for f in folders if matched.startswith(f"{f}/") or (not f and "/" not in matched)]
    if len(chosen) == 1:
        return chosen[0]
    if len(folders) > 1:
        raise NothingToDownload(
            f"{listing.repo_id} holds this model's files in several folders "
            f"({', '.join(sorted(f or '.' for f in folders))}); nothing was downloaded."
        )
    return folders.pop()


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def plan_downloads(
    model_id: str,
    record: dict[str, Any],
    listing: RepoListing,
    *,
    missing_shards: bool,
    related: bool,
) -> DownloadPlan:
    """What to fetch from `listing` (the record's matched repo) to complete `record`.

    The model folder maps onto one repo folder (`_repo_folder`): a missing shard goes next to
    the present shards of its set; a related file keeps its path relative to that folder.
    """
    folder = _repo_folder(record, listing)
    have = {f.get("name") for f in record.get("files") or [] if isinstance(f, dict)}
    items: list[DownloadItem] = []
    if missing_shards:
        items += _missing_shard_items(record, listing, folder, have)
    skipped: list[str] = []
    if related:
        taken = {i.dest for i in items}
        for item, reason in _related_items(record, listing, folder, have | taken):
            if item is not None:
                items.append(item)
            else:
                skipped.append(reason)
    prefix = f"{folder}/" if folder else ""
    expected = {
        e.path[len(prefix) :]: e.sha256
        for e in listing.files
        if e.sha256 and e.path.startswith(prefix)
    }
    return DownloadPlan(
        model_id, listing.repo_id, listing.sha, tuple(items), tuple(skipped), folder, expected
    )


def _set_folders(record: dict[str, Any], missing: str) -> tuple[str, str]:
    """(folder as found, folder in the model) of the present shards of `missing`'s set."""
    wanted = parse_shard_name(missing)
    for f in weight_files(record):
        shard = parse_shard_name(posixpath.basename(original_name(f)))
        if wanted and shard and (shard.base, shard.ext) == (wanted.base, wanted.ext):
            return posixpath.dirname(original_name(f)), posixpath.dirname(f["name"])
    return "", ""


def _missing_shard_items(
    record: dict[str, Any],
    listing: RepoListing,
    folder: str,
    have: set[Any],
) -> list[DownloadItem]:
    entries = {e.path: e for e in listing.files}
    items = []
    for raw in record.get("missing_shards") or []:
        name = str(raw)
        # A name from a local file name or an index json: one plain component, or refused.
        if sanitize_component(name, fallback="") != name:
            raise NothingToDownload(
                f"The missing shard name {name!r} is not a safe file name; nothing was downloaded."
            )
        found_in, local_dir = _set_folders(record, name)
        repo_path = _join(folder, _join(found_in, name))
        entry = entries.get(repo_path)
        if entry is None:
            raise NothingToDownload(
                f"{listing.repo_id} has no {repo_path}, so the set cannot be completed from it; "
                "nothing was downloaded."
            )
        if entry.sha256 is None:
            raise NothingToDownload(
                f"The Hub lists no SHA256 for {repo_path} in {listing.repo_id}, so a download "
                "could not be verified; nothing was downloaded."
            )
        if not downloadable(repo_path):
            raise NothingToDownload(
                f"{listing.repo_id} names {repo_path!r}, which cannot be a local file name; "
                "nothing was downloaded."
            )
        dest = _join(local_dir, name)
        if dest in have:
            continue
        shard = parse_shard_name(name)
        items.append(
            DownloadItem(
                repo_path,
                dest,
                "weights",
                entry.size,
                entry.sha256,
                shard.number if shard else None,
                shard.total if shard and shard.total else _set_total(record),
            )
        )
    return items


def _set_total(record: dict[str, Any]) -> int | None:
    totals = {f.get("shard_total") for f in weight_files(record)} - {None}
    return totals.pop() if len(totals) == 1 else None


def _shard_ext(record: dict[str, Any]) -> str | None:
    for f in weight_files(record):
        if shard := parse_shard_name(posixpath.basename(original_name(f))):
            return shard.ext
    return None


def _related_role(relative: str, record: dict[str, Any]) -> str | None:
    for pattern, role in RELATED_FILES:
        if fnmatch.fnmatchcase(relative, pattern):
            if role == "index":
                # Only the weight map of this model's own set (`model.safetensors.index.json`
                # for `.safetensors` shards), not the `.bin` one a repo may also keep.
                ext = _shard_ext(record)
                if ext is None or not relative.lower().endswith(f"{ext}{INDEX_SUFFIX}"):
                    return None
            return role
    return None


def _related_items(
    record: dict[str, Any],
    listing: RepoListing,
    folder: str,
    have: set[Any],
) -> list[tuple[DownloadItem | None, str]]:
    found: list[tuple[DownloadItem | None, str]] = []
    prefix = f"{folder}/" if folder else ""
    for entry in listing.files:
        if not entry.path.startswith(prefix):
            continue
        relative = entry.path[len(prefix) :]
        role = _related_role(relative, record)
        if role is None:
            continue
        dest = safe_dest(relative)
        if dest is None or not downloadable(entry.path):
            found.append((None, f"{entry.path}: a name that cannot be a local file name"))
            continue
        if dest in have:
            continue
        if entry.size is not None and entry.size > MAX_RELATED_BYTES:
            found.append((None, f"{entry.path}: {entry.size} bytes is too large for a {role} file"))
            continue
        have.add(dest)
        found.append((DownloadItem(entry.path, dest, role, entry.size, entry.sha256), ""))
    return found
