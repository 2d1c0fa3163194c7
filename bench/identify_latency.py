"""Identification at scale: 1,000 files identified against a fake Hub answering each call
after 100 ms, in one `modelimport import --yes` run.

    python bench/identify_latency.py                      # 1,000 files, 100 ms, 2 rounds
    python bench/identify_latency.py --count 300 --latency 0.2 --rate-limit 600/300

The fake Hub (tests/fakehub.py, on 127.0.0.1) holds a realistic mix: 40% of the files are
quantisations from 40 shared repos (ten files share one search and one listing), 30% come
from a repo of their own, 30% are on no repo at all (every query searched, nothing found),
plus 200 distractor repos. It sends the Hub's RateLimit headers and answers 429 past
`--rate-limit` (default: a quota no batch reaches).

Prints, per run: total time, Hub calls per model (by endpoint), 429 answers, trust levels;
and the baseline measured alternately in the same run: the same import with `--offline`
(copy, hash, index; no network). Target: the online import under 60 s, no 429 storm.
Then the identification alone, in-process (what `plan_import` runs: `LookupBatch` over one
HubSession, fresh cache), with 8 workers against 1 (sequential), alternating.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import MODELIMPORT, machine, rm, workdir, write_safetensors  # noqa: E402
from fakehub import FakeHub  # noqa: E402

VARIANTS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_0", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16")
FILE_SIZE = 8192


def build_world(src: Path, hub: FakeHub, count: int) -> dict[str, str]:
    """Write `count` files into `src`, put the right repos on `hub`; file name -> kind."""
    kinds: dict[str, str] = {}
    shared = count * 4 // 10
    own = count * 3 // 10

    def write(name: str) -> tuple[int, str]:
        path = write_safetensors(src / name, FILE_SIZE, seed=name.encode().ljust(16)[:64])
        return path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()

    for k in range(0, shared, len(VARIANTS)):
        family = f"Family{k // len(VARIANTS)}-7B-Instruct"
        files = {}
        for variant in VARIANTS[: min(len(VARIANTS), shared - k)]:
            name = f"{family}-{variant}.safetensors"
            files[name] = write(name)
            kinds[name] = "shared repo"
        hub.add_repo(f"org{k}/{family}-GGUF", files, downloads=1000 + k)
    for j in range(own):
        name = f"Unique{j}-Model.safetensors"
        hub.add_repo(f"author{j}/Unique{j}-Model", {name: write(name)}, downloads=10 + j)
        kinds[name] = "own repo"
    for j in range(count - shared - own):
        name = f"Orphan{j}-Thing.safetensors"
        write(name)
        kinds[name] = "on no repo"
    for i in range(200):
        hub.add_repo(f"noise/Distractor-{i}", {"model.safetensors": (1234, "0" * 64)}, downloads=i)
    return kinds


def import_once(src: Path, work: Path, hub: FakeHub, offline: bool) -> tuple[float, dict]:
    lib, cache = work / "lib", work / "cache"
    rm(lib)
    rm(cache)
    env = dict(os.environ)
    env.update(
        {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "1" if offline else "0",
            "HF_HOME": str(work / "hf-home"),
            "MODELIMPORT_CACHE_DIR": str(cache),
            "MODELIMPORT_CIVITAI": "0",  # this measures the Hub
            "CIVITAI_ENDPOINT": "http://127.0.0.1:9",
        }
    )
    hub.reset_counts()
    hub.rejected_429 = 0
    args = [MODELIMPORT, "--library", str(lib), "import", str(src), "--yes", "--json"]
    if offline:
        args.append("--offline")
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def identify_only(src: Path, work: Path, hub: FakeHub, workers: int) -> float:
    """Seconds to identify every file of `src` in-process with `workers` concurrent lookups."""
    from modelimport.identify.batch import identify_parallel
    from modelimport.identify.hub import HubSession, LocalFile, LookupRequest

    requests = []
    for path in sorted(src.iterdir()):
        data = path.read_bytes()
        local = LocalFile(path.name, len(data), None, hashlib.sha256(data).hexdigest())
        requests.append(LookupRequest.for_files((local,), None))
    cache = work / "cache-inproc"
    rm(cache)
    hub.reset_counts()
    os.environ["HF_ENDPOINT"] = hub.url
    start = time.perf_counter()
    results = identify_parallel(
        HubSession(cache_dir=cache, endpoint=hub.url), requests, workers=workers, budget_s=None
    )
    seconds = time.perf_counter() - start
    errors = [r.hub_error for r in results if r.hub_error]
    if errors:
        raise SystemExit(f"lookups failed: {errors[:3]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="files (default 1000)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per call (0.1)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of A/B (default 2)")
    parser.add_argument("--rate-limit", default="100000/300", help="REQUESTS/SECONDS window")
    parser.add_argument("--dir", default=None, help="where to work (default: system temp)")
    parser.add_argument(
        "--no-identify-only", dest="identify_only", action="store_false",
        help="skip the in-process identification runs (8 workers against 1)",
    )
    args = parser.parse_args()
    quota, window = (float(x) for x in args.rate_limit.split("/"))

    work = workdir(args.dir, "identify")
    src = work / "downloads"
    src.mkdir()
    hub = FakeHub().start()
    hub.latency = args.latency
    try:
        kinds = build_world(src, hub, args.count)
        print(f"machine: {machine()}")
        print(
            f"{args.count} files, {args.latency * 1000:.0f} ms per Hub call, "
            f"rate limit {int(quota)} per {window:g} s; "
            + ", ".join(f"{n} {k}" for k, n in Counter(kinds.values()).items())
        )
        online: list[float] = []
        offline: list[float] = []
        for round_ in range(args.repeat):
            for is_offline in (False, True) if round_ % 2 == 0 else (True, False):
                hub.rate_limit(int(quota), window)
                seconds, report = import_once(src, work, hub, is_offline)
                (offline if is_offline else online).append(seconds)
                label = "offline" if is_offline else "online "
                line = f"round {round_ + 1} {label}: {seconds:6.2f} s"
                if not is_offline:
                    calls = dict(hub.counts)
                    calls.pop("agent_harnesses", None)
                    trust = Counter(
                        r.get("trust_level") or "pending" for r in report["results"]
                    )
                    line += (
                        f"  Hub calls per model {hub.total / args.count:.2f} "
                        f"({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))}), "
                        f"429 answers {hub.rejected_429}, trust {dict(trust)}"
                    )
                print(line, flush=True)
        if args.identify_only:
            timings: dict[int, list[float]] = {8: [], 1: []}
            for round_ in range(args.repeat):
                for workers in (8, 1) if round_ % 2 == 0 else (1, 8):
                    seconds = identify_only(src, work, hub, workers)
                    timings[workers].append(seconds)
                    print(
                        f"round {round_ + 1} identify only, {workers} worker(s): {seconds:6.2f} s"
                        f"  Hub calls per model {hub.total / args.count:.2f}",
                        flush=True,
                    )
            print(
                f"identification alone: {min(timings[8]):.1f} s with 8 workers, "
                f"{min(timings[1]):.1f} s sequential ({min(timings[1]) / min(timings[8]):.1f}x)"
            )
        best_online, best_offline = min(online), min(offline)
        print(
            f"online import: {best_online:.1f} s (best of {len(online)}; target < 60 s), "
            f"offline baseline {best_offline:.1f} s, identification adds "
            f"{best_online - best_offline:.1f} s"
        )
    finally:
        hub.stop()
        rm(work)


if __name__ == "__main__":
    main()
