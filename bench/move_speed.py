"""Same-filesystem `modelimport import --move` against `cp` of the same file.

    python bench/move_speed.py                    # 2 GiB, median of 5, warm source
    python bench/move_speed.py --size 8G --dir /mnt/data --cold

Baselines: cp+sync, cp (no fsync) and dd direct, as in import_speed.py.
A move on one filesystem is a rename, but the import still reads the whole file once for
SHA256 and BLAKE3 (the hashes identify the model and are recorded). So the bound is the
time of SHA256 over the file, printed as `sha256 floor`: move / cp can only be <= 0.5
where SHA256 runs at more than twice the speed of a copy on this disk.

Before each run the source is re-created by copying a master file (not timed, then sync).
"""

from __future__ import annotations

import argparse
import shutil
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
from import_speed import DD_DIRECT, SHA_FLOOR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2G", help="file size (default 2G)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per method (default 5)")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before runs")
    args = parser.parse_args()
    size = parse_size(args.size)

    work = workdir(args.dir, "move-speed")
    master = write_safetensors(work / "master.safetensors", size)
    src = work / "bench-model.safetensors"
    dst = work / "copy.safetensors"
    lib = work / "library"

    def fresh_source() -> None:
        rm(lib)
        rm(dst)
        if not src.exists():
            shutil.copyfile(master, src)

    def do_move():
        result = run(
            [MODELIMPORT, "--library", lib, "import", src, "--move", "--yes", "--offline"]
            + ["--json"],
            capture=True,
        )
        check_imported(result, 1)
        if src.exists():
            raise SystemExit("--move left the source in place")
        return result

    methods = [
        Method("move", fresh_source, do_move),
        Method("cp+sync", fresh_source, lambda: run_shell(f"cp '{src}' '{dst}' && sync '{dst}'")),
        Method("cp", fresh_source, lambda: run(["cp", src, dst])),
        Method("dd direct", fresh_source, lambda: run_shell(DD_DIRECT.format(src=src, dst=dst))),
        Method("sha256 floor", fresh_source, lambda: run([sys.executable, "-c", SHA_FLOOR, src])),
    ]
    try:
        measure_rotating(methods, args.repeat, args.cold)
    finally:
        rm(work)

    by = {m.name: m for m in methods}
    move = by["move"].median
    cp_sync = by["cp+sync"].median
    print(f"machine: {machine()}; filesystem: {filesystem(work.parent)}")
    print(
        f"file: {size / 2**30:.2f} GiB; median of {args.repeat}; "
        f"cache: {'cold (dropped before each run)' if args.cold else 'warm source, synced'}"
    )
    for m in methods:
        print(f"  {m.name:<14} {m.median:7.2f} s   runs: {m.times()}")
    print(f"move / cp+sync         = {move / cp_sync:.2f}   (must be <= 0.5)")
    print(f"move / cp (no fsync)   = {move / by['cp'].median:.2f}")
    print(f"move / dd direct       = {move / by['dd direct'].median:.2f}")
    print(f"sha256 floor / cp+sync = {by['sha256 floor'].median / cp_sync:.2f}   (best possible)")
    print(f"move peak RSS          = {by['move'].max_rss_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main()
