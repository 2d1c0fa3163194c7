"""Parallel identification of a batch (identify.batch) against the fake Hub: the same
verdicts as one at a time, shared searches and listings cost one call, the Hub's rate limit
and the breaker hold under concurrency, and a spent time budget leaves the rest pending."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cli import run_cli
from factories import make_safetensors
from fakehub import FakeClock, FakeHub

from modelimport.identify.batch import BUDGET_SPENT, LOOKUP_WORKERS, LookupBatch, identify_parallel
from modelimport.identify.hub import HubSession, LocalFile, LookupRequest

QUANTS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one(name: str, data: bytes) -> LookupRequest:
    return LookupRequest.for_files((LocalFile(name, len(data), None, _sha(data)),), None)


def _world(hub: FakeHub) -> list[LookupRequest]:
    """Requests of a realistic batch: eight quantisations of one repo, files with a repo of
    their own, a modified copy, and files the Hub has never seen."""
    requests = []
    shared = {}
    for q in QUANTS:
        name = f"Tiny-Chat-7B-{q}.safetensors"
        data = f"weights {q}".encode() * 50
        shared[name] = data
        requests.append(_one(name, data))
    hub.add_repo("someorg/Tiny-Chat-7B-GGUF", shared, downloads=500)
    for n in range(4):
        name = f"Solo-Model-{n}.safetensors"
        data = f"solo {n}".encode() * 40
        hub.add_repo(f"solo{n}/Solo-Model-{n}", {name: data}, downloads=n)
        requests.append(_one(name, data))
    data = b"original bytes!!" * 10
    hub.add_repo("keeper/Edited-Thing", {"Edited-Thing.safetensors": data}, downloads=9)
    edited = LocalFile("Edited-Thing.safetensors", len(data), None, _sha(b"other bytes!!!!!" * 10))
    requests.append(LookupRequest.for_files((edited,), None))
    for n in range(3):
        name = f"Nobody-Knows-{n}.safetensors"
        requests.append(LookupRequest.for_files((LocalFile(name, 100 + n, None, "ab" * 32),), None))
    for n in range(30):
        hub.add_repo(f"noise/Distractor-{n}", {"x.safetensors": (5, "cd" * 32)}, downloads=n)
    return requests


def _verdicts(results: list) -> list[str]:
    return [json.dumps(r.to_json(), sort_keys=True) for r in results]


def test_parallel_verdicts_equal_sequential_ones(tmp_path: Path, fake_hub: FakeHub):
    requests = _world(fake_hub)
    sequential = HubSession(cache_dir=tmp_path / "seq")
    one_by_one = [sequential.identify(r) for r in requests]
    sequential_calls = fake_hub.total

    fake_hub.reset_counts()
    fake_hub.latency = 0.05  # lookups overlap
    parallel = identify_parallel(HubSession(cache_dir=tmp_path / "par"), requests, workers=8)
    assert _verdicts(parallel) == _verdicts(one_by_one)
    trust = [str(r.trust) for r in parallel]
    assert trust[:12] == ["verified"] * 12 and trust[12] == "modified"
    assert trust[13:] == ["no_match"] * 3
    # Each search and each listing asked once in the whole batch, however many lookups
    # wanted it at the same time; within the per-model budget. (A sequential run can skip
    # a few more queries: it already knows which shorter ones found nothing.)
    assert len(fake_hub.log) == len(set(fake_hub.log))
    assert fake_hub.total <= 4 * len(requests)
    assert sequential_calls <= fake_hub.total


def test_a_shared_search_and_listing_cost_one_call_each(tmp_path: Path, fake_hub: FakeHub):
    requests = _world(fake_hub)[: len(QUANTS)]  # eight files, one query, one repo
    fake_hub.latency = 0.2  # every lookup is in flight when the first search is answered
    # --refresh: the disk cache is bypassed, so only sharing within the batch saves calls
    session = HubSession(cache_dir=tmp_path / "c", refresh=True)
    results = identify_parallel(session, requests, workers=8)
    assert {str(r.trust) for r in results} == {"verified"}
    assert fake_hub.counts["search"] == 1
    assert fake_hub.counts["model_info"] == 1


def test_the_rate_limit_headers_pace_the_batch_without_a_429_storm(
    tmp_path: Path, fake_hub: FakeHub
):
    requests = _world(fake_hub)
    fake_hub.rate_limit(6, window=1)  # far fewer calls per window than the batch needs
    fake_hub.latency = 0.02
    results = identify_parallel(HubSession(cache_dir=tmp_path / "c"), requests, workers=8)
    assert [r.hub_error for r in results] == [None] * len(requests)
    assert [str(r.trust) for r in results][:12] == ["verified"] * 12
    assert fake_hub.rejected_429 <= LOOKUP_WORKERS  # at most one per worker in flight


def test_the_breaker_still_stops_a_failing_hub(tmp_path: Path, fake_hub: FakeHub):
    requests = _world(fake_hub)
    fake_hub.fail(500)
    results = identify_parallel(HubSession(cache_dir=tmp_path / "c"), requests, workers=8)
    assert all(r.hub_error and "500" in r.hub_error for r in results)
    assert fake_hub.total <= 2 * LOOKUP_WORKERS  # the lookups in flight, one retry each


def test_a_spent_budget_leaves_the_rest_pending(tmp_path: Path, fake_hub: FakeHub):
    requests = _world(fake_hub)
    assert len(requests) > 8 + 1
    # The eight quantisations are looked up within the budget; then the batch's clock jumps
    # past it. The lookup in flight, if any, may end but is not waited for; no other starts.
    clock = FakeClock()
    batch = LookupBatch(
        HubSession(cache_dir=tmp_path / "c"), requests, workers=1, budget_s=60,
        clock=clock.monotonic,
    )  # fmt: skip
    try:
        first = [batch.result(i) for i in range(8)]
        clock.now += 61
        rest = [batch.result(i) for i in range(8, len(requests))]
    finally:
        batch.close()
    assert all(str(r.trust) == "verified" for r in first)
    spent = [r for r in rest if r.hub_error == BUDGET_SPENT]
    assert len(rest) - 1 <= len(spent) <= len(rest)
    assert batch.spent == len(spent)


def test_import_leaves_models_past_the_budget_to_retry_pending(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    folder = tmp_path / "dl"
    for n in range(6):
        path = make_safetensors(folder / f"Budget-Model-{n}.safetensors", fill=bytes([n + 1]))
        fake_hub.add_repo(f"o{n}/Budget-Model-{n}", {path.name: path.read_bytes()})
    fake_hub.latency = 0.4
    lib = tmp_path / "lib"
    run = run_cli(
        "--library", lib, "import", folder, "--yes", "--json", "--lookup-budget", "0.1",
        env=fake_hub_env,
    )
    assert run.code == 0, run.stderr
    report = run.json
    assert report["summary"]["imported"] == 6
    pending = [r for r in report["results"] if r["pending_online_lookup"]]
    assert pending and report["summary"]["pending_lookup"] == len(pending)

    fake_hub.latency = 0.0
    retry = run_cli("--library", lib, "retry-pending", "--json", env=fake_hub_env)
    assert retry.code == 0, retry.stderr
    assert {r["trust_level"] for r in retry.json["results"]} == {"verified"}
