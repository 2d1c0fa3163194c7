"""`modelimport retry-pending`: look up models that were imported offline."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from modelimport.cli.app import app
from modelimport.cli.common import open_for
from modelimport.cli.options import (
    HubTimeoutOpt,
    JsonOpt,
    LibraryOpt,
    NoCivitaiOpt,
    OfflineOpt,
    RefreshOpt,
    VerboseOpt,
    YesOpt,
    resolve_options,
)
from modelimport.cli.output import Output
from modelimport.cli.progress import progress_sink
from modelimport.errors import UsageError


@app.command(
    "retry-pending",
    epilog="Examples:\n\n  modelimport retry-pending\n\n  modelimport retry-pending --json"
    "\n\n  modelimport retry-pending --no-civitai",
)
def retry_pending_command(
    ctx: typer.Context,
    refresh: RefreshOpt = False,
    timeout: HubTimeoutOpt = 5.0,
    no_civitai: NoCivitaiOpt = False,
    library: LibraryOpt = None,
    json_: JsonOpt = False,
    offline: OfflineOpt = False,
    yes: YesOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Look up on the Hub and CivitAI every model still pending an online lookup.

    Each source is asked only about the models it still owes an answer (it was down, or
    the model was imported offline); CivitAI gets one batch request per 100 models.
    Models marked manual are left as they are. Needs the network: it refuses to run offline.
    """
    from modelimport.config import disabled_sources, hub_offline_by_env
    from modelimport.identify.enrich import retry_pending
    from modelimport.identify.source import SourceSettings, open_sources

    opts = resolve_options(
        ctx, library=library, json=json_, offline=offline, yes=yes, verbose=verbose
    )
    if opts.offline or hub_offline_by_env():
        raise UsageError("retry-pending needs the Hub; drop --offline / HF_HUB_OFFLINE=1.")
    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False)
    disabled = disabled_sources(no_flags={"civitai": no_civitai})
    sources = open_sources(SourceSettings(False, timeout, refresh, disabled))
    with progress_sink(opts.json, out.err) as sink:
        results = retry_pending(opened, sources, sink)
    data = {
        "results": results,
        "summary": {
            status: sum(r["status"] == status for r in results)
            for status in ("enriched", "pending", "manual")
        },
    }
    out.result(data, lambda console: _render(console, results))
    raise typer.Exit(1 if any(r["status"] == "pending" for r in results) else 0)


def _render(console: Console, results: list[dict[str, Any]]) -> None:
    if not results:
        console.print("No models are pending an online lookup.")
        return
    table = Table(title="Online lookups")
    for col in ("model", "result", "trust", "match"):
        table.add_column(col, overflow="fold")
    for r in results:
        result = r["status"] if not r["error"] else f"still pending: {r['error']}"
        match = r.get("repo_id") or r.get("identity_source") or "-"
        table.add_row(r["model_id"], result, r.get("trust_level") or "-", match)
    console.print(table)
