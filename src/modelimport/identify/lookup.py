"""The `lookup` use case: what model files say about themselves, and what the identity
sources say they are, without importing anything.

    sources = open_lookup_sources(LookupOptions(verify=True, top=5))
    report = lookup_files(paths, sources, progress)   # {"results": [...], "hub_calls": ...}

Each file is read (format, header, probe, fast hash; the whole file for its SHA256 only with
`verify`), asked of the Hub (which takes candidates from the catalog of well-known files),
then of CivitAI by SHA256 when the SHA256 is known (`--verify`, or remembered for this very
file unchanged) and the Hub did not verify it, as an import does. CivitAI follows the same
switches as an import: `offline`, `--no-civitai`, MODELIMPORT_CIVITAI and config.toml, its
breaker and disk cache.

Invariants:
- A file that cannot be read gets a report with the same keys, nothing identified, and an
  `error` sentence; the other files are still looked up. A folder is bad usage, found before
  any file is read (`UsageError`).
- Nothing here prints or writes to the library; progress goes to the caller's sink.
- A CivitAI hit is the verdict (`source: "civitai"`, verified), as in an imported record;
  the Hub's candidates and error stay in the report. `civitai` always says whether CivitAI
  was asked, and why not.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelimport.errors import ModelImportError, UsageError
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress


@dataclass(frozen=True)
class LookupOptions:
    """What the command line asks of one `lookup` run."""

    verify: bool = False  # read each file whole for its SHA256
    top: int = 5  # candidates shown per file
    offline: bool = False
    timeout: float = 5.0
    refresh: bool = False
    # Sources switched off (`--no-civitai`, MODELIMPORT_CIVITAI=0, config.toml).
    disabled: frozenset[str] = field(default_factory=frozenset)


@dataclass
class LookupSources:
    """The sessions of one run: the Hub (with the catalog) and CivitAI when enabled."""

    options: LookupOptions
    hub: Any
    civitai: Any | None  # None: switched off


def open_lookup_sources(options: LookupOptions) -> LookupSources:
    from modelimport.config import hub_offline_by_env
    from modelimport.identify.civitai import CivitaiSession
    from modelimport.identify.hub import HubSession
    from modelimport.identify.hub.client import DEFAULT_SEARCH_LIMIT

    offline = options.offline or hub_offline_by_env()
    options = replace(options, offline=offline)
    # --top is how many candidates are shown; a search fetches enough to find the right repo
    # among popular namesakes whatever is shown.
    hub = HubSession(
        offline=offline,
        timeout=options.timeout,
        refresh=options.refresh,
        search_limit=max(options.top, DEFAULT_SEARCH_LIMIT),
    )
    civitai = None
    if "civitai" not in options.disabled:
        civitai = CivitaiSession(
            offline=offline, timeout=options.timeout, refresh=options.refresh
        )
    return LookupSources(options, hub, civitai)


def lookup_files(
    paths: Sequence[Path], sources: LookupSources, progress: ProgressSink = ignore_progress
) -> dict[str, Any]:
    """One report per path, in order, and the calls each source made."""
    from modelimport.readers.collect import unreadable_reason

    # All paths are checked before any is looked up, so a folder is bad usage up front.
    problems = [_file_problem(p) for p in paths]
    reports = []
    for path, problem in zip(paths, problems, strict=True):
        if problem is None:
            try:
                reports.append(lookup_file(path, sources, progress))
                continue
            except ModelImportError as exc:
                problem = str(exc)
            except OSError as exc:
                problem = unreadable_reason(path, exc)
        reports.append(_failed_report(path, problem))
    civitai = sources.civitai
    return {
        "results": reports,
        "hub_calls": dict(sources.hub.calls),
        "civitai_calls": dict(civitai.calls) if civitai is not None else {},
    }


def _file_problem(path: Path) -> str | None:
    """Why `path` cannot be looked up, found without opening it (opening a fifo blocks)."""
    from modelimport.readers.collect import unreadable_reason

    try:
        st = path.stat()
    except OSError as exc:
        return unreadable_reason(path, exc)
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a folder; lookup takes model files.")
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file; lookup reads only model files."
    return None


def _failed_report(path: Path, error: str) -> dict[str, Any]:
    """A report with the keys of a looked-up file's, nothing identified, and the error."""
    from modelimport.identify.hub.records import no_match

    return {
        "path": str(path),
        "file": None,
        "status": "failed",
        **no_match().to_json(),
        "trust": None,
        "confidence": None,
        "civitai": civitai_report(None, "the file could not be read"),
        "error": error,
    }


def lookup_file(
    path: Path, sources: LookupSources, progress: ProgressSink = ignore_progress
) -> dict[str, Any]:
    """What one model file says and what the sources say it is (raises for an unreadable
    or invalid file: `lookup_files` turns that into the file's error)."""
    from modelimport.formats import inspect_file
    from modelimport.hashing import fast_hash
    from modelimport.identify.hub import LocalFile
    from modelimport.identify.hub.candidates import request_for
    from modelimport.identify.hub.records import FileStamp
    from modelimport.probe import probe_model

    options = sources.options
    before = path.stat()
    facts = inspect_file(path)
    probe = probe_model([facts])
    local = LocalFile(
        name=path.name,
        size=facts.size,
        fast_hash=fast_hash(path),
        sha256=_sha256(path, progress) if options.verify else None,
    )
    stamp = FileStamp.of(path, before)
    if stamp == FileStamp.of(path) and stamp.size == local.size:
        # Unchanged while it was read: a SHA256 remembered for this very file in this state
        # is reused (and one read now remembered); a file written meanwhile gets neither.
        local = replace(local, stamp=stamp)
    request = request_for(
        (local,),
        path.resolve().parent.name,
        embedded_repos=probe.embedded_repos,
        metadata=probe.file_says.get("embedded_metadata"),
        model_type=probe.model_type,
        family=probe.family,
    )
    hub_result = sources.hub.identify(request)
    # The SHA256 read now, or remembered for this file unchanged (never with --refresh).
    request = sources.hub.with_known_hashes(request)
    civitai_result, civitai = _ask_civitai(sources, request, hub_result)
    verdict = civitai_result if civitai_result is not None else hub_result
    data = verdict.to_json()
    data["candidates"] = [c.to_json() for c in hub_result.candidates][: options.top]
    data["hub_error"] = hub_result.hub_error
    if verdict.hub_error:
        # The Hub never answered: no claim either way, as in an imported record.
        data["trust"] = None
        data["confidence"] = None
    return {
        "path": str(path),
        "file": {
            "name": path.name,
            "size": facts.size,
            "format": facts.format,
            "model_type": probe.model_type,
            "subtype": probe.subtype,
            "family": probe.family,
            "field_sources": {k: probe.field_sources.get(k) for k in ("model_type", "family")},
            "precision": probe.precision,
            "variant": probe.variant,
            "parameters": _parameters(probe, facts),
            "fast_hash": local.fast_hash,
            "sha256": local.sha256,  # read now (--verify); a remembered one is not shown
            "embedded_repos": list(request.embedded_repos),
            "pickle": _pickle_verdict(probe),
        },
        "status": _status(verdict),
        **data,
        "civitai": civitai,
        "error": None,
    }


def _ask_civitai(
    sources: LookupSources, request: Any, hub_result: Any
) -> tuple[Any | None, dict[str, Any]]:
    """(CivitAI's result when it verified the file, else None; the report's `civitai`).
    Asked as an import asks it: with the file's SHA256, when the Hub did not verify it."""
    from modelimport.identify.civitai.client import lookup_sha256

    session = sources.civitai
    if session is None:
        return None, civitai_report(None, "switched off")
    if sources.options.offline:
        return None, civitai_report(None, "offline")
    if str(hub_result.trust) == "verified" and not hub_result.hub_error:
        return None, civitai_report(None, "the Hub verified the file")
    if lookup_sha256(request) is None:
        return None, civitai_report(None, "the SHA256 is not known yet: pass --verify")
    result = session.identify(request)
    if result.hub_error:
        return None, civitai_report(None, result.hub_error, asked=True)
    if str(result.trust) != "verified":
        return None, civitai_report(None, None, asked=True)
    return result, civitai_report(result.metadata.get("civitai") or {}, None, asked=True)


# The keys of `civitai` in a lookup report: always all of them, null when not known.
CIVITAI_REPORT_KEYS = (
    "model_name",
    "version_name",
    "model_type",
    "base_model",
    "trigger_words",
    "page_url",
    "download_url",
)


def civitai_report(
    version: dict[str, Any] | None, reason: str | None, *, asked: bool = False
) -> dict[str, Any]:
    """What CivitAI said: `status` "verified" (a version lists this SHA256), "no match",
    "not asked" (`reason` says why) or "not looked up" (it could not answer: `reason`)."""
    if version is not None:
        status = "verified"
    elif asked:
        status = "not looked up" if reason else "no match"
    else:
        status = "not asked"
    found = version or {}
    report: dict[str, Any] = {"status": status, "reason": reason}
    for key in CIVITAI_REPORT_KEYS:
        report[key] = found.get("trained_words" if key == "trigger_words" else key)
    report["trigger_words"] = list(report["trigger_words"] or [])
    return report


def _sha256(path: Path, progress: ProgressSink) -> str:
    """The whole file's SHA256, with progress (minutes for 100 GB)."""
    from modelimport.hashing import hash_file

    size = path.stat().st_size

    def on_bytes(done: int) -> None:
        progress(ProgressEvent(Stage.HASHING, path.name, done, size, key=str(path)))

    sha256 = hash_file(path, on_bytes).sha256
    progress(ProgressEvent(Stage.COMPLETE, path.name, size, size, key=str(path)))
    return sha256


def _pickle_verdict(probe: Any) -> dict[str, Any] | None:
    """What the pickle scan decided, for pickles only (None for safetensors and GGUF)."""
    scan = probe.file_says.get("pickle_scan")
    if not scan:
        return None
    return {
        "verdict": scan["verdict"],
        "dangerous": scan.get("dangerous", []),
        "unknown": scan.get("unknown", []),
        "needs_classes": scan.get("needs_classes", []),
        "loader_packages": scan.get("loader_packages", []),
    }


def _parameters(probe: Any, facts: Any) -> Any:
    for source in (getattr(probe, "file_says", {}) or {}, facts.details or {}):
        for key in ("parameter_count", "parameters", "params"):
            if source.get(key):
                return source[key]
    return None


def _status(result: Any) -> str:
    if result.hub_error:
        return f"not looked up: {result.hub_error}"
    if result.pending_verification:
        return "pending verification"
    return str(result.trust).replace("_", " ")  # "high confidence", as the review says it
