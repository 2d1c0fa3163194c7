"""`modelimport import`: plan, review, stage and commit models into the library."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from modelimport.cli.app import app
from modelimport.cli.common import (
    aligned_columns,
    human_size,
    open_for,
    shorten_middle,
    trust_label,
)
from modelimport.cli.options import (
    GlobalOptions,
    HubTimeoutOpt,
    LookupBudgetOpt,
    NoCivitaiOpt,
    RefreshOpt,
    flag,
    global_options,
    paths_argument,
)
from modelimport.cli.output import Output
from modelimport.cli.progress import planning_sink, progress_sink
from modelimport.config import hub_offline_by_env
from modelimport.errors import ModelImportError, UsageError

IMPORT_EXAMPLES = """
Examples:

  modelimport import ~/Downloads/*.safetensors

  modelimport import ~/Downloads --yes --delete-originals

  modelimport import ./dl --yes --json > report.json

  modelimport import ./llama-3-70b/ --move --yes

  modelimport import ./llama-3-70b/ --download-missing --with-related --yes

  modelimport import ./Llama-3.2-1B-Instruct/ --verbose   # a folder that is one model

A folder holding config.json (transformers) or model_index.json (diffusers), or a GGUF
with its mmproj, is imported as one model with every file at its relative path; sidecars
(<stem>.civitai.info, <stem>.preview.png, <stem>.yaml, ...) stay with their model file.
"""


@app.command("import", epilog=IMPORT_EXAMPLES)
@global_options("library", "json", "offline", "yes", "verbose", "quiet")
def import_command(
    opts: GlobalOptions,
    paths: Annotated[list[Path], paths_argument("Model files and folders (folders are walked).")],
    move: Annotated[
        bool,
        flag(
            "--move",
            help="Move instead of copy: a rename on the same filesystem; across filesystems "
            "the source is deleted only after the model is committed; a symlink is never "
            "moved (the file behind it is copied).",
        ),
    ] = False,
    allow_incomplete: Annotated[
        bool, flag("--allow-incomplete", help="Import sharded sets that miss shards.")
    ] = False,
    allow_unsafe_pickle: Annotated[
        bool,
        flag(
            "--allow-unsafe-pickle",
            help="Import pickles that would run code when loaded (os.system, eval, ...); they "
            "are never loaded either way. Pickles that only need harmless classes (SD 1.x "
            "Lightning .ckpt) are imported without it.",
        ),
    ] = False,
    delete_originals: Annotated[
        bool,
        flag(
            "--delete-originals",
            help="After the batch, delete the source files, only if every item succeeded, "
            "each library copy re-read from disk matches, and each source is unchanged and "
            "in a writable folder; otherwise nothing is deleted and each says why.",
        ),
    ] = False,
    download_missing: Annotated[
        bool,
        flag(
            "--download-missing",
            help="Import a set that misses shards, then download them from its matched Hub "
            "repo (each checked against the SHA256 the Hub lists) and add them to the model.",
        ),
    ] = False,
    with_related: Annotated[
        bool,
        flag(
            "--with-related",
            help="After importing, download what the matched repo has that the model lacks: "
            "config, tokenizer, index json, model card.",
        ),
    ] = False,
    details: Annotated[
        bool,
        flag("--details", help="In the review, show hashes, repo, matched file and why."),
    ] = False,
    refresh: RefreshOpt = False,
    timeout: HubTimeoutOpt = 5.0,
    no_civitai: NoCivitaiOpt = False,
    lookup_budget: LookupBudgetOpt = 300.0,
) -> None:
    """Import model files into the library: hash, identify, describe, index.

    Each file is read once: SHA256 and BLAKE3 are computed while it is copied into a
    staging folder inside the library, then the model appears by one atomic rename.
    """
    from modelimport.importer.pipeline import (
        FAILED,
        IMPORTED,
        REJECTED,
        ImportOptions,
        execute_plan,
        plan_import,
    )

    out = Output(opts.json, opts.verbose)
    if not opts.yes and not out.interactive:
        raise UsageError(
            "No terminal to ask for confirmation; pass --yes to import without review."
        )
    if delete_originals and move:
        raise UsageError(
            "--move already removes the originals; --delete-originals is for a copy."
        )
    offline_mode = opts.offline or hub_offline_by_env()
    if download_missing or with_related:
        from modelimport.downloads import require_hub

        require_hub(offline_mode)
    options = ImportOptions(
        move=move,
        allow_incomplete=allow_incomplete,
        allow_unsafe_pickle=allow_unsafe_pickle,
        offline=offline_mode,
        download_missing=download_missing,
        with_related=with_related,
        lookup_budget=lookup_budget,
    )
    opened = open_for(opts, out)
    if not offline_mode:
        _refresh_publisher_index(out, timeout)
    hub_session, content_sources = _sources(offline_mode, timeout, refresh, no_civitai)
    with planning_sink(opts.json, out.err, opts.quiet, opts.verbose) as sink:
        # Without a review nobody waits for the lookups: they overlap the copies.
        plan = plan_import(
            paths, opened.library, opened.db, options, sink, hub_session,
            wait_for_lookups=not opts.yes,
        )
    # A source that failed while planning is named before the review (its models show
    # "Lookup pending" there); each source once per batch.
    told = unreachable_sources([hub_session]) if not opts.yes else []
    for line in told:
        out.info(line)
    if not opts.yes and plan.models:
        from modelimport.cli.review import review_plan

        outcome = review_plan(out.err, plan, opened.library, opened.db, move, details)
        if not outcome.proceed:
            out.info("Nothing imported.")
            # Declining is not a failure, but files that were rejected still were.
            raise typer.Exit(1 if any(r.status in (FAILED, REJECTED) for r in plan.settled) else 0)
        options = replace(options, move=outcome.move)
    started = time.monotonic()
    with progress_sink(opts.json, out.err, opts.quiet, opts.verbose) as sink:
        results = execute_plan(
            plan, opened.library, opened.db, options, sink, hub_session, content_sources
        )
    report = import_report(results, str(opened.library.root), time.monotonic() - started)
    report["links"] = plan.links.to_json() if plan.links is not None else None
    refused = False
    if delete_originals:
        from modelimport.importer.originals import delete_originals as run_delete

        with progress_sink(opts.json, out.err, opts.quiet, opts.verbose) as sink:
            report["originals"] = run_delete(opened.library, results, sink, opened.db)
        refused = report["originals"]["refused"] > 0

    def render(console: Console) -> None:
        render_import_results(console, report, opts.verbose, opts.quiet)
        if "originals" in report:
            _render_originals(console, report["originals"])

    out.result(report, render)
    for line in unreachable_sources([hub_session, *content_sources]):
        if line not in told:
            out.info(line)
    # An imported model with an error is in the library but not yet indexed: not all done.
    failed = any(
        r.status in (FAILED, REJECTED)
        or (r.status == IMPORTED and r.error)
        or r.details.get("downloads", {}).get("status") == "failed"
        for r in results
    )
    raise typer.Exit(1 if failed or refused else 0)


def _refresh_publisher_index(out: Output, timeout: float) -> None:
    """An index older than a week is refreshed first, within a time budget (the publishers
    not reached wait for the next import); trouble is a note, never a failed import."""
    import os

    from huggingface_hub import constants

    from modelimport.identify.publishers import refresh_stale

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        report = refresh_stale(endpoint=endpoint, timeout=timeout)
    except (OSError, ModelImportError):  # an index that cannot be written: imports go on
        return
    if report is not None:
        out.info(
            f"Refreshed the publisher index: {report.repos_listed} repos listed, "
            f"{report.repos_unchanged} unchanged in {report.seconds:.1f} s"
            + (f"; not updated: {', '.join(report.failures)}" if report.failures else "")
            + "."
        )


def _sources(offline: bool, timeout: float, refresh: bool, no_civitai: bool) -> tuple[Any, list]:
    """The Hub session (asked while planning) and the sources by content (after the copy)."""
    from modelimport.config import disabled_sources
    from modelimport.identify.source import SourceSettings, by_content, open_sources

    if offline:
        return None, []
    disabled = disabled_sources(no_flags={"civitai": no_civitai})
    sources = open_sources(SourceSettings(False, timeout, refresh, disabled))
    hub = next((s for s in sources if s.name == "hub"), None)
    return hub, by_content(sources)


def unreachable_sources(sources: list[Any]) -> list[str]:
    """One line per identity source that failed in this batch (the breaker opened): which,
    why, and how long it was asked before giving up; every model it did not answer waits
    for retry-pending."""
    lines = []
    for source in sources:
        failure = getattr(source, "failure", None)
        if not failure or failure == "offline":
            continue
        spent = getattr(source, "failed_after", None)
        cost = f" Gave up after {spent:.1f} s of asking;" if spent is not None else ""
        lines.append(
            f"{failure}{cost} the models it did not answer wait for "
            "`modelimport retry-pending`."
        )
    return lines


def import_report(results: list[Any], library: str, seconds: float) -> dict[str, Any]:
    """The JSON of an import: every item, and a summary whose counts add up to the items."""
    counts: dict[str, int] = {}
    destinations: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "imported" and r.model_id:
            folder = r.model_id.rsplit("/", 1)[0]
            destinations[folder] = destinations.get(folder, 0) + 1
    imported_bytes = sum(f["size"] for r in results if r.status == "imported" for f in r.files)
    return {
        "results": [r.to_json() for r in results],
        "summary": {
            "imported": counts.get("imported", 0),
            "duplicate": counts.get("duplicate", 0),
            "failed": counts.get("failed", 0),
            "rejected": counts.get("rejected", 0),
            "skipped": counts.get("skipped", 0),
            "imported_bytes": imported_bytes,
            # imported, but the Hub or CivitAI has not answered yet: retry-pending asks
            "pending_lookup": sum(
                1
                for r in results
                if r.status == "imported" and r.details.get("pending_online_lookup")
            ),
            "seconds": round(seconds, 3),
            "bytes_per_second": int(imported_bytes / seconds) if seconds > 0 else 0,
            "library": library,
            "destinations": dict(sorted(destinations.items())),
        },
    }


# Above this many items the results are one line each even on a terminal: a table of
# thousands of rows is slow to lay out and no one reads it; `list` shows the library.
RESULT_TABLE_MAX_ROWS = 50


def _detail(r: dict[str, Any]) -> str:
    if r["error"]:
        return str(r["error"])  # also an imported model whose index row is still missing
    if r["status"] == "imported":
        if r.get("pending_online_lookup"):
            detail = "Lookup pending (retry-pending)"
        else:
            label = trust_label(r.get("trust_level"))
            detail = f"{label} {r.get('repo_id') or r.get('identity_source') or ''}".strip()
        if r.get("unsafe_pickle"):  # imported only because --allow-unsafe-pickle was given
            detail += "; Flagged pickle: UNSAFE, would run code when loaded"
        elif r.get("pickle_needs_classes"):  # harmless classes, but not weights_only
            detail += "; Flagged pickle: needs " + ", ".join(r["pickle_needs_classes"])
        return detail
    if r["status"] == "duplicate":
        return "already in the library"
    return ""


def render_import_results(
    console: Console, report: dict[str, Any], verbose: bool = False, quiet: bool = False
) -> None:
    """Per item (a table on a terminal, one line each in a pipe; none with --quiet), then
    the summary: counts, bytes, time, throughput, failures with their reasons, and where
    the models went."""
    results = report["results"]
    s = report["summary"]
    if all(r["status"] == "skipped" for r in results):
        others = len(results)
        console.print(
            "No model files found (nothing imported"
            + (f"; {others} other file(s) skipped)." if others else ").")
        )
        return
    shown = [r for r in results if r["status"] != "skipped"]
    rows = [
        (
            r["status"],
            r["model_id"] or "-",
            _bundle_root(r) + f"/ ({len(r['sources'])} files)"
            if r.get("bundle")
            else r["sources"][0]
            + (f" (+{len(r['sources']) - 1})" if len(r["sources"]) > 1 else ""),
            _detail(r) or "-",
        )
        for r in shown
    ]
    if quiet:
        pass
    elif console.is_terminal and len(rows) <= RESULT_TABLE_MAX_ROWS:
        # On a terminal: the model id and the source's file name, each shortened in the
        # middle to fit; the full paths are in --json and in the pipe output.
        width = max(20, (console.width - 20) * 2 // 5)
        table = Table(title="Import results", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("status", no_wrap=True)
        table.add_column("model", no_wrap=True)
        table.add_column("from", no_wrap=True)
        table.add_column("detail", overflow="fold")
        for (status, model, _source, detail), r in zip(rows, shown, strict=True):
            # The file's or the folder's own name; the full paths are in a pipe and --json.
            short = (
                f"{Path(_bundle_root(r)).name}/ ({len(r['sources'])} files)"
                if r.get("bundle")
                else Path(r["sources"][0]).name
                + (f" (+{len(r['sources']) - 1})" if len(r["sources"]) > 1 else "")
            )
            table.add_row(
                status, shorten_middle(model, width), shorten_middle(short, width * 2 // 3), detail
            )
        console.print(table)
    elif not console.is_terminal:
        console.print(
            aligned_columns(("status", "model", "source(s)", "detail"), rows),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    skipped = s["skipped"]
    seconds = s["seconds"]
    console.print(
        f"{s['imported']} imported ({human_size(s['imported_bytes'])} in "
        f"{seconds:.1f} s, {human_size(s['bytes_per_second'])}/s), {s['duplicate']} "
        f"duplicate, {s['rejected']} rejected, {s['failed']} failed, {skipped} skipped"
        + ("." if verbose or not skipped else " (--verbose names them)."),
        markup=False,
        highlight=False,
    )
    problems = [r for r in shown if r["status"] in ("failed", "rejected") or r["error"]]
    if problems and (quiet or console.is_terminal and len(rows) > RESULT_TABLE_MAX_ROWS):
        for r in problems:
            console.print(f"✗ {r['sources'][0]}: {r['error']}", markup=False, highlight=False)
    if s["destinations"]:
        where = ", ".join(f"{folder} ({n})" for folder, n in s["destinations"].items())
        console.print(f"Into {s['library']}: {where}", markup=False, highlight=False)
    completions = [r["downloads"] for r in report["results"] if r.get("downloads")]
    if completions:
        from modelimport.cli.library_cmds import render_completions

        render_completions(console, completions)
    if s["pending_lookup"]:
        console.print(
            f"{s['pending_lookup']} imported model(s) still await an online lookup (imported "
            "offline, a source was unreachable, or the lookup time budget ran out): run "
            "`modelimport retry-pending`."
        )
    if verbose:
        for r in results:
            if r["status"] == "skipped":
                console.print(f"skipped: {r['sources'][0]}: {r['error']}", markup=False)
            elif r.get("bundle"):
                bundle = r["bundle"]
                left_out = [(x["path"], x["reason"]) for x in r.get("left_out") or []]
                _print_bundle(console, _bundle_root(r), bundle["reason"], left_out)
    _render_links(console, report.get("links"), verbose)


def _render_links(console: Console, links: dict[str, Any] | None, verbose: bool) -> None:
    """One line for the links made into apps; every link not made is named with its reason."""
    if not links or not (links["changes"] or links["problems"]):
        return
    made = [c for c in links["changes"] if c["action"] in ("created", "repaired", "adopted")]
    apps = sorted({c["app"] for c in made})
    if made:
        console.print(f"Linked into {', '.join(apps)}: {len(made)} link(s).", markup=False)
    for c in links["changes"]:
        if c["action"] in ("skipped", "failed") or (verbose and c in made):
            reason = f": {c['reason']}" if c["reason"] else ""
            console.print(f"{c['app']}: {c['action']} {c['link_path']}{reason}", markup=False)
    for problem in links["problems"]:
        console.print(problem, markup=False)


def _bundle_root(result: dict[str, Any]) -> str:
    """The folder a bundle result came from."""
    return str(result["bundle"].get("folder") or result["bundle"]["root"])


def _print_bundle(
    console: Console, root: str, reason: str, left_out: Any
) -> None:
    """Why a folder was taken as one model, and what of it was left out."""
    console.print(f"one model: {root}/: {reason}", markup=False)
    for path, why in left_out:
        console.print(f"  left out: {path} ({why})", markup=False)


def _render_originals(console: Console, originals: dict[str, Any]) -> None:
    for f in originals["files"]:
        if f["deleted"]:
            line = f"deleted original: {f['path']}"
            if f["warning"]:
                line += f" ({f['warning']})"
        else:
            line = f"kept original: {f['path']}: {f['reason']}"
        console.print(line, markup=False)
    console.print(
        f"Originals: {originals['deleted']} deleted, {originals['kept']} kept; "
        f"{human_size(originals['freed_bytes'])} freed."
        + (f" {originals['relinked']} app link(s) made where they were." if originals.get(
            "relinked") else "")
    )
