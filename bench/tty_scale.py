"""Progress at scale: 5,000 small files imported with --yes on a terminal and in a pipe.

    python bench/tty_scale.py                      # 5,000 x 16 KiB, 2 rounds (A B A B)
    python bench/tty_scale.py --count 1000 --repeat 3

The same `modelimport import DIR --yes --offline` runs with stdout and stderr on a
pseudo-terminal (live progress area, Rich) and on pipes (plain lines), alternating, into a
fresh library each time. The terminal run must be within 10 % of the piped one: drawing
progress must not cost more per file as the batch grows (before the live area was bounded,
every file added a bar that was never removed: 20x slower at 300 files, 120x at 1,500).
Peak memory is compared with a batch a tenth the size: it must stay flat.
The pseudo-terminal is 120x40 and is read continuously, as a terminal emulator would.
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MODELIMPORT,
    Run,
    bench_env,
    filesystem,
    machine,
    parse_size,
    rm,
    sync,
    workdir,
    write_safetensors,
)

COLS, ROWS = 120, 40


def make_sources(folder: Path, count: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        write_safetensors(folder / f"lora-{n:05d}.safetensors", size, seed=n.to_bytes(8, "big"))


def _drain(fd: int, sink: list[int]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        sink[0] += len(chunk)


def run_import(source: Path, library: Path, terminal: bool) -> tuple[Run, int]:
    """One import; returns the run (time, peak RSS) and how many bytes it printed."""
    cmd = [MODELIMPORT, "--library", str(library), "import", str(source), "--yes", "--offline"]
    env = bench_env()
    env.pop("NO_COLOR", None)
    env.update(COLUMNS=str(COLS), LINES=str(ROWS), TERM="xterm-256color")
    printed = [0]
    start = time.perf_counter()
    if terminal:
        master, slave = pty.openpty()
        termios.tcsetwinsize(slave, (ROWS, COLS))
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        reader = threading.Thread(target=_drain, args=(master, printed), daemon=True)
    else:
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        master = proc.stdout.fileno()  # type: ignore[union-attr]
        reader = threading.Thread(target=_drain, args=(master, printed), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    reader.join(timeout=5)
    if terminal:
        os.close(master)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"import failed ({code}) on a {'terminal' if terminal else 'pipe'}")
    return Run(seconds, usage.ru_maxrss, code), printed[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="files (default 5000)")
    parser.add_argument("--size", default="16K", help="size of each file (default 16K)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (default 2: A B A B)")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    args = parser.parse_args()

    size = parse_size(args.size)
    base = workdir(args.dir, "tty-scale")
    small_count = max(args.count // 10, 1)
    print(f"machine: {machine()}")
    print(f"filesystem: {filesystem(base)}; {args.count} files of {args.size}")
    try:
        big, small = base / "src", base / "src-small"
        make_sources(big, args.count, size)
        make_sources(small, small_count, size)
        library = base / "lib"
        times: dict[str, list[float]] = {"terminal": [], "pipe": []}
        rss: dict[str, list[int]] = {"terminal": [], "pipe": []}
        printed: dict[str, int] = {}
        for round_ in range(args.repeat):
            order = ["terminal", "pipe"] if round_ % 2 == 0 else ["pipe", "terminal"]
            for name in order:
                rm(library)
                sync()
                run, out = run_import(big, library, terminal=name == "terminal")
                times[name].append(run.seconds)
                rss[name].append(run.max_rss_kb)
                printed[name] = out
                print(f"  round {round_ + 1}: {name}: {run.seconds:.2f} s, "
                      f"peak RSS {run.max_rss_kb / 1024:.0f} MiB, printed {out / 1024:.0f} KiB",
                      file=sys.stderr, flush=True)
        small_rss = {}
        for name in ("terminal", "pipe"):
            rm(library)
            run, _ = run_import(small, library, terminal=name == "terminal")
            small_rss[name] = run.max_rss_kb
        rm(library)

        t, p = statistics.median(times["terminal"]), statistics.median(times["pipe"])
        ratio = t / p
        print(f"terminal: {' '.join(f'{s:.2f}' for s in times['terminal'])} s (median {t:.2f})")
        print(f"pipe:     {' '.join(f'{s:.2f}' for s in times['pipe'])} s (median {p:.2f})")
        print(f"terminal / pipe: {ratio:.3f} (target <= 1.10) "
              f"{'PASS' if ratio <= 1.10 else 'FAIL'}")
        per_t, per_p = t / args.count * 1000, p / args.count * 1000
        print(f"per file: terminal {per_t:.1f} ms, pipe {per_p:.1f} ms")
        for name in ("terminal", "pipe"):
            peak, peak_small = max(rss[name]) / 1024, small_rss[name] / 1024
            print(f"peak RSS {name}: {peak:.0f} MiB at {args.count} files, "
                  f"{peak_small:.0f} MiB at {small_count} ({peak / peak_small:.2f}x)")
        print(f"printed: terminal {printed['terminal'] / 1024:.0f} KiB, "
              f"pipe {printed['pipe'] / 1024:.0f} KiB")
    finally:
        rm(base)


if __name__ == "__main__":
    main()
