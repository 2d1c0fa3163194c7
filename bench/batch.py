"""Batch import: 1,000 valid safetensors files of 1 MiB in one `modelimport import` run.

    python bench/batch.py                         # 1,000 x 1 MiB, median of 3
    python bench/batch.py --count 200 --size 4M --repeat 5

Prints the total time, the time per file, and the per-file overhead beyond the copy
itself, against two baselines measured in the same run:
  cp -r + sync    cp -r DIR DST && sync (one flush for the whole batch)
  copy+fsync      one Python process copying each file and fsyncing it (an import must
                  make every model durable before its atomic rename, so this is the
                  copy an import cannot avoid)
Each file is a distinct model (random tensor bytes), so none is a duplicate.
"""

from __future__ import annotations

import argparse
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
    parse_size,
    rm,
    run,
    run_shell,
    workdir,
    write_safetensors,
)

COPY_FSYNC = """
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
os.mkdir(dst)
for name in sorted(os.listdir(src)):
    target = os.path.join(dst, name)
    shutil.copyfile(os.path.join(src, name), target)
    fd = os.open(target, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
fd = os.open(dst, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="number of files (1000)")
    parser.add_argument("--size", default="1M", help="size of each file (default 1M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before runs")
    args = parser.parse_args()
    size = parse_size(args.size)

    work = workdir(args.dir, "batch")
    src = work / "downloads"
    src.mkdir()
    for i in range(args.count):
        seed = f"model {i}".encode().ljust(16)
        write_safetensors(src / f"bench-model-{i:04d}.safetensors", size, seed=seed)
    dst = work / "copy"
    lib = work / "library"

    def clean() -> None:
        rm(dst)
        rm(lib)

    def do_import():
        result = run(
            [MODELIMPORT, "--library", lib, "import", src, "--yes", "--offline", "--json"],
            capture=True,
        )
        check_imported(result, args.count)
        return result

    methods = [
        Method("import", clean, do_import),
        Method("cp -r + sync", clean, lambda: run_shell(f"cp -r '{src}' '{dst}' && sync")),
        Method("copy+fsync", clean, lambda: run([sys.executable, "-c", COPY_FSYNC, src, dst])),
    ]
    try:
        measure_rotating(methods, args.repeat, args.cold)
    finally:
        rm(work)

    by = {m.name: m for m in methods}
    imp = by["import"].median
    n = args.count
    print(f"machine: {machine()}; filesystem: {filesystem(work.parent)}")
    print(f"{n} files of {size / 2**20:.2f} MiB; median of {args.repeat}")
    for m in methods:
        print(
            f"  {m.name:<14} {m.median:7.2f} s  {m.median / n * 1000:6.2f} ms/file  "
            f"runs: {m.times()}"
        )
    for base in ("cp -r + sync", "copy+fsync"):
        extra = (imp - by[base].median) / n * 1000
        print(f"import overhead beyond {base:<13} = {extra:6.2f} ms/file   (must be < 20)")
    print(f"import peak RSS = {by['import'].max_rss_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main()
