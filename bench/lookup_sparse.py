"""Benchmark: `modelimport lookup` on a 20 GB file reads at most 16 MiB of it.

Creates a sparse 20 GB safetensors file (valid header, holes for data) named like a file of a
fake Hub repo, starts the fake Hub with 50 ms latency per call, runs the real CLI in a
subprocess and reports wall time, Hub calls and bytes read. Bytes read come from the child's
/proc/self/io `rchar` at exit, minus a baseline run of the same command on a 1 MiB file
(interpreter and module reads), so the figure is what reading the model file cost.

Run from the repo root (Linux, a filesystem with sparse files):

    .venv/bin/python bench/lookup_sparse.py [--size-gb 20] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakehub import FakeHub  # noqa: E402

FAST_HASH_BYTES = 16 * 1024 * 1024
# The format reader and probe read the header (bytes to kilobytes) besides the fast hash.
LIMIT = FAST_HASH_BYTES + 64 * 1024
SMALL = 4096
REPO = "bench-org/Bench-Model-70B-Instruct"
NAME = "Bench-Model-70B-Instruct.safetensors"

CHILD = (
    "import atexit, sys\n"
    "out = sys.argv[1]\n"
    "atexit.register(lambda: open(out, 'w').write(open('/proc/self/io').read()))\n"
    "sys.argv = ['modelimport', *sys.argv[2:]]\n"
    "from modelimport.cli.app import main\n"
    "main()\n"
)


def sparse_safetensors(path: Path, size: int) -> None:
    """A valid safetensors header for one U8 tensor filling the file; the data is a hole."""
    header = b""
    for _ in range(3):  # the header length depends on the numbers in it; settle it
        data_len = size - 8 - len(header)
        meta = {"w": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}}
        header = json.dumps(meta).encode()
        header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        fh.truncate(size)


def run_lookup(path: Path, env: dict[str, str], workdir: Path) -> tuple[float, int, dict]:
    io_file = workdir / "io.txt"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(io_file), "lookup", str(path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"lookup failed ({proc.returncode}): {proc.stderr.strip()}")
    io = dict(line.split(": ") for line in io_file.read_text().splitlines())
    return elapsed, int(io["rchar"]), json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    size = int(args.size_gb * 1000**3)

    with tempfile.TemporaryDirectory() as tmp, FakeHub() as hub:
        work = Path(tmp)
        big = work / "big" / NAME
        small = work / "small" / NAME
        big.parent.mkdir()
        small.parent.mkdir()
        sparse_safetensors(big, size)
        sparse_safetensors(small, SMALL)
        hub.add_repo(REPO, {NAME: (size, "ab" * 32)}, downloads=100)
        hub.latency = args.latency
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELIMPORT_"))}
        env.update(
            HF_ENDPOINT=hub.url,
            HF_HOME=str(work / "hf-home"),
            NO_COLOR="1",
            PYTHONPATH=str(ROOT / "src"),
        )
        env["MODELIMPORT_CACHE_DIR"] = str(work / "cache-baseline")
        _, base_rchar, _ = run_lookup(small, env, work)
        hub.reset_counts()
        env["MODELIMPORT_CACHE_DIR"] = str(work / "cache-big")
        elapsed, rchar, report = run_lookup(big, env, work)
        calls = hub.total
        log = list(hub.log)

    result = report["results"][0]
    model_read = max(0, rchar - base_rchar + SMALL)  # the baseline read its whole small file
    print(f"file size          {size / 1000**3:.1f} GB = {size / 1024**3:.1f} GiB (sparse)")
    print(f"hub latency        {args.latency * 1000:.0f} ms per call, {calls} calls")
    print(f"answer             {result['trust']} {result['repo_id']} ({result['status']})")
    print(f"wall time          {elapsed:.2f} s (CLI start-up included)")
    total, base = rchar / 2**20, base_rchar / 2**20
    print(f"bytes read         {total:.1f} MiB total, baseline run {base:.1f} MiB")
    print(f"model file read    {model_read:,} bytes = {model_read / 2**20:.3f} MiB "
          f"(fast hash reads exactly {FAST_HASH_BYTES:,})")
    print(f"ratio              1 : {size / max(model_read, 1):,.0f} of the file read")
    if model_read > LIMIT:
        raise SystemExit("FAIL: lookup read more than 16 MiB (+ header) of the model file")
    print("calls              " + ", ".join(f"{e} {p.split('?')[0]}" for e, p in log))
    print("OK")


if __name__ == "__main__":
    main()
