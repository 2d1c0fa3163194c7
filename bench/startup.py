"""Start-up: `modelimport --help` against `python -c "import typer"` (median of many runs).

    python bench/startup.py                       # 21 runs each, alternating
    python bench/startup.py --repeat 51 --importtime

Also times `modelimport status` on an empty library and `python -c pass` (the interpreter
alone). With --importtime, lists the slowest imports of `modelimport --help`
(python -X importtime), to see what a command pays for before it starts working.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODELIMPORT, Method, bench_env, machine, rm, run, workdir  # noqa: E402


def import_times(top: int) -> list[tuple[int, str]]:
    """Cumulative import time (µs) of the `top` slowest top-level packages of `--help`."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from modelimport.cli.app import main; main()"]
        + ["--help"],
        capture_output=True,
        text=True,
        env=bench_env(),
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[12:].split("|"))
        if cumulative.isdigit() and not name.startswith(" "):
            rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs per method (default 21)")
    parser.add_argument("--importtime", action="store_true", help="list the slowest imports")
    args = parser.parse_args()

    work = workdir(None, "startup")
    lib = work / "library"
    nothing = lambda: None  # noqa: E731
    methods = [
        Method("modelimport --help", nothing, lambda: run([MODELIMPORT, "--help"])),
        Method("import typer", nothing, lambda: run([sys.executable, "-c", "import typer"])),
        Method("python -c pass", nothing, lambda: run([sys.executable, "-c", "pass"])),
        Method("status (empty)", nothing, lambda: run([MODELIMPORT, "--library", lib, "status"])),
    ]
    try:
        # Create the (empty) library once: `status` never creates one.
        (work / "empty").mkdir()
        run([MODELIMPORT, "--library", lib, "import", work / "empty", "--yes", "--offline"])
        for _ in range(args.repeat):  # no sync between runs: nothing is written
            for method in methods:
                method.runs.append(method.measure())
    finally:
        rm(work)

    by = {m.name: m for m in methods}
    bytecode = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(f"machine: {machine()}; bytecode cache writing: {bytecode}")
    print(f"median of {args.repeat}, runs alternating")
    for m in methods:
        print(f"  {m.name:<20} {m.median * 1000:7.1f} ms")
    ratio = by["modelimport --help"].median / by["import typer"].median
    print(f"modelimport --help / import typer = {ratio:.2f}   (must be < 3)")
    ratio = by["status (empty)"].median / by["import typer"].median
    print(f"status (empty) / import typer     = {ratio:.2f}")
    if args.importtime:
        print("slowest imports of `modelimport --help` (cumulative):")
        for micros, name in import_times(12):
            print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
