"""Import speed of one big file: `modelimport import` against `cp` and friends.

    python bench/import_speed.py                  # 2 GiB, median of 5, warm source
    python bench/import_speed.py --size 8G --repeat 3 --dir /mnt/data --cold

Methods, each run in a fresh subprocess, each ending with the copy on disk (fsync):
  import          modelimport --library L import FILE --yes --offline --json
  cp+sync         cp FILE DST && sync DST         (the baseline; sync FILE = fsync)
  cp              cp FILE DST                     (no fsync: data may still be in RAM)
  dd direct       dd bs=8M oflag=direct conv=fsync: the disk's own write speed without
                  the page cache (the import writes with O_DIRECT too)
  cp+sha256+b3    cp FILE DST && sync DST && sha256sum DST && b3sum DST (a careful user)
  naive loop      one Python thread: read 8 MiB, SHA256, BLAKE3, write; fsync (the seed)
  sha256 floor    one Python thread: read 8 MiB, SHA256 (no BLAKE3, no write): the bound,
                  since SHA256 of one stream cannot be split across cores

Also prints the import's peak RSS (wait4 rusage of the CLI process).
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

NAIVE = """
import hashlib, os, sys, blake3
src, dst = sys.argv[1], sys.argv[2]
sha, b3 = hashlib.sha256(), blake3.blake3()
with open(src, "rb") as fin, open(dst, "xb") as fout:
    while chunk := fin.read(8 << 20):
        sha.update(chunk)
        b3.update(chunk)
        fout.write(chunk)
    fout.flush()
    os.fsync(fout.fileno())
print(sha.hexdigest(), b3.hexdigest())
"""

DD_DIRECT = "dd if='{src}' of='{dst}' bs=8M oflag=direct conv=fsync status=none"

SHA_FLOOR = """
import hashlib, sys
sha = hashlib.sha256()
with open(sys.argv[1], "rb", buffering=0) as fin:
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    while n := fin.readinto(buf):
        sha.update(view[:n])
print(sha.hexdigest())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2G", help="file size (default 2G)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per method (default 5)")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before runs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    size = parse_size(args.size)

    work = workdir(args.dir, "import-speed")
    src = write_safetensors(work / "bench-model.safetensors", size)
    dst = work / "copy.safetensors"
    lib = work / "library"
    python = sys.executable

    def clean() -> None:
        rm(dst)
        rm(lib)

    def do_import():
        result = run(
            [MODELIMPORT, "--library", lib, "import", src, "--yes", "--offline", "--json"],
            capture=True,
        )
        check_imported(result, 1)
        return result

    methods = [
        Method("import", clean, do_import),
        Method("cp+sync", clean, lambda: run_shell(f"cp '{src}' '{dst}' && sync '{dst}'")),
        Method("cp", clean, lambda: run(["cp", src, dst])),
        Method("dd direct", clean, lambda: run_shell(DD_DIRECT.format(src=src, dst=dst))),
        Method(
            "cp+sha256+b3",
            clean,
            lambda: run_shell(
                f"cp '{src}' '{dst}' && sync '{dst}' && sha256sum '{dst}' && b3sum '{dst}'"
            ),
        ),
        Method("naive loop", clean, lambda: run([python, "-c", NAIVE, src, dst])),
        Method("sha256 floor", clean, lambda: run([python, "-c", SHA_FLOOR, src])),
    ]
    try:
        measure_rotating(methods, args.repeat, args.cold)
    finally:
        clean()
        if not args.keep:
            rm(work)

    by = {m.name: m for m in methods}
    imp = by["import"].median
    print(f"machine: {machine()}; filesystem: {filesystem(work.parent)}")
    print(
        f"file: {size / 2**30:.2f} GiB; median of {args.repeat}; "
        f"cache: {'cold (dropped before each run)' if args.cold else 'warm source, synced'}"
    )
    for m in methods:
        print(f"  {m.name:<14} {m.median:7.2f} s   runs: {m.times()}")
    cp_sync = by["cp+sync"].median
    naive = by["naive loop"].median
    rss_mb = by["import"].max_rss_kb / 1024
    print(f"import / cp+sync       = {imp / cp_sync:.2f}   (must be <= 1.15)")
    print(f"import / cp (no fsync) = {imp / by['cp'].median:.2f}")
    print(f"import / dd direct     = {imp / by['dd direct'].median:.2f}")
    print(f"import / cp+sha256+b3  = {imp / by['cp+sha256+b3'].median:.2f}")
    print(f"naive loop / import    = {naive / imp:.2f}   (must be >= 1.25)")
    print(f"sha256 floor / cp+sync = {by['sha256 floor'].median / cp_sync:.2f}")
    print(f"import throughput      = {size / imp / 1e9:.2f} GB/s")
    print(f"import peak RSS        = {rss_mb:.0f} MB   (must be < 200 MB)")


if __name__ == "__main__":
    main()
