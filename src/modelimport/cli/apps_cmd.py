"""App commands: `apps add/list/remove`, `sync`, `remove` (models) and `show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from modelimport.cli.app import app
from modelimport.cli.common import ModelIdsArg, complete_model_id, human_size, open_for
from modelimport.cli.options import GlobalOptions, flag, global_options
from modelimport.cli.output import Output
from modelimport.errors import UsageError

apps_app = typer.Typer(
    name="apps",
    help="The apps the library is linked into (ComfyUI, A1111/Forge, Stability Matrix, "
    "SwarmUI, LM Studio, a folder).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(apps_app)

ADD_EXAMPLES = """
Examples:

  modelimport apps add comfy ~/ComfyUI --kind comfyui

  modelimport apps add comfy ~/ComfyUI --kind comfyui --subfolders family

  modelimport apps add forge ~/stable-diffusion-webui-forge --kind a1111

  modelimport apps add sm ~/StabilityMatrix --kind stabilitymatrix

  modelimport apps add sm --kind stabilitymatrix      # its usual data folder

  modelimport apps add swarm ~/SwarmUI --kind swarmui

  modelimport apps add lms ~/.lmstudio/models --kind lmstudio

  modelimport apps add lms --kind lmstudio      # its usual folder on this system

  modelimport apps add comfy E:/ComfyUI --kind comfyui --via config

  modelimport apps add mine /data/models --kind folder --map lora=loras --map llm=llm
"""


@apps_app.command("add", epilog=ADD_EXAMPLES)
@global_options("library", "json")
def apps_add(
    opts: GlobalOptions,
    name: Annotated[str, typer.Argument(metavar="NAME", help="A name for this app (e.g. comfy).")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            metavar="KIND",
            help="comfyui, a1111 (also Forge), stabilitymatrix, swarmui, lmstudio or folder.",
        ),
    ],
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FOLDER]",
            help="The app's folder: ComfyUI's or A1111/Forge's install folder (the one "
            "holding models/), Stability Matrix's data folder or SwarmUI's install folder "
            "(the one holding Models/), LM Studio's models folder, or any folder for --kind "
            "folder. Left out for lmstudio, comfyui or stabilitymatrix: the app's usual "
            "folder on this system (~/.lmstudio/models; ComfyUI Desktop's or Stability "
            "Matrix's ComfyUI; Stability Matrix's data folder).",
        ),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="TYPE=SUBDIR",
            help="Put this model type in this subfolder (repeatable); required for folder.",
        ),
    ] = None,
    subfolders: Annotated[
        str,
        typer.Option(
            "--subfolders",
            metavar="MODE",
            help="none, or family: links go in a subfolder per family (loras/sdxl/, "
            "checkpoints/flux/).",
        ),
    ] = "none",
    via: Annotated[
        str,
        typer.Option(
            "--via",
            metavar="HOW",
            help="links (default), or config: no links, ComfyUI's extra_model_paths.yaml "
            "gets a section pointing at the library (for disks without links, like exFAT).",
        ),
    ] = "links",
) -> None:
    """Register an app: models imported from now on are linked into it.

    `modelimport sync` links the models already in the library. A folder is registered
    once; to change an app, `apps remove NAME --unlink` it and add it again.
    """
    from modelimport.apps.targets import SUBFOLDER_MODES, AppTarget, add_target, parse_mappings
    from modelimport.config import resolve_library_root
    from modelimport.library.layout import is_within

    out = Output(opts.json, opts.verbose)
    if subfolders not in SUBFOLDER_MODES:
        raise UsageError("--subfolders must be none or family.")
    found_by = ""
    if path is None:
        path, found_by = _default_folder(kind.lower())
    target = AppTarget(
        name, kind.lower(), path.expanduser().resolve(), subfolders,
        parse_mappings(mapping or []), via.lower(),
    )  # fmt: skip
    library = resolve_library_root(opts.library)
    if is_within(target.path, library):
        # Its links would be files in the library that no model lists (check would adopt
        # them as copies); an app's folder is outside the library.
        raise UsageError(f"{target.path} is inside the library ({library}); an app's folder "
                         "must be outside it.")
    config = add_target(target)
    data: dict[str, Any] = {"config": str(config), "app": target.to_json()}
    if target.via == "config":
        data["served_by"] = _write_app_config(target, library)
        tail = (
            f"ComfyUI reads every model of {library} through {data['served_by']['file']} "
            "(restart ComfyUI to see them); no links are made."
        )
    else:
        tail = "Run `modelimport sync` to link the models already in the library."
    out.result(
        data,
        lambda c: c.print(
            f"Added {name} ({target.kind}) at {target.path}{found_by} to {config}. {tail}",
            markup=False,
        ),
    )


def _default_folder(kind: str) -> tuple[Path, str]:
    """The app's usual folder on this system, for `apps add` without a FOLDER."""
    from modelimport.apps.locations import default_folders, existing_default

    found = existing_default(kind)
    if found is not None:
        return found[1], f" ({found[0]}'s usual folder)"
    looked = ", ".join(str(p) for _, p in default_folders(kind))
    where = f"none of its usual folders exists ({looked})" if looked else "it has no usual folder"
    raise UsageError(f"Give the app's FOLDER: for --kind {kind} {where}.")


def _write_app_config(target: Any, library: Path) -> dict[str, str]:
    """Write the app's config section; the app is not registered if that fails."""
    from modelimport.apps.comfy_config import config_file, write_section
    from modelimport.apps.targets import AppsConfigError, remove_target

    try:
        done = write_section(target, library)
    except AppsConfigError:
        remove_target(target.name)
        raise
    return {"file": str(config_file(target)), "result": done}


@apps_app.command(
    "list", epilog="Examples:\n\n  modelimport apps list\n\n  modelimport apps list --json"
)
@global_options("json")
def apps_list(
    opts: GlobalOptions,
) -> None:
    """List the registered apps and the path of the config file that holds them."""
    from modelimport.apps.targets import config_path, load_targets

    out = Output(opts.json, opts.verbose)
    targets = load_targets()
    data = {"config": str(config_path()), "apps": [t.to_json() for t in targets]}

    def render(console: Console) -> None:
        console.print(f"Config: {data['config']}", markup=False)
        if not targets:
            console.print("No apps registered; `modelimport apps add --help` shows how.")
        for t in targets:
            extra = f", subfolders {t.subfolders}" if t.subfolders != "none" else ""
            if t.mapping:
                extra += ", map " + " ".join(f"{k}={v}" for k, v in t.mapping.items())
            if t.via != "links":
                extra += f", via {t.via} (no links)"
            console.print(f"{t.name}: {t.kind} at {t.path}{extra}", markup=False)

    out.result(data, render)


@apps_app.command(
    "remove",
    epilog="Examples:\n\n  modelimport apps remove comfy"
    "\n\n  modelimport apps remove comfy --unlink",
)
@global_options("library", "json")
def apps_remove(
    opts: GlobalOptions,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The app's name (see `apps list`).")],
    unlink: Annotated[
        bool, flag("--unlink", help="Also remove the links modelimport made in its folders.")
    ] = False,
) -> None:
    """Unregister an app. Its links stay (and are forgotten) unless --unlink."""
    from modelimport.apps.comfy_config import config_file, remove_section
    from modelimport.apps.sync import forget_app
    from modelimport.apps.targets import load_targets, remove_target

    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False) if _library_exists(opts) else None
    by_config = next((t for t in load_targets() if t.name == name and t.via == "config"), None)
    changes = []
    if opened is not None:
        changes = forget_app(opened.library, opened.db, name, unlink=unlink)
    section_removed = by_config is not None and unlink and remove_section(by_config)
    removed = remove_target(name)
    data = {
        "app": removed.to_json(),
        "changes": [c.to_json() for c in changes],
        "config_section_removed": section_removed,
    }

    def render(console: Console) -> None:
        gone = sum(1 for c in changes if c.action == "removed")
        tail = f"; removed {gone} link(s)" if unlink else "; its links were left in place"
        if by_config is not None:
            file = config_file(by_config)
            tail = (
                f"; its section of {file} was removed" if section_removed
                else f"; its section of {file} was left in place (--unlink removes it)"
            )  # fmt: skip
        console.print(f"Removed app {name}{tail}.", markup=False)
        for c in changes:
            if c.action not in ("removed", "forgotten") or (
                unlink and c.reason and c.reason != "already gone"
            ):
                console.print(c.sentence(), markup=False)

    out.result(data, render)


def _library_exists(opts: GlobalOptions) -> bool:
    from modelimport.config import resolve_library_root
    from modelimport.library.layout import Library

    return Library(resolve_library_root(opts.library)).exists


SYNC_EXAMPLES = """
Examples:

  modelimport sync

  modelimport sync --app comfy --dry-run

  modelimport sync --json
"""


@app.command("sync", epilog=SYNC_EXAMPLES)
@global_options("library", "json", "verbose")
def sync_command(
    opts: GlobalOptions,
    app_name: Annotated[
        str | None,
        typer.Option("--app", metavar="NAME", help="Only this app (default: every app)."),
    ] = None,
    dry_run: Annotated[
        bool, flag("--dry-run", help="Say what would change; change nothing.")
    ] = False,
) -> None:
    """Link the library into the apps: create missing links, repair broken, remove stale.

    Only links modelimport made (its registry in the index) are ever repaired or removed;
    a file or link it did not create is reported and left untouched.
    """
    from modelimport.apps import sync
    from modelimport.cli.progress import progress_sink

    out = Output(opts.json, opts.verbose)
    opened = open_for(opts, out, create=False, read_only_ok=dry_run)
    with progress_sink(opts.json, out.err) as sink:
        report = sync(opened.library, opened.db, app_name, dry_run, sink)
    data = report.to_json()

    def render(console: Console) -> None:
        verb = "Would change" if dry_run else "Changed"
        shown = [c for c in report.changes if c.action != "adopted" or opts.verbose]
        for c in shown:
            prefix = "would be " if dry_run else ""
            line = f"{c.app}: {prefix}{c.action} {c.link_path}"
            console.print(line + (f" ({c.reason})" if c.reason else ""), markup=False)
        for written in report.configs:
            if written["result"] != "unchanged":
                console.print(f"{written['app']}: {written['result']} {written['file']}",
                              markup=False)  # fmt: skip
        s = data["summary"]
        ok = sum(c.ok for c in report.counts.values())
        if not report.counts and not report.changes:
            summary = "No apps registered; `modelimport apps add --help` shows how."
        elif not any(s[a] for a in ("created", "repaired", "removed", "skipped", "failed")):
            summary = f"Nothing to change: {ok} link(s) in order."
        else:
            summary = (
                f"{verb}: {s['created']} created, {s['repaired']} repaired, "
                f"{s['removed']} removed; {s['skipped']} skipped, {s['failed']} failed."
            )
        console.print(summary, markup=False)
        for problem in report.problems:
            console.print(problem, markup=False)

    out.result(data, render)
    raise typer.Exit(1 if report.count("failed") or report.problems else 0)


REMOVE_EXAMPLES = """
Examples:

  modelimport remove lora/sdxl/add-detail-xl

  modelimport remove llm/llama/llama-3-70b-q4_k_m --yes

  modelimport remove lora/sdxl/add-detail-xl --keep-files
"""


@app.command("remove", epilog=REMOVE_EXAMPLES)
@global_options("library", "json", "yes")
def remove_command(
    opts: GlobalOptions,
    model_ids: ModelIdsArg,
    keep_files: Annotated[
        bool,
        flag(
            "--keep-files",
            help="Keep the model's files: they are moved to ./<slug>/ in the current folder "
            "instead of deleted (its metadata, index rows and links still go).",
        ),
    ] = False,
) -> None:
    """Remove models: their files, metadata, index rows and app links.

    Every file of the model goes (all shards, every bundle file). A file with other hard
    links is named first: deleting it frees no space until they go too.
    """
    from modelimport.library.removal import plan_removal, remove_models

    out = Output(opts.json, opts.verbose)
    if not opts.yes and not out.interactive:
        raise UsageError("No terminal to ask for confirmation; pass --yes to remove.")
    opened = open_for(opts, out, create=False)
    plans = plan_removal(opened, model_ids)
    for plan in plans:
        if keep_files:
            plan.warnings.clear()  # nothing is deleted: no space question
        for warning in plan.warnings:
            out.err.print(f"Warning: {warning}", markup=False)
    todo = [p for p in plans if not p.error]
    if todo and not opts.yes:
        for p in todo:
            out.err.print(
                f"{p.model_id}: {len(p.files)} file(s), {human_size(p.size)}, "
                f"{len(p.links)} app link(s)",
                markup=False,
            )
        what = "Remove from the library (files kept)" if keep_files else "Delete"
        if not typer.confirm(f"{what} {len(todo)} model(s)?", default=False, err=True):
            out.info("Nothing removed.")
            raise typer.Exit(1 if len(todo) < len(plans) else 0)
    results = remove_models(opened, plans, Path.cwd() if keep_files else None)

    def render(console: Console) -> None:
        for r in results:
            if r["status"] == "failed":
                console.print(f"{r['model_id']}: {r['error']}", markup=False)
                continue
            kept = f", files kept in {r['kept_in']}" if r.get("kept_in") else ""
            console.print(
                f"Removed {r['model_id']}: {len(r['files'])} file(s), "
                f"{len(r['links_removed'])} link(s){kept}.",
                markup=False,
            )
            for left in r.get("links_left") or []:
                console.print(f"  {left}", markup=False)

    out.result({"results": results}, render)
    raise typer.Exit(1 if any(r["status"] == "failed" for r in results) else 0)


@app.command(
    "show",
    epilog="Examples:\n\n  modelimport show lora/sdxl/add-detail-xl\n\n  "
    "modelimport show llm/llama/llama-3-8b-instruct-q4_k_m --json",
)
@global_options("library", "json")
def show_command(
    opts: GlobalOptions,
    model_id: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_ID",
            help="The model (type/family/slug, as `list` shows it).",
            autocompletion=complete_model_id,
        ),
    ],
) -> None:
    """Show one model: its record, its files and where they are, its app links, its trust."""
    from modelimport.library.maintenance import model_details

    out = Output(opts.json, opts.verbose)
    data = model_details(open_for(opts, out, create=False, read_only_ok=True), model_id)
    out.result(data, lambda console: _render_show(console, data))


SHOW_FIELDS = (
    "official_name", "cleaned_name", "model_type", "family", "precision", "variant",
    "repo_id", "match_method", "match_confidence", "match_source", "pending_online_lookup",
    "pickle_needs_classes",  # a weights-only loader refuses it: these classes are needed
    "added_at", "updated_at",
)  # fmt: skip


def _render_show(console: Console, data: dict[str, Any]) -> None:
    record = data["record"]
    p = console.print
    p(f"{data['model_id']}", markup=False)
    p(f"  path: {data['path']}", markup=False)
    trust = data["trust_level"] or (
        "manual (a person's record; not looked up)" if record.get("match_source") == "manual"
        else "lookup pending" if record.get("pending_online_lookup") else "-"
    )
    p(f"  trust: {trust}", markup=False)
    if record.get("unsafe_pickle"):  # imported only because --allow-unsafe-pickle was given
        scan = (record.get("file_says") or {}).get("pickle_scan") or {}
        calls = ", ".join(scan.get("dangerous") or [])
        unknown = ", ".join(scan.get("unknown") or []) or "unvettable globals"
        p(f"  pickle: UNSAFE, would run code when loaded ({calls})" if calls else
          f"  pickle: REFUSED by the scan, imports what is not known harmless ({unknown})",
          markup=False)
    for key in SHOW_FIELDS:
        value = record.get(key)
        if value not in (None, "", [], False):
            p(f"  {key}: {value}", markup=False)
    p(f"Files ({len(data['files'])}):", markup=False)
    for f in data["files"]:
        missing = "" if f["present"] else "  [MISSING]"
        p(f"  {f['path']}  {human_size(int(f.get('size') or 0))}{missing}", markup=False)
        if f.get("sha256"):
            p(f"    sha256 {f['sha256']}", markup=False)
    p(f"Links ({len(data['links'])}):", markup=False)
    for link in data["links"]:
        p(f"  {link['app']}: {link['link_path']} ({link['kind']}, {link['state']})", markup=False)
