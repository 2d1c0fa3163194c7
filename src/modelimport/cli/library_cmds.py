"""Library commands: `status`, `rescan`, `mark-manual`, `shards`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelimport.cli.app import app
from modelimport.cli.common import (
    ModelIdsArg,
    aligned_columns,
    complete_model_id,
    human_size,
    open_for,
    trust_label,
)
from modelimport.cli.options import (
    GlobalOptions,
    HubTimeoutOpt,
    flag,
    global_options,
    paths_argument,
)
from modelimport.cli.output import Output
from modelimport.cli.progress import progress_sink
from modelimport.errors import UsageError


@app.command(epilog="Examples:\n\n  modelimport status\n\n  modelimport status --json")
@global_options("library", "json")
def status(
    opts: GlobalOptions,
) -> None:
    """Show the library: where it is, how many models, their size, pending lookups."""
    from modelimport.library.maintenance import library_status

    out = Output(opts.json, opts.verbose)
    data = library_status(open_for(opts, out, create=False, read_only_ok=True))
    out.result(data, lambda console: _render_status(console, data))


def _render_status(console: Console, data: dict[str, Any]) -> None:
    console.print(f"Library: {data['library']}")
    if data.get("network_filesystem"):
        console.print(
            f"Filesystem: {data['filesystem']} (a network filesystem: the index uses the "
            f"{data['index_journal_mode'].upper()} journal, not WAL)"
        )
    if data.get("disk_full"):
        console.print("The disk is full: list, status, lookup, check and verify work.")
    elif data.get("read_only"):
        console.print("Read-only here: list, status, lookup, check and verify work.")
    console.print(f"Models: {data['models']} ({human_size(data['total_bytes'])})")
    for model_type, count in data["by_type"].items():
        console.print(f"  {model_type}: {count}")
    console.print(f"Pending online lookups: {data['pending_lookups']}")
    console.print(f"Incomplete sharded sets: {data['incomplete_sets']}")
    console.print(f"Manual records: {data['manual_records']}")
    verified = data.get("last_verified")
    if verified:
        what = "the whole library" if verified.get("whole_library") else "some models"
        found = verified.get("problems") or 0
        console.print(
            f"Last verified: {verified.get('at')} ({what}, {verified.get('files')} files, "
            + ("all intact)" if not found else f"{found} problem(s))")
        )
    else:
        console.print("Last verified: never (modelimport verify)")
    for a in data.get("apps") or []:
        blocked = f", {a['conflicts']} blocked by files not ours" if a["conflicts"] else ""
        if a.get("clashes"):
            blocked += f", {a['clashes']} not linked (another model's link has the name)"
        if a.get("via") == "config":
            console.print(f"App {a['app']} ({a['kind']}): served by {a['served_by']}, no links",
                          markup=False)  # fmt: skip
            continue
        console.print(
            f"App {a['app']} ({a['kind']}): links {a['ok']} ok, {a['broken']} broken, "
            f"{a['missing']} missing{blocked}; served by {a.get('served_by')}",
            markup=False,
        )
    if data.get("apps_problem"):
        console.print(data["apps_problem"], markup=False)
    rescan = data["rescan"]
    if rescan:
        console.print(f"Rescan running: {rescan.get('done', 0)} / {rescan.get('total', '?')}")
    else:
        console.print("Rescan: not running")


@app.command(epilog="Examples:\n\n  modelimport rescan")
@global_options("library", "json", "quiet")
def rescan(
    opts: GlobalOptions,
) -> None:
    """Rebuild the index from every metadata.json in the library (records are not changed)."""
    from modelimport.library.maintenance import rescan as run_rescan

    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False, read_only_ok=True, rebuild_damaged=True)
    with progress_sink(opts.json, out.err) as sink:
        data = run_rescan(opened, sink)
    if data["read_only"]:
        out.info(
            "The library is read-only here: its records were read and checked, and the index "
            "was left as it is."
        )
    if not opts.json:  # on stderr JSON mode writes only JSON lines; the JSON lists them
        for problem in data["problems"]:
            out.error(problem)
    out.result(
        data,
        lambda console: console.print(
            ("Read" if data["read_only"] else "Indexed")
            + f" {data['models']} models from metadata.json"
            + (
                f"; {len(data['unreadable'])} unreadable: {', '.join(data['unreadable'])}"
                if data["unreadable"]
                else "."
            )
        ),
    )
    raise typer.Exit(1 if data["unreadable"] or data["damaged"] else 0)


MARK_EXAMPLES = """Examples:

  modelimport mark-manual llm/llama/meta-llama-3-8b-instruct-q4_k_m

  modelimport mark-manual llm/llama/meta-llama-3-8b-instruct-q4_k_m --undo
"""


@app.command("mark-manual", epilog=MARK_EXAMPLES)
@global_options("library", "json")
def mark_manual(
    opts: GlobalOptions,
    model_ids: ModelIdsArg,
    undo: Annotated[
        bool, flag("--undo", help="Make the models automatic again (retry-pending may update).")
    ] = False,
) -> None:
    """Protect models from automatic updates (retry-pending, rescan keep them as they are)."""
    from modelimport.library.edits import set_manual

    out = Output(opts.json, opts.verbose)
    results = set_manual(open_for(opts, out, create=False), model_ids, manual=not undo)

    def render(console: Console) -> None:
        done = "marked automatic" if undo else "marked manual"
        for r in results:
            console.print(f"{r['model_id']}: {r['error'] or done}", markup=False)

    out.result({"results": results}, render)
    raise typer.Exit(1 if any(r["status"] == "failed" for r in results) else 0)


EDIT_EXAMPLES = """Examples:

  modelimport edit llm/llama/meta-llama-3-8b-instruct-q4_k_m --tag chat

  modelimport edit llm/llama/meta-llama-3-8b-instruct-q4_k_m --notes "old"

  modelimport edit llm/llama/meta-llama-3-8b-instruct-q4_k_m --name Chat
"""


@app.command("edit", epilog=EDIT_EXAMPLES)
@global_options("library", "json")
def edit_command(
    opts: GlobalOptions,
    model_id: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_ID",
            help="The model to edit (type/family/slug, as `list` shows it).",
            autocompletion=complete_model_id,
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", metavar="TEXT", help="Its name (renames the id).")
    ] = None,
    model_type: Annotated[
        str | None,
        typer.Option("--type", metavar="TYPE", help="Model type: lora, checkpoint, llm, ..."),
    ] = None,
    family: Annotated[
        str | None, typer.Option("--family", metavar="FAMILY", help="Family: sdxl, flux, ...")
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="TAG", help="A tag; repeat for several (replaces them)."),
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes", metavar="TEXT", help="Notes.")] = None,
) -> None:
    """Change a model's name, type, family, tags or notes; the record becomes manual.

    When the name, type or family changes, so does the model id: the model folder moves to
    the new id in one rename, and the index and app links follow.
    """
    from modelimport.library.edits import edit_model

    changes: dict[str, str | list[str]] = {
        field: value
        for field, value in (
            ("name", name),
            ("type", model_type),
            ("family", family),
            ("tags", tags),
            ("notes", notes),
        )
        if value is not None
    }
    if not changes:
        raise UsageError("Nothing to change; pass --name, --type, --family, --tag or --notes.")
    out = Output(opts.json, opts.verbose)
    result = edit_model(open_for(opts, out, create=False), model_id, changes)

    def render(console: Console) -> None:
        moved = result["model_id"] != result["previous_model_id"]
        console.print(
            f"{result['previous_model_id']}: {', '.join(result['changed'])} changed; "
            f"marked manual"
            + (f"; now {result['model_id']} ({result['path']})" if moved else "."),
            markup=False,
        )

    out.result(result, render)


SHARDS_EXAMPLES = """
Examples:

  modelimport shards ./llama-3-70b/

  modelimport shards dl --json

  modelimport shards --download-missing llm/llama/llama-3-70b-instruct

  modelimport shards --download-missing --with-related ./llama-3-70b/
"""


@app.command(epilog=SHARDS_EXAMPLES)
@global_options("library", "json", "offline")
def shards(
    opts: GlobalOptions,
    paths: Annotated[
        list[Path],
        paths_argument(
            "Files and folders to group; with --download-missing, model ids or paths of "
            "models in the library (or of the files they were imported from)."
        ),
    ],
    download_missing: Annotated[
        bool,
        flag(
            "--download-missing",
            help="Download the shards a library model's set misses from its matched Hub repo, "
            "verified by the SHA256 the Hub lists, and add them to the model.",
        ),
    ] = False,
    with_related: Annotated[
        bool,
        flag(
            "--with-related",
            help="Also download what the matched repo has that the model lacks: config, "
            "tokenizer, index json, model card.",
        ),
    ] = False,
    timeout: HubTimeoutOpt = 10.0,
) -> None:
    """Group sharded sets and report whether each is complete (reads names, not data).

    With --download-missing (or --with-related) it completes models in the library instead:
    every file is downloaded into the library's staging, checked against the SHA256 the
    Hub lists, and added to the model in one step; one bad file leaves the model unchanged.
    """
    out = Output(opts.json, opts.verbose)
    if download_missing or with_related:
        _download_missing(
            opts, out, [str(p) for p in paths], download_missing, with_related, timeout
        )
        return
    from modelimport.readers.collect import collect_paths
    from modelimport.readers.shards import bundle_sets, group_files

    collected = collect_paths(paths)
    # A set inside a folder that is one model (config.json and its shards) is a set too:
    # `import` refuses it when incomplete, so `shards` says so as well.
    found = [g for g in group_files(collected.files) if g.is_sharded]
    found += [g for bundle in collected.bundles for g in bundle_sets(bundle)]
    groups = [
        {
            "name": g.set_name,
            "folder": str((g.files or (g.index_file,))[0].parent),  # type: ignore[union-attr]
            "sharded": g.is_sharded,
            "complete": g.complete,
            "shard_total": g.shard_total,
            "shards_present": len(g.files),
            "index_file": g.index_file.name if g.index_file else None,
            "files": [p.name for p in g.all_paths],
            "missing": list(g.missing),
            "problems": list(g.problems),
        }
        for g in found
    ]
    failures = [
        {"path": str(p), "error": e} for p, e in (*collected.failures, *collected.unreadable)
    ]
    data = {"sets": groups, "failures": failures}

    def render(console: Console) -> None:
        columns = ("set", "folder", "shards", "index", "complete", "missing / problems")
        rows = [
            (
                g["name"],
                g["folder"],
                f"{g['shards_present']} of {g['shard_total']}"
                if g["shard_total"]
                else str(g["shards_present"]),
                g["index_file"] or "-",
                "yes" if g["complete"] else "no",
                "; ".join([*g["problems"], *(f"missing {m}" for m in g["missing"])]) or "-",
            )
            for g in groups
        ]
        if not groups:
            console.print("No sharded sets found.")
        elif not console.is_terminal:  # one line per set in a pipe
            console.print(aligned_columns(columns, rows), markup=False, highlight=False)
        else:
            table = Table(title="Sharded sets")
            for col in columns:
                table.add_column(col, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        for f in failures:
            console.print(f["error"], markup=False)

    out.result(data, render)
    raise typer.Exit(1 if failures or any(not g["complete"] for g in groups) else 0)


def _download_missing(
    opts: GlobalOptions,
    out: Output,
    targets: list[str],
    missing: bool,
    related: bool,
    timeout: float,
) -> None:
    from modelimport.config import hub_offline_by_env
    from modelimport.downloads import FAILED, DownloadOptions, complete_models, require_hub
    from modelimport.identify.hub import HubSession

    offline = opts.offline or hub_offline_by_env()
    require_hub(offline)
    opened = open_for(opts, out, create=False)
    options = DownloadOptions(missing_shards=missing, related=related, timeout=timeout)
    session = HubSession(timeout=timeout)
    with progress_sink(opts.json, out.err, opts.quiet, opts.verbose) as sink:
        results = complete_models(opened.library, opened.db, targets, options, session, sink)
    data = {"results": [r.to_json() for r in results]}
    out.result(data, lambda console: render_completions(console, data["results"]))
    raise typer.Exit(1 if any(r.status == FAILED for r in results) else 0)


def render_completions(console: Console, results: list[dict[str, Any]]) -> None:
    """One line per model and one per downloaded file (shared with `import`)."""
    for r in results:
        name = r["model_id"] or r["target"]
        if r["status"] == "failed":
            console.print(f"{name}: failed: {r['error']}", markup=False)
            continue
        state = ""
        if r["complete"] is not None:
            state = "; the set is complete" if r["complete"] else "; the set is still incomplete"
        if r["status"] == "unchanged":
            console.print(f"{name}: nothing to download{state}.", markup=False)
        else:
            console.print(
                f"{name}: {len(r['downloaded'])} file(s) downloaded from {r['repo_id']}{state}"
                f" ({r['trust_level']}).",
                markup=False,
            )
        for f in r["downloaded"]:
            check = "SHA256 verified" if f["verified_by"] == "sha256" else "size checked"
            console.print(
                f"  {f['name']} ({f['role']}, {human_size(f['size'])}, {check})", markup=False
            )
        for reason in r["skipped"]:
            console.print(f"  not downloaded: {reason}", markup=False)


LIST_EXAMPLES = (
    "Examples:\n\n  modelimport list\n\n  modelimport list --type llm --json"
    "\n\n  modelimport list --pending\n\n  modelimport list --search llama"
)


def _types_named(db: Any, name: str) -> tuple[str, ...]:
    """The model types `--type NAME` means; an unknown name is refused, naming the types."""
    from modelimport.apps.layouts import model_types_named
    from modelimport.probe.tables import MODEL_TYPES

    stored = {row[0] for row in db.execute("SELECT DISTINCT model_type FROM models")}
    if name.lower() in stored:
        return (name.lower(),)
    types = model_types_named(name)
    if not types:
        known = ", ".join(sorted(MODEL_TYPES | stored))
        raise UsageError(
            f"No model type is called {name!r}; the types are {known} (an app's folder "
            "name such as loras or Stable-diffusion works too)."
        )
    return types


# Above this many rows `list` prints plain aligned columns instead of a Rich table.
RICH_TABLE_MAX_ROWS = 500


@app.command("list", epilog=LIST_EXAMPLES)
@global_options("library", "json")
def list_command(
    opts: GlobalOptions,
    model_type: Annotated[
        str | None,
        typer.Option("--type", metavar="TYPE", help="Only this model type (llm, lora, ...)."),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option("--family", metavar="FAMILY", help="Only this family (sdxl, llama, ...)."),
    ] = None,
    pending: Annotated[
        bool, flag("--pending", help="Only models still pending an online lookup.")
    ] = False,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            metavar="TEXT",
            help="Only models whose id, name, repo, file name or tag contains TEXT.",
        ),
    ] = None,
) -> None:
    """List the models in the library, from the index."""
    from modelimport.library.index import list_models

    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False, read_only_ok=True)
    # Types and families are stored in lower case; `--type LLM` means the same as `llm`,
    # and an app's folder name (`loras`, `Stable-diffusion`) the types it holds.
    types: list[str | None] = [None]
    if model_type:
        types = list(_types_named(opened.db, model_type))
    models = sorted(
        (
            m
            for each in types
            for m in list_models(opened.db, each, family and family.lower(), pending, search)
        ),
        key=lambda m: m["model_id"],
    )
    for m in models:
        m["path"] = str(opened.library.root / m["model_id"])

    title = f"{len(models)} model(s) in {opened.library.root}"
    columns = ("model", "precision", "size", "files", "trust", "repo", "path")
    rows = [
        (
            m["model_id"],
            m["precision"] or "-",
            human_size(m["total_size"]),
            str(m["file_count"]),
            trust_label(None if m["pending_online_lookup"] else m["trust"]),
            m["repo_id"] or "-",
            m["path"],
        )
        for m in models
    ]

    def render(console: Console) -> None:
        if len(rows) > RICH_TABLE_MAX_ROWS or not console.is_terminal:
            # Rich lays out every cell (about 0.5 ms a row): 10,000 models would take 5 s.
            # Plain aligned columns print the same facts in a fraction of that, and in a pipe
            # keep every model id on one line (a table folds them at 80 columns).
            console.print(title, markup=False, highlight=False)
            console.print(
                aligned_columns(columns, rows), markup=False, highlight=False, soft_wrap=True
            )
            return
        table = Table(title=title)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    out.result({"library": str(opened.library.root), "models": models}, render)


CHECK_EXAMPLES = (
    "Examples:\n\n  modelimport check\n\n  modelimport check --repair\n\n"
    "  modelimport check --json"
)


@app.command(epilog=CHECK_EXAMPLES)
@global_options("library", "json")
def check(
    opts: GlobalOptions,
    repair: Annotated[
        bool,
        flag(
            "--repair",
            help="Fix what metadata.json can fix: index rows, leftover temporary files; adopt "
            "model files dropped into the library by hand.",
        ),
    ] = False,
) -> None:
    """Check the library's invariants (fast: reads metadata and sizes, not file contents).

    Every index row has a complete model folder whose metadata.json agrees with it, every
    listed file is there with its size, no import is left in staging, no stray files, and
    every app link resolves. Exit 1 when something is off.
    """
    from modelimport.library.integrity import REPAIRABLE, check_library

    out = Output(opts.json, opts.verbose)
    # Not reconciled at open: where the index and the folders disagree is what check reports.
    opened = open_for(opts, out, create=False, read_only_ok=True, reconcile=False)
    data = check_library(opened, repair=repair)

    def render(console: Console) -> None:
        for p in data["problems"]:
            line = p["message"] + (f" {p['repair'].capitalize()}." if p["repair"] else "")
            if not repair and REPAIRABLE.get(p["kind"]):
                line += " [repairable]"
            status = "repaired" if p["repaired"] else "warning" if p["warning"] else "problem"
            console.print(f"{status}: {line}", markup=False)
        if data["ok"]:
            fixed = sum(p["repaired"] for p in data["problems"])
            console.print(
                f"Library OK: {data['models']} models checked"
                + (f"; {fixed} problem(s) repaired." if fixed else ".")
            )
        else:
            console.print(
                f"{data['remaining']} problem(s) in {data['library']}"
                + ("." if repair or not any(REPAIRABLE.get(p["kind"]) for p in data["problems"])
                   else " (check --repair fixes those marked [repairable]).")
            )

    out.result(data, render)
    raise typer.Exit(0 if data["ok"] else 1)


VERIFY_EXAMPLES = (
    "Examples:\n\n  modelimport verify\n\n"
    "  modelimport verify llm/llama/meta-llama-3-8b-instruct-q4_k_m --json"
)


@app.command(epilog=VERIFY_EXAMPLES)
@global_options("library", "json", "quiet")
def verify(
    opts: GlobalOptions,
    model_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MODEL_ID]",
            help="Models to verify (default: all).",
            autocompletion=complete_model_id,
        ),
    ] = None,
) -> None:
    """Re-read library files and compare their BLAKE3 with metadata.json (finds bit rot).

    Reads every byte (BLAKE3 on every core); exit 1 names each corrupted or missing file.
    """
    from modelimport.library.integrity import verify_library

    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False, read_only_ok=True)
    with progress_sink(opts.json, out.err, opts.quiet, opts.verbose) as sink:
        data = verify_library(opened, model_ids or None, sink)

    def render(console: Console) -> None:
        for r in data["results"]:
            if r["status"] != "ok":
                console.print(f"{r['status']}: {r['model_id']}: {r['error']}", markup=False)
        s = data["summary"]
        console.print(
            f"Verified {s['files']} file(s) of {s['models']} model(s) "
            f"({human_size(s['bytes'])}): "
            + ("all intact." if not s["problems"] else f"{s['problems']} problem(s).")
        )

    out.result(data, render)
    raise typer.Exit(1 if data["summary"]["problems"] else 0)
