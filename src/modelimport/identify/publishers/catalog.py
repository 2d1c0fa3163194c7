"""Which publishers the index covers by default, and the evidence for each.

Chosen from evidence, not taste: the image apps' own model downloaders (ComfyUI-Manager's
model list and InvokeAI's starter models, the lists `scripts/refresh_catalog.py` copies into
the shipped catalog) point into these Hub authors; an author the lists name for at least
`MIN_FILES` files is a default publisher, most-named first. The repackagers (Comfy-Org,
comfyanonymous, Kijai, city96) lead that count. LLM quantisers are left out on purpose:
GGUF names follow their repos, so search finds them, and their thousands of repos would
make the index large for nothing.

The list is refreshed with the catalog (same script, same lists); `index update --publisher`
adds others, and `MODELIMPORT_PUBLISHERS` (comma-separated) replaces the default.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import cache
from importlib import resources

from modelimport.identify.hub.candidates import valid_repo_id

PUBLISHERS_ENV = "MODELIMPORT_PUBLISHERS"
IMAGE_APP_LISTS = ("comfyui-manager", "invokeai-starter-models")
MIN_FILES = 2
# LLM quantisers the lists name for an image model or two: their GGUF names follow their
# repos (search finds them) and their thousands of repos would swell the index for nothing.
LLM_QUANTISERS = frozenset({"unsloth", "bartowski", "thebloke", "lmstudio-community",
                            "mradermacher"})


@cache
def publisher_evidence() -> dict[str, int]:
    """Author -> how many files of the image apps' model lists its repos hold, from the
    catalog shipped with the package (never an override: the evidence is ours)."""
    try:
        text = resources.files("modelimport.identify.catalog").joinpath("well_known.json")
        raw = json.loads(text.read_text("utf-8"))
        files = raw["files"] if isinstance(raw, dict) else []
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    counts: Counter[str] = Counter()
    for item in files if isinstance(files, list) else ():
        if not isinstance(item, dict) or item.get("source") not in IMAGE_APP_LISTS:
            continue
        repo = valid_repo_id(item.get("repo"))
        if repo and "/" in repo:
            counts[repo.split("/")[0]] += 1
    return dict(counts.most_common())


def default_publishers() -> list[str]:
    """MODELIMPORT_PUBLISHERS when set, else the authors with at least MIN_FILES files."""
    override = os.environ.get(PUBLISHERS_ENV)
    if override is not None:
        names = [p.strip() for p in override.split(",")]
        return [p for p in dict.fromkeys(names) if p and valid_repo_id(p) and "/" not in p]
    return [
        author
        for author, n in publisher_evidence().items()
        if n >= MIN_FILES and author.lower() not in LLM_QUANTISERS
    ]

