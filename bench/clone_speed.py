"""On a filesystem that can clone (XFS with reflink, btrfs): the import's clone + one hashing
read, against a real copy.

    python bench/clone_speed.py --dir /mnt/xfs            # 2 GiB, median of 5, cold cache
    python bench/clone_speed.py --dir /mnt/xfs --warm --size 8G

Methods (each ends with the data durable):
  import          modelimport import --yes --offline: clones, then hashes the clone
  import, copy    the same import with cloning switched off (hashing.CLONE = False): the
                  pipelined copy, what the import does on ext4
  cp+sync         cp --reflink=never, then sync: a plain copy
  sha256 floor    one process reading the file for SHA256 only
and the space each leaves used on the filesystem.

The default is a cold cache (the source read from disk, as when importing files that have
sat on a disk for a while); `--warm` keeps the source cached. Needs root for --cold.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
    sync,
    workdir,
    write_safetensors,
)
from import_speed import SHA_FLOOR  # noqa: E402

IMPORT_NO_CLONE = """
import sys
from modelimport import hashing
from modelimport.cli.app import main
hashing.CLONE = False
sys.argv = ["modelimport", *sys.argv[1:]]
main()
"""

def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2G", help="file size (default 2G)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per method (default 5)")
    parser.add_argument("--dir", required=True, help="a folder on XFS (reflink=1) or btrfs")
    parser.add_argument("--warm", action="store_true", help="keep the source in the cache")
    args = parser.parse_args()
    size = parse_size(args.size)

    work = workdir(args.dir, "clone-speed")
    src = write_safetensors(work / "bench-model.safetensors", size)
    lib, dst = work / "library", work / "copy.safetensors"
    space: dict[str, int] = {}

    def clean() -> None:
        rm(lib)
        rm(dst)
        sync()
        time.sleep(1)  # XFS frees deleted files' blocks in the background
        sync()
        space["before"] = used_bytes(work)

    def after(name: str, result):
        sync()
        space[name] = used_bytes(work) - space["before"]
        return result

    def do_import(cmd: list) -> object:
        result = run(
            cmd + ["--library", lib, "import", src, "--yes", "--offline", "--json"], capture=True
        )
        check_imported(result, 1)
        return result

    methods = [
        Method("import", clean, lambda: after("import", do_import([MODELIMPORT]))),
        Method(
            "import, copy",
            clean,
            lambda: after("import, copy", do_import([sys.executable, "-c", IMPORT_NO_CLONE])),
        ),
        Method(
            "cp+sync",
            clean,
            lambda: after(
                "cp+sync", run_shell(f"cp --reflink=never '{src}' '{dst}' && sync '{dst}'")
            ),
        ),
        Method(
            "sha256 floor",
            clean,
            lambda: after("sha256 floor", run([sys.executable, "-c", SHA_FLOOR, src])),
        ),
    ]
    try:
        measure_rotating(methods, args.repeat, cold=not args.warm)
    finally:
        rm(work)

    by = {m.name: m for m in methods}
    print(f"machine: {machine()}; filesystem: {filesystem(work.parent)}")
    print(
        f"file: {size / 2**30:.2f} GiB; median of {args.repeat}; "
        f"cache: {'warm source, synced' if args.warm else 'cold (dropped before each run)'}"
    )
    for m in methods:
        print(
            f"  {m.name:<14} {m.median:7.2f} s   space used {space[m.name] / 2**20:8.1f} MiB"
            f"   runs: {m.times()}"
        )
    print(f"import (clone) / import (copy) = {by['import'].median / by['import, copy'].median:.2f}")
    print(f"import (clone) / cp+sync       = {by['import'].median / by['cp+sync'].median:.2f}")
    print(f"import (clone) / sha256 floor  = {by['import'].median / by['sha256 floor'].median:.2f}")


if __name__ == "__main__":
    main()
