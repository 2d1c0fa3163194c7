"""Peak memory of a large batch: LoRA-shaped files imported with --yes, small batch vs large.

    python bench/batch_memory.py                     # 500 vs 5,000 files, 700 tensors each
    python bench/batch_memory.py --count 2000 --tensors 1100 --repeat 2

A batch is planned whole before the first file is copied (the review shows every item), so
what the plan keeps per model decides how memory grows with the batch. Real LoRAs carry
about 700 tensors in their header (SD 1.x kohya LoRAs 528-792, SDXL ones up to ~2,200), so
the files here have that many tiny tensors with kohya-style names and a little metadata;
their data is random. `import DIR --yes --offline` runs in a pipe into a fresh library, the
small batch (a tenth) and the large one alternating (A B A B); the peak RSS of each is
printed with the growth per model. Flat means the large batch's peak stays close to the
small one's: what grows per model is the record, not the file's tensor table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODELIMPORT, bench_env, filesystem, machine, rm, sync, workdir  # noqa: E402

BLOCKS = ("down_blocks", "mid_block", "up_blocks")


def write_lora_shaped(path: Path, tensors: int, seed: int) -> None:
    """A valid safetensors file with `tensors` F16 [4, 4] tensors named like a kohya LoRA's."""
    header: dict[str, object] = {}
    offset = 0
    for n in range(tensors):
        block = BLOCKS[n % 3]
        name = (f"lora_unet_{block}_{n // 60}_attentions_{n % 2}_transformer_blocks_"
                f"{n % 10}_attn{1 + n % 2}_to_{'qkv'[n % 3]}.lora_{'down' if n % 2 else 'up'}"
                f".weight_{n}")
        header[name] = {"dtype": "F16", "shape": [4, 4], "data_offsets": [offset, offset + 32]}
        offset += 32
    header["__metadata__"] = {"ss_network_dim": "16", "ss_network_alpha": "8",
                              "ss_output_name": f"lora-{seed}"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + os.urandom(offset))


def make_sources(folder: Path, count: int, tensors: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        write_lora_shaped(folder / f"lora-{n:05d}.safetensors", tensors, n)


def peak_rss(source: Path, library: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one piped import of `source` into a fresh `library`."""
    rm(library)
    sync()
    cmd = [MODELIMPORT, "--library", str(library), "import", str(source), "--yes", "--offline"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=bench_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"import of {source} failed")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="files (default 5000)")
    parser.add_argument("--tensors", type=int, default=700, help="tensors per file (700)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (default 2: A B A B)")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    args = parser.parse_args()

    base = workdir(args.dir, "batch-memory")
    small_count = max(args.count // 10, 1)
    print(f"machine: {machine()}")
    print(f"filesystem: {filesystem(base)}; {small_count} vs {args.count} files of "
          f"{args.tensors} tensors")
    try:
        small, large, library = base / "small", base / "large", base / "lib"
        make_sources(small, small_count, args.tensors)
        make_sources(large, args.count, args.tensors)
        peaks: dict[str, list[float]] = {"small": [], "large": []}
        for round_ in range(args.repeat):
            for name, source in (("small", small), ("large", large)):
                seconds, mib = peak_rss(source, library)
                peaks[name].append(mib)
                print(f"  round {round_ + 1}: {name}: {seconds:.1f} s, peak RSS {mib:.0f} MiB",
                      file=sys.stderr, flush=True)
        rm(library)
        low, high = statistics.median(peaks["small"]), statistics.median(peaks["large"])
        per_model = (high - low) * 1024 / (args.count - small_count)
        print(f"peak RSS: {low:.0f} MiB at {small_count} files, {high:.0f} MiB at "
              f"{args.count} ({high / low:.2f}x); {per_model:.1f} KiB more per model")
    finally:
        rm(base)


if __name__ == "__main__":
    main()
