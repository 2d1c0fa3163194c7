"""A library of 10,000 models: `rescan`, `status` and listing times.

    python bench/scale.py                         # 10,000 models, median of 5 (rescan: 3)
    python bench/scale.py --models 50000 --cold

One small file is imported for real to get a genuine metadata.json; it is the template for
10,000 records written in the library layout `<type>/<family>/<slug>/metadata.json` (each
with its own model_id, names, hashes, size; spread over 6 types and 60 families), each
beside a sparse model file of its recorded size (rescan checks that every file is there). The
index is then built by `modelimport rescan`, and timed:
  rescan          modelimport rescan (re-reads every metadata.json, rebuilds the index)
  read-all        one Python process reading and parsing every metadata.json: what rescan
                  is bounded by
  status          modelimport status, and status --json
  list (SQL)      modelimport.library.index.list_models over the whole index, in a fresh process
  list            modelimport list (the table, written to a pipe), and list --json
  --help          modelimport --help: the CLI's fixed start-up cost, for scale
  index check     the check every command makes when it opens the library (does the index
                  list exactly the model folders on disk? maintenance.reconcile_index), timed
                  inside one process, median of 5
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MODELIMPORT,
    Method,
    check_imported,
    filesystem,
    machine,
    measure_rotating,
    rm,
    run,
    workdir,
    write_safetensors,
)

READ_ALL = """
import json, os, sys
root, n = sys.argv[1], 0
for t in sorted(os.scandir(root), key=lambda e: e.name):
    if t.name == ".modelimport" or not t.is_dir():
        continue
    for f in sorted(os.scandir(t.path), key=lambda e: e.name):
        for m in sorted(os.scandir(f.path), key=lambda e: e.name):
            with open(os.path.join(m.path, "metadata.json"), encoding="utf-8") as fh:
                json.load(fh)
            n += 1
print(n)
"""

LIST_SQL = """
import sys
from pathlib import Path
from modelimport.library import index
db = index.connect(Path(sys.argv[1]) / ".modelimport" / "index.sqlite")
rows = index.list_models(db)
assert len(rows) == int(sys.argv[2]), len(rows)
"""

INDEX_CHECK = """
import statistics, sys, time
from pathlib import Path
from modelimport.library import index
from modelimport.library.layout import Library
from modelimport.library.reconcile import index_lists_folders
library = Library(Path(sys.argv[1]))
db = index.connect(library.index_path)
runs = []
for _ in range(5):
    start = time.perf_counter()
    agrees = index_lists_folders(library, db)
    runs.append(time.perf_counter() - start)
    assert agrees
print(statistics.median(runs))
"""

TYPES = ["llm", "checkpoint", "lora", "vae", "text_encoder", "embedding"]


def make_library(lib: Path, count: int, template_src: Path) -> None:
    result = run(
        [MODELIMPORT, "--library", lib, "import", template_src, "--yes", "--offline", "--json"],
        capture=True,
    )
    check_imported(result, 1)
    model_id = json.loads(result.stdout)["results"][0]["model_id"]
    template = json.loads((lib / model_id / "metadata.json").read_text(encoding="utf-8"))
    rm(lib / model_id.split("/")[0])  # the real model goes; its record is the template
    for i in range(count):
        model_type = TYPES[i % len(TYPES)]
        family = f"family{i % 60:02d}"
        slug = f"bench-model-{i:05d}"
        meta = json.loads(json.dumps(template))
        meta["model_id"] = f"{model_type}/{family}/{slug}"
        meta["model_type"] = model_type
        meta["family"] = family
        for key in ("official_name", "cleaned_name"):
            if key in meta:
                meta[key] = slug
        for entry in meta.get("files", []):
            entry["name"] = f"{slug}.safetensors"
            entry["size"] = 1_000_000 + i
            entry["sha256"] = secrets.token_hex(32)
            entry["blake3"] = secrets.token_hex(32)
        folder = lib / model_type / family / slug
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for entry in meta.get("files", []):  # sparse files of the recorded size: rescan stats them
            with open(folder / entry["name"], "wb") as fh:
                fh.truncate(entry["size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=10_000, help="number of models (10000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per method (default 5)")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before runs")
    args = parser.parse_args()

    work = workdir(args.dir, "scale")
    lib = work / "library"
    n = args.models
    try:
        make_library(lib, n, write_safetensors(work / "template-model.safetensors", 64 * 1024))
        run([MODELIMPORT, "--library", lib, "rescan"])  # build the index once
        nothing = lambda: None  # noqa: E731
        rescans = [
            Method("rescan", nothing, lambda: run([MODELIMPORT, "--library", lib, "rescan"]))
        ]
        others = [
            Method("read-all", nothing, lambda: run([sys.executable, "-c", READ_ALL, lib])),
            Method("status", nothing, lambda: run([MODELIMPORT, "--library", lib, "status"])),
            Method(
                "status --json",
                nothing,
                lambda: run([MODELIMPORT, "--library", lib, "status", "--json"]),
            ),
            Method(
                "list (SQL)", nothing, lambda: run([sys.executable, "-c", LIST_SQL, lib, str(n)])
            ),
            Method("list", nothing, lambda: run([MODELIMPORT, "--library", lib, "list"])),
            Method(
                "list --json",
                nothing,
                lambda: run([MODELIMPORT, "--library", lib, "list", "--json"]),
            ),
            Method("--help", nothing, lambda: run([MODELIMPORT, "--help"])),
        ]
        measure_rotating(rescans, max(1, min(args.repeat, 3)), args.cold)
        measure_rotating(others, args.repeat, args.cold)
        status = run([MODELIMPORT, "--library", lib, "status", "--json"], capture=True)
        counted = json.loads(status.stdout)["models"]
        if counted != n:
            raise SystemExit(f"status counts {counted} models, expected {n}")
        checked = run([sys.executable, "-c", INDEX_CHECK, lib], capture=True)
        index_check = float(checked.stdout.strip())
    finally:
        rm(work)

    by = {m.name: m for m in rescans + others}
    print(f"machine: {machine()}; filesystem: {filesystem(work.parent)}")
    print(
        f"{n} models; median of {args.repeat} (rescan: {len(by['rescan'].runs)}); "
        f"cache: {'cold (dropped before each run)' if args.cold else 'warm'}"
    )
    for m in rescans + others:
        print(f"  {m.name:<14} {m.median:7.3f} s   runs: {m.times()}")
    print(f"status        = {by['status'].median:.3f} s   (must be < 0.5 s)")
    print(f"rescan        = {by['rescan'].median:.2f} s   (must be < 10 s)")
    print(f"rescan / read-all metadata = {by['rescan'].median / by['read-all'].median:.2f}")
    print(f"list (SQL) of {n} rows = {by['list (SQL)'].median:.3f} s")
    print(f"list of {n} models     = {by['list'].median:.3f} s (table), "
          f"{by['list --json'].median:.3f} s (--json)")
    print(f"index check at open    = {index_check * 1000:.1f} ms "
          f"({index_check / by['status'].median:.0%} of status)")


if __name__ == "__main__":
    main()
