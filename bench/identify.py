"""Benchmark: does `modelimport lookup` name the right repo for real file names?

The pairs (file name -> repo, path, size) come from public lists (bench/identify_pairs.json,
written by scripts/refresh_catalog.py: ComfyUI-Manager's model list, InvokeAI's starter
models, LM Studio's model catalog). Every file is generated sparse with its exact size
(a valid safetensors or GGUF header, then a hole) and the fake Hub (tests/fakehub.py) lists
the SHA256 of exactly those bytes in the right repo. Around each right repo the world holds
what makes the real Hub hard: re-uploads of the same bytes, quantised forks, repos holding a
file of the same name with other bytes (half of them the same size), and hundreds of popular
distractor repos whose ids contain the words of the file names.

The real CLI then looks up all files in one run (one batch), as a person would:

    modelimport lookup FILE... --json            # default: names and sizes, nothing hashed
    modelimport lookup FILE... --json --verify   # --verify: every file hashed (slow: reads
                                                 # every byte of every file)

It runs four times: as shipped (catalog and search), with an empty catalog
(MODELIMPORT_CATALOG) so the search alone is measured too (the pairs and the catalog come
from the same public lists, so the first run alone would flatter the search), and both again
with the publisher file index built first (`modelimport index update` against the fake Hub,
its build time, calls and size reported). The publishers' repos are what they hold on the
Hub: each right repo of an indexed publisher also holds unrelated files (bucket repos,
repackages of a dozen files) and each publisher a few more repos nobody asked about.
Reported for each: top-1 repo (all files, files in the catalog, the others), false
Verified / High confidence claims (a repo that does not hold these bytes), trust levels,
Hub calls per model, wall time with the fake Hub answering after `--latency` seconds, and
the machine.

The SHA256 of each generated file (its header, then zeros) is computed once and cached in
~/.cache/modelimport-bench/identify-sha256.json: the first run reads every byte once.

    .venv/bin/python bench/identify.py [--pairs 120] [--verify] [--latency 0.05] [--dir D]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import machine  # noqa: E402
from fakehub import FakeHub  # noqa: E402

from modelimport.identify.catalog import load_catalog  # noqa: E402
from modelimport.identify.publishers import default_publishers  # noqa: E402

PAIRS = ROOT / "bench" / "identify_pairs.json"
SHA_CACHE = Path.home() / ".cache" / "modelimport-bench" / "identify-sha256.json"
ZEROS = bytes(16 << 20)
SEED = 11
QUANTISERS = [
    "bartowski", "mradermacher", "QuantFactory", "unsloth", "second-state", "MaziyarPanahi",
]
MIRRORS = ["mirror-models", "backup-hub", "modelscope-mirror", "ai-archive"]
DISTRACTOR_SUFFIXES = ["lora", "merge", "finetune", "abliterated", "exl2", "mlx", "onnx", "demo"]


# -- files ----------------------------------------------------------------------------------


def _safetensors_header(name: str, size: int) -> bytes:
    header = b""
    for _ in range(3):  # the header length depends on the numbers in it; settle it
        n = size - 8 - len(header)
        meta = {"__metadata__": {"bench_file": name},
                "weight": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}
        header = json.dumps(meta).encode()
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf_header(name: str, size: int) -> bytes:
    """GGUF v3: architecture, a unique id, one I8 tensor filling the rest of the file."""
    kv = (
        _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
        + _gguf_string("bench.file") + struct.pack("<I", 8) + _gguf_string(name)
    )
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 2) + kv
    for _ in range(3):
        info = _gguf_string("weight") + struct.pack("<I", 1)
        start = len(head) + len(info) + 8 + 4 + 8
        start += -start % 32
        info += struct.pack("<QIQ", size - start, 24, 0)  # ggml type 24: I8
        whole = head + info
        whole += b"\0" * (-len(whole) % 32)
        if len(whole) == start:
            return whole
    raise ValueError("could not lay out the GGUF header")


def file_header(name: str, size: int) -> bytes:
    return _gguf_header(name, size) if name.endswith(".gguf") else _safetensors_header(name, size)


def write_sparse(path: Path, header: bytes, size: int) -> None:
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(size)


def sha256_of(header: bytes, size: int, cache: dict[str, str]) -> str:
    key = f"{hashlib.sha256(header).hexdigest()}|{size}"
    if key not in cache:
        digest = hashlib.sha256(header)
        left = size - len(header)
        view = memoryview(ZEROS)
        while left:
            step = min(left, len(ZEROS))
            digest.update(view[:step])
            left -= step
        cache[key] = digest.hexdigest()
    return cache[key]


# -- the world --------------------------------------------------------------------------------


def _fake_sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[-_.\s]+", Path(name).stem) if len(w) >= 4 and not w.isdigit()]


def build_world(hub: FakeHub, pairs: list[dict], shas: dict[str, str]) -> dict[str, str]:
    """Add every pair's repo and its neighbours; returns repo -> kind, for the report."""
    rng = random.Random(SEED)
    kinds: dict[str, str] = {}
    files_by_repo: dict[str, dict] = {}
    downloads: dict[str, int] = {}
    for pair in pairs:
        repo, path, name, size = pair["repo"], pair["path"], pair["name"], pair["size"]
        files = files_by_repo.setdefault(repo, {"README.md": b"# model card\n"})
        files[path] = (size, shas[name])
        downloads.setdefault(repo, rng.randint(2_000, 2_000_000))
        kinds[repo] = "right"
        if name.endswith(".gguf"):  # the other quantisations of the same model
            for quant in ("Q3_K_M", "Q5_K_M", "Q8_0"):
                other = re.sub(r"(?i)q\d_[0-9a-z_]+|f16|bf16", quant, path)
                if other != path:
                    files.setdefault(other, (size + rng.randint(10**6, 10**9), _fake_sha(rng)))
    publishers = {p.lower() for p in default_publishers()}
    for repo, files in files_by_repo.items():
        if repo.split("/")[0].lower() in publishers:  # a bucket or a repack: more files
            for k in range(rng.randint(3, 30)):
                files.setdefault(f"other/{repo.split('/')[1]}-extra-{k}.safetensors",
                                 (rng.randint(10**6, 10**10), _fake_sha(rng)))
    for owner in sorted({r.split("/")[0] for r in files_by_repo} & {
        r.split("/")[0] for r in files_by_repo if r.split("/")[0].lower() in publishers
    }):
        for k in range(3):  # repos of the publisher no pair points into
            spare = f"{owner}/unrelated-collection-{k}"
            files_by_repo[spare] = {f"file-{j}.safetensors": (
                rng.randint(10**6, 10**9), _fake_sha(rng)) for j in range(rng.randint(2, 12))}
            downloads[spare] = rng.randint(10, 100_000)
            kinds[spare] = "publisher-other"
    for repo, files in files_by_repo.items():
        gguf = any(p.endswith(".gguf") for p in files)
        hub.add_repo(repo, files, downloads=downloads[repo],
                     tags=["gguf"] if gguf else ["safetensors"],
                     pipeline_tag="text-generation" if gguf else "text-to-image")

    for i, pair in enumerate(pairs):
        repo, path, name, size = pair["repo"], pair["path"], pair["name"], pair["size"]
        owner, repo_name = repo.split("/")
        roll = rng.random()
        if roll < 0.3:  # a re-upload of the very same bytes, under the same repo name
            mirror = f"{MIRRORS[i % len(MIRRORS)]}/{repo_name}"
            if mirror not in hub.repos:
                hub.add_repo(mirror, {path: (size, shas[name])},
                             downloads=rng.randint(10, downloads[repo] // 2 + 10))
                kinds[mirror] = "re-upload"
        elif roll < 0.55:  # same file name, other bytes; half of them the same size
            # Mostly the same repo name under a quantiser (as lmstudio-community and
            # bartowski publish the same file names), sometimes a variant's name.
            variant = "" if rng.random() < 0.7 else f"-{rng.choice(['fp16', 'fixed', 'v2'])}"
            imposter = f"{QUANTISERS[i % len(QUANTISERS)]}/{repo_name}{variant}"
            if imposter not in hub.repos:
                other_size = size if rng.random() < 0.5 else size + rng.randint(1, 10**6)
                hub.add_repo(imposter, {name: (other_size, _fake_sha(rng))},
                             downloads=rng.randint(10, 4 * downloads[repo]))
                kinds[imposter] = "same-name-other-bytes"
        if rng.random() < 0.4:  # a quantised fork: other file names
            stem = re.sub(r"(?i)[-_.]?(q\d_[0-9a-z_]+|f16|bf16|fp16|fp8.*)$", "", Path(name).stem)
            fork = f"{QUANTISERS[(i + 3) % len(QUANTISERS)]}/{repo_name}-GGUF"
            if fork not in hub.repos:
                hub.add_repo(fork, {f"{stem}.Q4_K_M.gguf": (size // 3, _fake_sha(rng)),
                                    f"{stem}.Q6_K.gguf": (size // 2, _fake_sha(rng))},
                             downloads=rng.randint(100, 500_000), tags=["gguf"])
                kinds[fork] = "quantised-fork"
        # Popular distractors spelling the words of the name (and the whole name + a suffix).
        words = _words(name) or [Path(name).stem]
        for k in range(3):
            word = rng.choice(words)
            suffix = DISTRACTOR_SUFFIXES[(i + k) % len(DISTRACTOR_SUFFIXES)]
            base = Path(name).stem if k == 0 else word
            distractor = f"user{rng.randint(1, 9999)}/{base}-{suffix}-{k}"
            if distractor not in hub.repos:
                hub.add_repo(distractor, {f"{base}-{suffix}.safetensors": (
                    rng.randint(10**6, 10**10), _fake_sha(rng))},
                    downloads=rng.randint(1_000, 20_000_000))
                kinds[distractor] = "distractor"
    return kinds


# -- selection --------------------------------------------------------------------------------


def select_pairs(count: int, max_bytes: int, max_file_bytes: int) -> list[dict]:
    """`count` pairs, safetensors and GGUF files only (their headers can be made sparse),
    every source represented, one per file name, the total size bounded (the fake Hub needs
    each file's SHA256: every byte is hashed once)."""
    data = json.loads(PAIRS.read_text())["pairs"]
    usable = [p for p in data if p["name"].endswith((".safetensors", ".gguf"))]
    seen: set[str] = set()
    unique = []
    for pair in usable:
        if pair["name"].lower() not in seen:
            seen.add(pair["name"].lower())
            unique.append(pair)
    rng = random.Random(SEED)
    rng.shuffle(unique)
    # Round-robin over the sources, so a big list does not crowd out a small one.
    by_source: dict[str, list[dict]] = {}
    for pair in unique:
        by_source.setdefault(pair["source"], []).append(pair)
    chosen, total = [], 0
    while len(chosen) < count and any(by_source.values()):
        for source in list(by_source):
            if not by_source[source] or len(chosen) >= count:
                continue
            pair = by_source[source].pop()
            if total + pair["size"] > max_bytes or pair["size"] > max_file_bytes:
                continue
            chosen.append(pair)
            total += pair["size"]
    return chosen


# -- run --------------------------------------------------------------------------------------


def _env(hub: FakeHub, work: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(work / "hf-home"),
        MODELIMPORT_CACHE_DIR=str(cache), NO_COLOR="1",
    )
    env.pop("HF_TOKEN", None)
    return env


def build_index(hub: FakeHub, work: Path) -> tuple[Path, dict, int, float]:
    """`modelimport index update` of the default publishers against the fake Hub:
    (the index file, its report, Hub calls, seconds)."""
    hub.reset_counts()
    cache = work / "index-cache"
    cmd = [sys.executable, "-m", "modelimport", "index", "update", "--json"]
    begin = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(hub, work, cache), capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - begin
    if proc.returncode != 0:
        raise SystemExit(f"index update failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return cache / "publisher-index.sqlite", json.loads(proc.stdout), hub.total, seconds


def run_lookup(
    hub: FakeHub, paths: list[Path], work: Path, label: str, verify: bool, catalog: bool,
    index: Path | None = None,
) -> tuple[list[dict], int, float]:
    """One `modelimport lookup` of every file, with an empty Hub cache (but for the publisher
    index, when given); (results, calls, s)."""
    hub.reset_counts()
    cache = work / f"hub-cache-{label}"
    if index is not None:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(index, cache / index.name)
    env = _env(hub, work, cache)
    # The Hub is measured: CivitAI, which `lookup --verify` asks about files the Hub did not
    # verify, stays off (and would reach nothing: no benchmark touches the internet).
    env.update(MODELIMPORT_CIVITAI="0", CIVITAI_ENDPOINT="http://127.0.0.1:9")
    env.pop("CIVITAI_API_TOKEN", None)
    if not catalog:
        empty = work / "empty-catalog.json"
        empty.write_text('{"sources": {}, "files": []}')
        env["MODELIMPORT_CATALOG"] = str(empty)
    cmd = [sys.executable, "-m", "modelimport", "lookup", *map(str, paths), "--json"]
    if verify:
        cmd.append("--verify")
    begin = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - begin
    if proc.returncode not in (0, 1):
        raise SystemExit(f"lookup failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["results"], hub.total, seconds


def score(
    pairs: list[dict], results: list[dict], holders: dict[str, set[str]], named: set[str]
) -> dict:
    """Top-1, false claims (verified/high for a repo not holding these bytes), trust levels."""
    figures: dict = {"right": 0, "false_claims": 0, "trust": {}, "misses": [],
                     "catalog": [0, 0], "search": [0, 0]}
    for pair, report in zip(pairs, results, strict=True):
        ok = report.get("repo_id") == pair["repo"]
        figures["right"] += ok
        kind = "catalog" if pair["name"].lower() in named else "search"
        figures[kind][0] += ok
        figures[kind][1] += 1
        trust = report.get("trust") or "error"
        figures["trust"][trust] = figures["trust"].get(trust, 0) + 1
        claimed = report.get("repo_id")
        if trust in ("verified", "high_confidence") and claimed not in holders[pair["name"]]:
            figures["false_claims"] += 1
        if not ok:
            figures["misses"].append((pair["name"], pair["repo"], claimed, trust))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=120)
    parser.add_argument("--max-gb", type=float, default=200.0, help="bound on total file size")
    parser.add_argument("--max-file-gb", type=float, default=5.0, help="bound on one file")
    parser.add_argument("--latency", type=float, default=0.05, help="fake Hub seconds per call")
    parser.add_argument("--verify", action="store_true", help="also hash every file (slow)")
    parser.add_argument("--dir", help="where to write the sparse files (default: a temp dir)")
    args = parser.parse_args()

    pairs = select_pairs(args.pairs, int(args.max_gb * 1e9), int(args.max_file_gb * 1e9))
    work = Path(args.dir or tempfile.mkdtemp(prefix="modelimport-identify-"))
    files_dir = work / "Downloads"  # a generic folder: never searched
    files_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[str, str] = json.loads(SHA_CACHE.read_text()) if SHA_CACHE.exists() else {}
    shas: dict[str, str] = {}
    started = time.perf_counter()
    paths = []
    for pair in pairs:
        header = file_header(pair["name"], pair["size"])
        path = files_dir / pair["name"]
        write_sparse(path, header, pair["size"])
        shas[pair["name"]] = sha256_of(header, pair["size"], cache)
        paths.append(path)
        SHA_CACHE.parent.mkdir(parents=True, exist_ok=True)
        SHA_CACHE.write_text(json.dumps(cache))
    prepared = time.perf_counter() - started

    named = set(load_catalog())
    runs = []
    with FakeHub() as hub:
        kinds = build_world(hub, pairs, shas)
        hub.latency = args.latency
        holders: dict[str, set[str]] = {pair["name"]: set() for pair in pairs}
        for repo_id, repo in hub.repos.items():
            for f in repo.files.values():
                base = f.path.rsplit("/", 1)[-1]
                if base in shas and f.sha256 == shas[base]:
                    holders[base].add(repo_id)
        index_file, index_report, index_calls, index_seconds = build_index(hub, work)
        for label, catalog, index in (
            ("catalog and search", True, None),
            ("search only", False, None),
            ("publisher index, catalog and search", True, index_file),
            ("publisher index and search, no catalog", False, index_file),
        ):
            results, calls, seconds = run_lookup(
                hub, paths, work, re.sub(r"\W+", "-", label), args.verify, catalog, index
            )
            runs.append((label, score(pairs, results, holders, named), calls, seconds))
        repos = len(hub.repos)

    n = len(pairs)
    total_gb = sum(p["size"] for p in pairs) / 1e9
    distractors = sum(1 for k in kinds.values() if k == "distractor")
    print(f"machine: {machine()}")
    print(f"pairs: {n} real (file -> repo, path) pairs, {total_gb:.1f} GB sparse; "
          f"{sum(1 for p in pairs if p['name'].lower() in named)} of the files are in the catalog")
    print(f"fake Hub: {repos} repos ({distractors} distractors, "
          + ", ".join(f"{sum(1 for k in kinds.values() if k == kind)} {kind}"
                      for kind in ("re-upload", "same-name-other-bytes", "quantised-fork"))
          + f"), {args.latency * 1000:.0f} ms per call")
    print(f"mode: {'--verify (every file hashed)' if args.verify else 'names and sizes'}; "
          f"files prepared in {prepared:.1f} s")
    stats = index_report["index"]
    print(f"publisher index: {len(index_report['publishers'])} publishers asked, "
          f"{stats['repos']} repos, {stats['files']} files, "
          f"{stats['bytes_on_disk'] / 1024:.0f} KiB on disk, built in {index_seconds:.1f} s "
          f"with {index_calls} Hub calls")
    for label, figures, calls, seconds in runs:
        right = figures["right"]
        print(f"\n[{label}]")
        print(f"top-1 repo: {right}/{n} = {100 * right / n:.1f} %")
        for kind, text in (("catalog", "files in the catalog"), ("search", "other files")):
            ok, total = figures[kind]
            if total:
                print(f"  {text}: {ok}/{total} = {100 * ok / total:.1f} %")
        print(f"false verified/high-confidence claims: {figures['false_claims']}")
        print("trust levels: " + ", ".join(f"{k} {v}" for k, v in sorted(figures["trust"].items())))
        print(f"Hub calls: {calls} = {calls / n:.2f} per model")
        print(f"lookup wall time: {seconds:.1f} s ({seconds / n * 1000:.0f} ms per model)")
        for miss in figures["misses"]:
            print("  miss: " + " | ".join(str(x) for x in miss))
    if not args.dir:
        for path in paths:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
