"""`modelimport lookup`: what a model file says about itself, and what the Hub says it is."""

from __future__ import annotations

import contextlib
import stat
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelimport.cli.app import app
from modelimport.cli.common import aligned_columns, human_size, trust_badge, trust_label
from modelimport.cli.options import (
    GlobalOptions,
    HubTimeoutOpt,
    RefreshOpt,
    flag,
    global_options,
    paths_argument,
)
from modelimport.cli.output import Output
from modelimport.cli.progress import progress_sink
from modelimport.errors import ModelImportError, UsageError
from modelimport.events import ProgressEvent, ProgressSink, Stage, ignore_progress

if TYPE_CHECKING:
    from modelimport.identify.hub import LookupResult

LOOKUP_EXAMPLES = """
Examples:

  modelimport lookup Meta-Llama-3-8B-Instruct-Q4_K_M.gguf

  modelimport lookup ./sd_xl_base_1.0.safetensors --verify

  MODELIMPORT_CATALOG=./my-catalog.json modelimport lookup ./house_style_v3.safetensors

  modelimport lookup ~/models/*/model.safetensors --json --top 3

  modelimport lookup sd-v1-4.ckpt     # shows the pickle verdict and the classes it needs
"""

@app.command("lookup", epilog=LOOKUP_EXAMPLES)
@global_options("json", "offline", "verbose")
def lookup_command(
    opts: GlobalOptions,
    paths: Annotated[list[Path], paths_argument("Model files to identify.")],
    top: Annotated[int, typer.Option("--top", min=1, metavar="N", help="Candidates per file.")] = 5,
    verify: Annotated[
        bool,
        flag(
            "--verify",
            help="Read each file whole to compare its SHA256 now, and print it (otherwise: "
            "pending verification, decided when the file is imported).",
        ),
    ] = False,
    refresh: RefreshOpt = False,
    timeout: HubTimeoutOpt = 5.0,
) -> None:
    """Identify model files on the Hugging Face Hub, with a trust level for each match.

    Candidates: the catalog of well-known files (MODELIMPORT_CATALOG=FILE uses another),
    repos named inside the file, then searches of the name (whole, shorter runs, single
    words) until a repo holds a file of the same name and size.
    Without --verify a file is never read whole: its format, header and a fast hash (first
    and last 8 MiB) are read and its size is compared with the Hub's now; the Hub's SHA256
    is compared when the file is imported (or now, with --verify).
    Each file gets its own result; a file that cannot be read gets an error instead.
    """
    from modelimport.identify.hub import HubSession
    from modelimport.identify.hub.client import DEFAULT_SEARCH_LIMIT
    from modelimport.importer.collect import unreadable_reason

    out = Output(opts.json, opts.verbose)
    # All paths are checked before any is looked up, so a folder is bad usage up front.
    problems = [_file_problem(p) for p in paths]
    # --top is how many candidates are shown; a search fetches enough to find the right repo
    # among popular namesakes whatever is shown.
    session = HubSession(
        offline=opts.offline,
        timeout=timeout,
        refresh=refresh,
        search_limit=max(top, DEFAULT_SEARCH_LIMIT),
    )
    reports = []
    for path, problem in zip(paths, problems, strict=True):
        out.debug(f"Looking up {path}")
        if problem is None:
            try:
                # --verify reads whole files (minutes for 100 GB): show how far it is.
                progress = (
                    progress_sink(opts.json, out.err)
                    if verify
                    else contextlib.nullcontext(ignore_progress)
                )
                with progress as sink:
                    reports.append(_lookup_one(session, path, verify=verify, top=top, sink=sink))
                continue
            except ModelImportError as exc:
                problem = str(exc)
            except OSError as exc:
                problem = unreadable_reason(path, exc)
        reports.append(_failed_report(path, problem))
    data = {"results": reports, "hub_calls": dict(session.calls)}
    out.result(data, lambda console: _render(console, reports))
    raise typer.Exit(1 if any(r["error"] for r in reports) else 0)


def _file_problem(path: Path) -> str | None:
    """Why `path` cannot be looked up, found without opening it (opening a fifo blocks)."""
    from modelimport.importer.collect import unreadable_reason

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
        "error": error,
    }


def _lookup_one(
    session: Any, path: Path, *, verify: bool, top: int, sink: ProgressSink = ignore_progress
) -> dict[str, Any]:
    from modelimport.formats import inspect_file
    from modelimport.hashing import fast_hash
    from modelimport.identify.hub import LocalFile
    from modelimport.identify.hub.candidates import request_for
    from modelimport.identify.hub.records import FileStamp
    from modelimport.probe import probe_model

    before = path.stat()
    facts = inspect_file(path)
    probe = probe_model([facts])
    local = LocalFile(
        name=path.name,
        size=facts.size,
        fast_hash=fast_hash(path),
        sha256=_verified_sha256(path, sink) if verify else None,
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
    result = session.identify(request)
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
            "sha256": local.sha256,
            "embedded_repos": list(request.embedded_repos),
            "pickle": _pickle_verdict(probe),
        },
        "status": _status(result),
        **_trimmed(result, top),
        "error": None,
    }


def _pickle_verdict(probe: Any) -> dict[str, Any] | None:
    """What the pickle scan decided, for pickles only (None for safetensors and GGUF)."""
    scan = probe.file_says.get("pickle_scan")
    if not scan:
        return None
    return {
        "verdict": scan["verdict"],
        "dangerous": scan.get("dangerous", []),
        "needs_classes": scan.get("needs_classes", []),
        "loader_packages": scan.get("loader_packages", []),
    }


PICKLE_VERDICT_TEXT = {
    "safe": "a plain state dict (torch.load(weights_only=True) loads it)",
    "needs_classes": "harmless, importable; a loader needs {classes} "
    "(torch.load(weights_only=True) refuses it)",
    "unsafe": "UNSAFE: {dangerous} would run code when loaded; import refuses it unless "
    "--allow-unsafe-pickle",
}


def _verified_sha256(path: Path, sink: ProgressSink) -> str:
    from modelimport.hashing import hash_file

    def on_bytes(done: int) -> None:
        sink(ProgressEvent(Stage.HASHING, path.name, done, size))

    size = path.stat().st_size
    sha256 = hash_file(path, on_bytes).sha256
    sink(ProgressEvent(Stage.COMPLETE, path.name, size, size))
    return sha256


def _parameters(probe: Any, facts: Any) -> Any:
    for source in (getattr(probe, "file_says", {}) or {}, facts.details or {}):
        for key in ("parameter_count", "parameters", "params"):
            if source.get(key):
                return source[key]
    return None


def _status(result: LookupResult) -> str:
    if result.hub_error:
        return f"not looked up: {result.hub_error}"
    if result.pending_verification:
        return "pending verification"
    return trust_label(result.trust.value).lower()


def _trimmed(result: LookupResult, top: int) -> dict[str, Any]:
    data = result.to_json()
    data["candidates"] = data["candidates"][:top]
    if result.hub_error:
        # The Hub never answered: no claim either way, as in an imported record.
        data["trust"] = None
        data["confidence"] = None
    return data


def _render(console: Console, reports: list[dict[str, Any]]) -> None:
    for report in reports:
        if report["error"]:
            console.print(Text.assemble(("Error: ", "bold red"), report["error"]))
            continue
        f = report["file"]
        says = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("format", f["format"]),
                ("type", f["model_type"]),
                ("subtype", f.get("subtype")),
                ("family", f["family"]),
                ("precision", f["precision"]),
                ("parameters", f["parameters"]),
            )
            if value not in (None, "", "unknown")
        )
        console.print(Text.assemble((report["path"], "bold"), f"  {human_size(f['size'])}"))
        console.print(f"  File says: {says or 'nothing beyond its format'}")
        if f["sha256"]:
            console.print(f"  SHA256: {f['sha256']}")
        pickle = f.get("pickle")
        if pickle:
            text = PICKLE_VERDICT_TEXT[pickle["verdict"]].format(
                classes=", ".join(pickle["needs_classes"]),
                dangerous=", ".join(pickle["dangerous"]) or "unvettable globals",
            )
            console.print(f"  Pickle: {text}", markup=False)
        if report["hub_error"]:
            console.print(f"  Hub: not looked up ({report['hub_error']})")
            continue
        if report["candidates"]:
            _render_candidates(console, report["candidates"])
        label = trust_label(report["trust"])
        if not report["repo_id"]:
            console.print(f"  Match: {label}")
            continue
        console.print(
            Text.assemble(
                "  Match: ",
                (report["repo_id"], "bold"),
                f": {label}, {report['match_method']}, confidence {report['confidence']:.2f}",
            )
        )
        if report["pending_verification"]:
            console.print(
                "  SHA256: pending verification (compared on import, or now with --verify)"
            )
        meta = report["metadata"]
        for key in (
            "official_name",
            "family",
            "model_type",
            "license",
            "pipeline_tag",
            "base_model",
            "matched_filename",
            "download_url",
        ):
            if meta.get(key):
                console.print(f"  {key.replace('_', ' ').capitalize()}: {meta[key]}")


CANDIDATE_COLUMNS = ("Repo", "Matched file", "Size", "Method", "Confidence", "Trust")


def _render_candidates(console: Console, candidates: list[dict[str, Any]]) -> None:
    """A table on a terminal; in a pipe one line per candidate (a table folds a long repo id
    or file name over several lines, which no `grep` or `cut` can read back)."""
    rows = [
        (
            c["repo_id"],
            c["matched_file"] or "-",
            human_size(c["size"]) if c["size"] is not None else "-",
            c["match_method"] or "-",
            f"{c['confidence']:.2f}",
            c["trust"],
        )
        for c in candidates
    ]
    if not console.is_terminal:
        plain = [(*row[:-1], trust_label(row[-1])) for row in rows]
        lines = aligned_columns(tuple(c.lower() for c in CANDIDATE_COLUMNS), plain)
        console.print(textwrap.indent(lines, "  "), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in CANDIDATE_COLUMNS:
        table.add_column(column, justify="right" if column == "Confidence" else "left")
    for *cells, trust in rows:
        table.add_row(*cells, trust_badge(trust))
    console.print(table)
