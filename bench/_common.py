"""Shared helpers for the benchmarks in bench/ (standard library only, no network).

Every benchmark runs the real `modelimport` CLI in a subprocess with HF_HUB_OFFLINE=1 and a
temporary library passed with `--library`, and compares it with a baseline measured in the
same run. Runs of the methods being compared alternate (the order rotates every round), and
the figure reported is the median.

Cache policy (see bench/RESULTS.md): by default every run starts after `sync`, with the
source warm in the page cache and no dirty pages left by the previous run; every method
that writes ends with the data on disk (fsync), as an import does before its atomic rename.
`--cold` also drops the page cache before each run (root only), so sources come from disk.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1024**3
MiB = 1024**2

MODELIMPORT = shutil.which("modelimport") or "modelimport"


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("MODELIMPORT_FAULTS", None)
    env.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")  # belt and braces: nothing listens
    return env


def workdir(base: str | None, name: str) -> Path:
    """A temporary directory (on the filesystem of `base`, default the system temp dir)."""
    return Path(tempfile.mkdtemp(prefix=f"modelimport-{name}-", dir=base))


def write_safetensors(path: Path, size: int, seed: bytes | None = None) -> Path:
    """A valid safetensors file of exactly `size` bytes: one U8 tensor of random bytes.

    The header is padded so the data starts 4 KiB-aligned. Random data (not zeros) so no
    layer can compress or skip it; `seed` makes small files of equal size differ cheaply.
    """
    header_room = 4096
    n = size - header_room
    if n < 1:
        raise ValueError("size must be above 4 KiB")
    header = json.dumps({"weight": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}})
    raw = header.encode()
    raw += b" " * (header_room - 8 - len(raw))
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        if seed is not None:
            fh.write(seed + os.urandom(n - len(seed)))
            return path
        left = n
        while left:  # fresh random bytes for every block: no two regions are equal
            piece = os.urandom(min(left, 64 * MiB))
            fh.write(piece)
            left -= len(piece)
    return path


def sync() -> None:
    os.sync()


def drop_caches() -> bool:
    """Drop the page cache (needs root); False where that is not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        return False
    return True


@dataclass
class Run:
    seconds: float
    max_rss_kb: int
    returncode: int
    stdout: str = ""


def run(cmd: Sequence[str | Path], check: bool = True, capture: bool = False) -> Run:
    """Run a command; wall time and the child's peak RSS (from wait4's rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        env=bench_env(),
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = proc.stdout.read().decode() if capture and proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}")
    return Run(seconds, usage.ru_maxrss, proc.returncode, out)


def run_shell(script: str) -> Run:
    return run(["sh", "-c", script])


def check_imported(result: Run, expected: int) -> None:
    data = json.loads(result.stdout)
    summary = data["summary"]
    if summary["imported"] != expected:
        raise SystemExit(f"import did not import {expected} models: {summary}")


@dataclass
class Method:
    name: str
    prepare: Callable[[], None]
    measure: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def max_rss_kb(self) -> int:
        return max(r.max_rss_kb for r in self.runs)

    def times(self) -> str:
        return " ".join(f"{r.seconds:.2f}" for r in self.runs)


def measure_rotating(methods: list[Method], repeat: int, cold: bool) -> None:
    """`repeat` rounds; round r starts with method r mod len(methods) (fair ordering)."""
    for round_ in range(repeat):
        order = methods[round_ % len(methods) :] + methods[: round_ % len(methods)]
        for method in order:
            method.prepare()
            if cold:
                drop_caches()
            else:
                sync()
            method.runs.append(method.measure())
            print(
                f"  round {round_ + 1}: {method.name}: {method.runs[-1].seconds:.2f} s",
                file=sys.stderr,
                flush=True,
            )


def rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {cpu}, Python {sys.version.split()[0]}"


def filesystem(path: Path) -> str:
    out = subprocess.run(
        ["df", "-T", str(path)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return out[-1].split()[1] if len(out) > 1 else "?"
