"""`modelimport retry-pending`: look up models that were imported offline."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from modelimport.cli.app import app
from modelimport.cli.common import aligned_columns, open_for, trust_label
from modelimport.cli.options import (
    GlobalOptions,
    HubTimeoutOpt,
    NoCivitaiOpt,
    RefreshOpt,
    global_options,
)
from modelimport.cli.output import Output
from modelimport.cli.progress import progress_sink


@app.command(
    "retry-pending",
    epilog="Examples:\n\n  modelimport retry-pending\n\n  modelimport retry-pending --json"
    "\n\n  modelimport retry-pending --no-civitai",
)
@global_options("library", "json", "offline", "quiet")
def retry_pending_command(
    opts: GlobalOptions,
    refresh: RefreshOpt = False,
    timeout: HubTimeoutOpt = 5.0,
    no_civitai: NoCivitaiOpt = False,
) -> None:
    """Look up on the Hub and CivitAI every model still pending an online lookup.

    Each source is asked only about the models it still owes an answer (it was down, or
    the model was imported offline), and asked what the import would have asked (the
    model's weights, its folder's name, the names inside its files), so a model imported
    offline ends as it would have online; CivitAI gets one batch request per 100 models.
    Models marked manual are left as they are. Offline (--offline or HF_HUB_OFFLINE=1) it
    looks nothing up, says how many models are pending, and exits 0.
    """
    from modelimport.config import disabled_sources, hub_offline_by_env
    from modelimport.identify.enrich import retry_pending
    from modelimport.identify.source import SourceSettings, open_sources

    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False)
    if opts.offline or hub_offline_by_env():
        # Offline there is nothing to do, and that is not a mistake: say so, change nothing.
        from modelimport.library.index import pending_model_ids

        pending = len(pending_model_ids(opened.db))
        data = {"results": [], "summary": {"enriched": 0, "pending": pending, "manual": 0},
                "offline": True}
        out.result(
            data,
            lambda console: console.print(
                f"Offline: nothing looked up; {pending} model(s) still pending an online "
                "lookup (run retry-pending without --offline / HF_HUB_OFFLINE=1)."
            ),
        )
        raise typer.Exit(0)
    disabled = disabled_sources(no_flags={"civitai": no_civitai})
    sources = open_sources(SourceSettings(False, timeout, refresh, disabled))
    with progress_sink(opts.json, out.err, opts.quiet, opts.verbose) as sink:
        results = retry_pending(opened, sources, sink)
    data = {
        "results": results,
        "summary": {
            status: sum(r["status"] == status for r in results)
            for status in ("enriched", "pending", "manual")
        },
        "offline": False,
    }
    out.result(data, lambda console: _render(console, results))
    raise typer.Exit(1 if any(r["status"] == "pending" for r in results) else 0)


def _render(console: Console, results: list[dict[str, Any]]) -> None:
    if not results:
        console.print("No models are pending an online lookup.")
        return
    columns = ("model", "result", "trust", "repo")
    rows = [
        (
            r["model_id"],
            r["status"] if not r["error"] else f"still pending: {r['error']}",
            "-" if r["status"] == "manual"
            # Still pending: no verdict yet, whatever an earlier partial answer recorded.
            else trust_label(None if r["status"] == "pending" else r.get("trust_level")),
            r.get("repo_id") or r.get("identity_source") or "-",
        )
        for r in results
    ]
    if not console.is_terminal:  # one line per model in a pipe
        console.print(aligned_columns(columns, rows), markup=False, highlight=False)
        return
    table = Table(title="Online lookups")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
