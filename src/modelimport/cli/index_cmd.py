"""`modelimport index update/status`: the publisher file index (`identify.publishers`)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from modelimport.cli.app import app
from modelimport.cli.common import human_count
from modelimport.cli.options import GlobalOptions, HubTimeoutOpt, global_options
from modelimport.cli.output import Output
from modelimport.errors import UsageError
from modelimport.names import human_size

index_app = typer.Typer(
    name="index",
    help="The publisher file index: every file of the publishers most models come from, "
    "with its SHA256, so files from repackagers and bucket repos are named exactly, offline.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(index_app)

UPDATE_EXAMPLES = """
Examples:

  modelimport index update

  modelimport index update --publisher Comfy-Org --publisher city96

  modelimport index status --json
"""


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never updated"
    if seconds < 3600:
        return f"updated {int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"updated {int(seconds // 3600)} h ago"
    return f"updated {int(seconds // 86400)} days ago"


@index_app.command("update", epilog=UPDATE_EXAMPLES)
@global_options("json", "offline", "quiet")
def index_update(
    opts: GlobalOptions,
    publisher: Annotated[
        list[str] | None,
        typer.Option(
            "--publisher",
            metavar="AUTHOR",
            help="Index this Hub author instead of the default publishers (repeatable).",
        ),
    ] = None,
    timeout: HubTimeoutOpt = 10.0,
) -> None:
    """Build or refresh the publisher file index from the Hugging Face Hub.

    One call lists each publisher's models; a repo whose last change is the one indexed
    costs nothing more, a new or changed repo one call for its files, sizes and SHA256s.
    The default publishers are the Hub authors the image apps' model lists (ComfyUI-Manager,
    InvokeAI's starter models) point into most (`index status` lists them); an import
    refreshes an index older than 7 days by itself when online.
    """
    from modelimport.config import hub_offline_by_env
    from modelimport.identify.publishers import default_publishers, update_index

    out = Output(opts.json, opts.verbose)
    if opts.offline or hub_offline_by_env():
        raise UsageError("The publisher index is built from the Hugging Face Hub: "
                         "run `index update` without --offline (and HF_HUB_OFFLINE unset).")
    names = list(dict.fromkeys(publisher or default_publishers()))
    if not names:
        raise UsageError("No publishers to index (MODELIMPORT_PUBLISHERS is empty).")
    shown = not (opts.quiet or opts.json)

    def progress(name: str, done: int, total: int) -> None:
        if shown and (done == total or done % 25 == 0):
            out.info(f"  {name}: {done}/{total} repos listed" if total else f"  {name}: unchanged")

    report = update_index(names, endpoint=_endpoint(), timeout=timeout, progress=progress)
    data = report.to_json()

    def render(console: Console) -> None:
        stats = report.stats
        console.print(
            f"Publisher index: {len(names)} publishers, {human_count(report.repos_seen)} repos "
            f"({report.repos_listed} listed, {report.repos_unchanged} unchanged, "
            f"{report.repos_dropped} dropped) in {report.seconds:.1f} s, {report.calls} calls."
        )
        if stats is not None:
            console.print(
                f"It holds {human_count(stats.files)} files of {human_count(stats.repos)} repos, "
                f"{human_size(stats.bytes_on_disk)} on disk: {stats.path}"
            )
        for name, reason in report.failures.items():
            console.print(f"Not updated: {name}: {reason}.")

    out.result(data, render)
    if report.failures:
        raise typer.Exit(1)


@index_app.command("status")
@global_options("json")
def index_status(opts: GlobalOptions) -> None:
    """Where the publisher index is, what it holds and how old it is; the default publishers
    with the evidence for each (files of the image apps' model lists in their repos)."""
    from modelimport.identify.publishers import (
        default_publishers,
        index_path,
        open_index,
        publisher_evidence,
    )

    out = Output(opts.json, opts.verbose)
    index = open_index(_endpoint())
    stats = index.stats() if index is not None else None
    if index is not None:
        index.close()
    evidence = publisher_evidence()
    publishers = [{"name": n, "files_in_app_lists": evidence.get(n, 0)}
                  for n in default_publishers()]
    data = {
        "index": stats.to_json() if stats else None,
        "path": str(index_path()),
        "default_publishers": publishers,
    }

    def render(console: Console) -> None:
        if stats is None:
            console.print(f"No publisher index yet ({index_path()}): run `modelimport index "
                          "update` once online.")
        else:
            console.print(
                f"Publisher index: {human_count(stats.files)} files of "
                f"{human_count(stats.repos)} repos from {stats.publishers} publishers, "
                f"{human_size(stats.bytes_on_disk)}, {_age(stats.age_s)}: {stats.path}"
            )
        console.print("Default publishers (files of the image apps' model lists they hold): "
                      + ", ".join(f"{p['name']} ({p['files_in_app_lists']})" for p in publishers))

    out.result(data, render)
