"""Rebuild the catalog of well-known files (src/modelimport/identify/catalog/well_known.json)
and the benchmark's list of real (file -> repo, path) pairs (bench/identify_pairs.json) from
public model lists:

- ComfyUI-Manager's model-list.json (file name, Hub URL, approximate size),
- InvokeAI's starter models (invokeai/backend/model_manager/starter_models.py, Hub URLs and
  `repo::path` sources),
- LM Studio's model catalog (catalog.json: GGUF files with exact sizes).

The catalog keeps only files that a search of their whole name does not find (neither
spelling `modelimport.identify.hub.candidates.whole_name_queries` gives is a substring of the
repo id): for the others the Hub's search is the better, always current source.

    python scripts/refresh_catalog.py                 # fetch the lists from GitHub (network)
    python scripts/refresh_catalog.py --comfyui model-list.json --invokeai starter_models.py \\
        --lmstudio catalog.json                       # or read local copies

Run it, review the diff of well_known.json, commit. Tests and the CLI never fetch anything.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelimport.identify.hub.candidates import whole_name_queries  # noqa: E402
from modelimport.names import MODEL_EXTENSIONS, is_generic_name  # noqa: E402

SOURCES = {
    "comfyui-manager": {
        "url": "https://github.com/ltdrdata/ComfyUI-Manager/blob/main/model-list.json",
        "raw": "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/model-list.json",
    },
    "invokeai-starter-models": {
        "url": "https://github.com/invoke-ai/InvokeAI/blob/main/invokeai/backend/model_manager/"
        "starter_models.py",
        "raw": "https://raw.githubusercontent.com/invoke-ai/InvokeAI/main/invokeai/backend/"
        "model_manager/starter_models.py",
    },
    "lmstudio-model-catalog": {
        "url": "https://github.com/lmstudio-ai/model-catalog/blob/main/catalog.json",
        "raw": "https://raw.githubusercontent.com/lmstudio-ai/model-catalog/main/catalog.json",
    },
}
HF_FILE_URL = re.compile(
    r"^https://huggingface\.co/([\w.-]+/[\w.-]+)/(?:resolve|blob)/[^/]+/(.+?)(?:\?.*)?$"
)
SIZE = re.compile(r"^\s*([\d.]+)\s*([KMGT]?B)\s*$", re.I)
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}

CATALOG = ROOT / "src/modelimport/identify/catalog/well_known.json"
PAIRS = ROOT / "bench/identify_pairs.json"


def read(source: str, local: str | None) -> str:
    if local:
        return Path(local).read_text(encoding="utf-8")
    with urllib.request.urlopen(SOURCES[source]["raw"], timeout=30) as answer:
        return answer.read().decode("utf-8")


def approx_size(text: str) -> int | None:
    match = SIZE.match(text or "")
    if not match:
        return None
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def comfyui_entries(text: str) -> list[dict]:
    entries = []
    for model in json.loads(text).get("models", []):
        match = HF_FILE_URL.match(model.get("url", ""))
        if not match:
            continue
        repo, path = match.group(1), unquote(match.group(2))
        entries.append(
            {
                "name": path.rsplit("/", 1)[-1],
                "repo": repo,
                "path": path,
                "approx_size": approx_size(model.get("size", "")),
                "type": model.get("type"),
                "source": "comfyui-manager",
            }
        )
    return entries


def invokeai_entries(text: str) -> list[dict]:
    entries = []
    for raw in re.findall(r'source="([^"]+)"', text):
        match = HF_FILE_URL.match(raw)
        if match:
            repo, path = match.group(1), unquote(match.group(2))
        elif "::" in raw and "/" in raw.split("::")[0]:
            repo, path = raw.split("::", 1)
            if "/" not in path and "." not in path:
                continue  # `repo::bfloat16` names a variant, not a file
        else:
            continue
        entries.append(
            {
                "name": path.rsplit("/", 1)[-1],
                "repo": repo,
                "path": path,
                "source": "invokeai-starter-models",
            }
        )
    return entries


def lmstudio_entries(text: str) -> list[dict]:
    entries = []
    for model in json.loads(text):
        for item in model.get("files", {}).get("all", []):
            match = HF_FILE_URL.match(item.get("url", ""))
            if not match:
                continue
            entries.append(
                {
                    "name": item["name"],
                    "repo": match.group(1),
                    "path": unquote(match.group(2)),
                    "size": item.get("sizeBytes"),
                    "source": "lmstudio-model-catalog",
                }
            )
    return entries


def findable_by_name(name: str, repo: str) -> bool:
    """Does a search of the whole name (either spelling) find the repo? Shorter queries
    may too, but each costs a call of the budget: the catalog saves them."""
    return any(query.lower() in repo.lower() for query in whole_name_queries(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", help="local copy of ComfyUI-Manager's model-list.json")
    parser.add_argument("--invokeai", help="local copy of InvokeAI's starter_models.py")
    parser.add_argument("--lmstudio", help="local copy of LM Studio's catalog.json")
    parser.add_argument("--revision", action="append", default=[],
                        help="SOURCE=COMMIT the local copies were taken at (recorded)")
    args = parser.parse_args()
    revisions = dict(r.split("=", 1) for r in args.revision)
    entries = (
        comfyui_entries(read("comfyui-manager", args.comfyui))
        + invokeai_entries(read("invokeai-starter-models", args.invokeai))
        + lmstudio_entries(read("lmstudio-model-catalog", args.lmstudio))
    )
    entries = [
        e for e in entries
        if e["name"].lower().endswith(MODEL_EXTENSIONS) and not is_generic_name(e["name"])
    ]
    sources = {
        key: {"url": value["url"], **({"commit": revisions[key]} if key in revisions else {})}
        for key, value in SOURCES.items()
    }

    catalog, seen = [], set()
    for e in entries:
        key = (e["name"].lower(), e["repo"], e["path"])
        if key in seen or findable_by_name(e["name"], e["repo"]):
            continue
        seen.add(key)
        item = {"name": e["name"], "repo": e["repo"], "path": e["path"], "source": e["source"]}
        if e.get("size"):
            item["size"] = e["size"]
        catalog.append(item)
    catalog.sort(key=lambda item: (item["name"].lower(), item["repo"]))
    CATALOG.write_text(
        json.dumps({"sources": sources, "files": catalog}, indent=1, ensure_ascii=False) + "\n"
    )

    pairs, seen = [], set()
    for e in entries:
        key = (e["name"].lower(), e["repo"])
        size = e.get("size") or e.get("approx_size")
        if key in seen or not size:
            continue
        seen.add(key)
        pairs.append(
            {"name": e["name"], "repo": e["repo"], "path": e["path"], "size": size,
             "size_exact": bool(e.get("size")), "type": e.get("type"), "source": e["source"]}
        )
    PAIRS.write_text(
        json.dumps({"sources": sources, "pairs": pairs}, indent=1, ensure_ascii=False) + "\n"
    )
    print(f"{len(catalog)} catalog entries -> {CATALOG.relative_to(ROOT)}")
    print(f"{len(pairs)} benchmark pairs -> {PAIRS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
