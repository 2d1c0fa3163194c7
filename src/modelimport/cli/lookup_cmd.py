"""`modelimport lookup`: parse, ask the core (`identify.lookup`), render the reports."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelimport.cli.app import app
from modelimport.cli.common import aligned_columns, human_size, trust_badge, trust_label
from modelimport.cli.options import (
    GlobalOptions,
    HubTimeoutOpt,
    NoCivitaiOpt,
    RefreshOpt,
    flag,
    global_options,
    paths_argument,
)
from modelimport.cli.output import Output
from modelimport.cli.progress import progress_sink
from modelimport.events import ignore_progress

LOOKUP_EXAMPLES = """
Examples:

  modelimport lookup Meta-Llama-3-8B-Instruct-Q4_K_M.gguf

  modelimport lookup ./sd_xl_base_1.0.safetensors --verify

  modelimport lookup ~/Downloads/detail-tweaker.safetensors --verify   # CivitAI too, by SHA256

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
            help="Read each file whole to compare its SHA256 now, print it, and ask CivitAI "
            "about it (otherwise: pending verification, decided when the file is imported).",
        ),
    ] = False,
    refresh: RefreshOpt = False,
    timeout: HubTimeoutOpt = 5.0,
    no_civitai: NoCivitaiOpt = False,
) -> None:
    """Identify model files on the Hugging Face Hub and CivitAI, with a trust level for each.

    Candidates: the catalog of well-known files (MODELIMPORT_CATALOG=FILE uses another),
    repos named inside the file, then searches of the name (whole, shorter runs, single
    words) until a repo holds a file of the same name and size.
    Without --verify a file is never read whole: its format, header and a fast hash (first
    and last 8 MiB) are read and its size is compared with the Hub's now; the Hub's SHA256
    is compared when the file is imported (or now, with --verify).
    With the SHA256 (--verify, or read before from the same unchanged file) CivitAI is asked
    too, unless the Hub verified the file: a hit shows the model and version, type, base
    model, trigger words and page.
    Each file gets its own result; a file that cannot be read gets an error instead.
    """
    from modelimport.config import disabled_sources
    from modelimport.identify.lookup import LookupOptions, lookup_files, open_lookup_sources

    out = Output(opts.json, opts.verbose)
    options = LookupOptions(
        verify=verify,
        top=top,
        offline=opts.offline,
        timeout=timeout,
        refresh=refresh,
        disabled=disabled_sources(no_flags={"civitai": no_civitai}),
    )
    sources = open_lookup_sources(options)
    out.debug(f"Looking up {len(paths)} file(s)")
    # --verify reads whole files (minutes for 100 GB): show how far it is.
    progress = (
        progress_sink(opts.json, out.err) if verify else contextlib.nullcontext(ignore_progress)
    )
    with progress as sink:
        data = lookup_files(paths, sources, sink)
    reports = data["results"]
    out.result(data, lambda console: _render(console, reports))
    raise typer.Exit(1 if any(r["error"] for r in reports) else 0)


PICKLE_VERDICT_TEXT = {
    "safe": "a plain state dict (torch.load(weights_only=True) loads it)",
    "needs_classes": "harmless, importable; a loader needs {classes} "
    "(torch.load(weights_only=True) refuses it)",
    "unknown": "REFUSED: imports {unknown}, not known to be harmless; import refuses it "
    "unless --allow-unsafe-pickle",
    "unsafe": "UNSAFE: {dangerous} would run code when loaded; import refuses it unless "
    "--allow-unsafe-pickle",
}


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
                unknown=", ".join(pickle.get("unknown", [])),
            )
            console.print(f"  Pickle: {text}", markup=False)
        if report["hub_error"]:
            console.print(f"  Hub: not looked up ({report['hub_error']})")
        else:
            _render_hub(console, report)
        _render_civitai(console, report)


def _render_hub(console: Console, report: dict[str, Any]) -> None:
    """The Hub's candidates and verdict (a CivitAI verdict is rendered by `_render_civitai`)."""
    if report["candidates"]:
        _render_candidates(console, report["candidates"])
    if report["source"] != "hub":
        return
    label = trust_label(report["trust"])
    if not report["repo_id"]:
        console.print(f"  Match: {label}")
        return
    console.print(
        Text.assemble(
            "  Match: ",
            (report["repo_id"], "bold"),
            f": {label}, {report['match_method']}, confidence {report['confidence']:.2f}",
        )
    )
    if report["pending_verification"]:
        console.print("  SHA256: pending verification (compared on import, or now with --verify)")
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


def _render_civitai(console: Console, report: dict[str, Any]) -> None:
    civitai = report["civitai"]
    status = civitai["status"]
    if status == "not asked" and civitai["reason"] == "switched off":
        return  # the person switched it off: nothing to say
    if status != "verified":
        reason = f" ({civitai['reason']})" if civitai["reason"] else ""
        console.print(f"  CivitAI: {status}{reason}", markup=False, highlight=False)
        return
    name = " ".join(n for n in (civitai["model_name"], civitai["version_name"]) if n)
    console.print(
        Text.assemble(
            "  Match: ",
            (name or "a CivitAI model version", "bold"),
            f" on CivitAI: {trust_label(report['trust'])}, {report['match_method']}, "
            f"confidence {report['confidence']:.2f}",
        )
    )
    for label, value in (
        ("Type", civitai["model_type"]),
        ("Base model", civitai["base_model"]),
        ("Trigger words", ", ".join(civitai["trigger_words"])),
        ("Page", civitai["page_url"]),
        ("Download url", civitai["download_url"]),
    ):
        if value:
            console.print(f"  {label}: {value}", markup=False, highlight=False)


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
