"""Linking the library into the apps people use: ComfyUI, A1111/Forge, LM Studio, any folder.

    layouts   where each app kind expects each model type (data tables)
    targets   the configured apps (apps.toml in the user config dir)
    plan      which links a model should have in an app (pure)
    naming    which model's link has which name (one per path, case-folded)
    links     links on disk: state, make (symlink; hard link, junction fallbacks), remove
    report    what linking did: changes, counts per app, the sync report
    serving   how each app is served: links, no links possible (per type), its config
    comfy_config  ComfyUI's extra_model_paths.yaml section (apps add --via config)
    sync      reconcile apps with the library; the functions other packages call

Every link modelimport makes is recorded in the index table `links` (model id, app, link
path, target, kind); only those are ever repaired or removed. A file or link the tool did
not create is never overwritten.
"""

from modelimport.apps.sync import (
    LinkChange,
    SyncReport,
    app_status,
    check_links,
    link_new_models,
    relink_model,
    sync,
    unlink_model,
)

__all__ = [
    "LinkChange",
    "SyncReport",
    "app_status",
    "check_links",
    "link_new_models",
    "relink_model",
    "sync",
    "unlink_model",
]
