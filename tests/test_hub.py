"""modelimport.identify.hub against the fake Hub: trust, faults, offline, cache and budget."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from fakehub import FakeClock, FakeHub

from modelimport.identify.hub import (
    HubSession,
    LocalFile,
    LookupRequest,
    TrustLevel,
    settle_verification,
)
from modelimport.identify.hub.client import RETRY_BACKOFF_S
from modelimport.identify.hub.records import FileStamp

NAME = "Meta-Llama-3-8B-Instruct"
LLAMA = f"meta-llama/{NAME}"
WEIGHTS = b"llama weights " * 100
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request(name: str, *files: LocalFile, folder: str | None = None, embedded=()) -> LookupRequest:
    return LookupRequest(name=name, files=files, folder_name=folder, embedded_repos=tuple(embedded))


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    fake_hub.add_repo(
        LLAMA,
        {"Meta-Llama-3-8B-Instruct.safetensors": WEIGHTS, "config.json": b"{}"},
        downloads=1000,
        tags=["transformers", "llama", "text-generation", "license:llama3"],
        pipeline_tag="text-generation",
        library_name="transformers",
        card_data={"base_model": "meta-llama/Meta-Llama-3-8B"},
    )
    fake_hub.add_repo(
        "someone/Meta-Llama-3-8B-Instruct-merge",
        {"merge.safetensors": (12345, "ab" * 32)},
        downloads=3,
    )
    return fake_hub


def llama_file(**kw) -> LocalFile:
    return LocalFile("Meta-Llama-3-8B-Instruct.safetensors", len(WEIGHTS), **kw)


def test_hash_match_is_verified(hub: FakeHub) -> None:
    result = HubSession().identify(request(NAME, llama_file(sha256=WEIGHTS_SHA)))
    assert (result.trust, result.match_method, result.confidence) == (
        TrustLevel.VERIFIED, "hash", 1.0,
    )
    assert result.repo_id == LLAMA
    assert not result.pending_verification
    assert result.metadata["hash_mismatch"] is False


def test_renamed_file_is_verified_by_hash(hub: FakeHub) -> None:
    local = LocalFile(f"{NAME}-renamed.safetensors", len(WEIGHTS), sha256=WEIGHTS_SHA)
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct", local))
    assert result.trust is TrustLevel.VERIFIED
    assert result.matched_files == {local.name: "Meta-Llama-3-8B-Instruct.safetensors"}


def test_exact_name_and_size_is_high_and_pending(hub: FakeHub) -> None:
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert (result.trust, result.match_method, result.confidence) == (
        TrustLevel.HIGH, "filename_exact", 0.95,
    )
    assert result.pending_verification
    assert result.expected_sha256 == {"Meta-Llama-3-8B-Instruct.safetensors": WEIGHTS_SHA}
    meta = result.metadata
    assert meta["official_name"] == "Meta-Llama-3-8B-Instruct"
    assert meta["family"] == "llama" and meta["model_type"] == "llm"
    assert meta["license"] == "llama3" and meta["base_model"] == "meta-llama/Meta-Llama-3-8B"
    assert meta["matched_filename"] == "Meta-Llama-3-8B-Instruct.safetensors"
    assert meta["download_url"].endswith(f"/{LLAMA}/resolve/main/{NAME}.safetensors")
    assert {"path": "config.json", "size": 2} in meta["repo_files"]
    assert [c.repo_id for c in result.candidates][0] == LLAMA


def test_settle_verification_equal_and_different(hub: FakeHub) -> None:
    pending = HubSession().identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    name = "Meta-Llama-3-8B-Instruct.safetensors"
    verified = settle_verification(pending, {name: WEIGHTS_SHA})
    assert (verified.trust, verified.match_method, verified.confidence) == (
        TrustLevel.VERIFIED, "hash", 1.0,
    )
    assert not verified.pending_verification
    modified = settle_verification(pending, {name: "0" * 64})
    assert (modified.trust, modified.match_method, modified.confidence) == (
        TrustLevel.MODIFIED, "hash_mismatch", 0.7,
    )
    assert modified.metadata["hash_mismatch"] is True
    nothing = HubSession(offline=True).identify(request("x", llama_file()))
    assert settle_verification(nothing, {name: WEIGHTS_SHA}) == nothing


def test_fuzzy_name_is_low_confidence(hub: FakeHub) -> None:
    local = LocalFile("Meta-Llama-3-8B-Instruct-finetune.safetensors", 777)
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct-finetune", local))
    assert (result.trust, result.match_method) == (TrustLevel.LOW, "filename_fuzzy")
    assert 0.5 <= result.confidence < 0.9
    assert result.repo_id == LLAMA


def test_same_name_other_size_is_modified(hub: FakeHub) -> None:
    local = LocalFile("Meta-Llama-3-8B-Instruct.safetensors", len(WEIGHTS) + 8)
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct", local))
    assert (result.trust, result.match_method, result.confidence) == (
        TrustLevel.MODIFIED, "hash_mismatch", 0.7,
    )
    assert result.metadata["hash_mismatch"] is True
    assert not result.pending_verification


def test_same_name_size_but_other_sha256_is_modified(hub: FakeHub) -> None:
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct", llama_file(sha256="1" * 64)))
    assert result.trust is TrustLevel.MODIFIED


def test_nothing_found_is_no_match(hub: FakeHub) -> None:
    local = LocalFile("totally-unknown-model.safetensors", 10)
    result = HubSession().identify(request("totally-unknown-model", local))
    assert (result.trust, result.match_method, result.confidence) == (TrustLevel.NONE, None, 0.0)
    assert result.repo_id is None and result.hub_error is None


def test_unknown_embedded_repo_is_skipped(hub: FakeHub) -> None:
    result = HubSession().identify(
        request("Meta-Llama-3-8B-Instruct", llama_file(), embedded=["ghost/does-not-exist"])
    )
    assert result.trust is TrustLevel.HIGH and result.hub_error is None
    assert hub.counts["model_info"] == 2  # the 404, then the real repo


def test_embedded_repo_answers_without_search(hub: FakeHub) -> None:
    result = HubSession().identify(
        request("whatever", llama_file(), embedded=[f"https://huggingface.co/{LLAMA}"])
    )
    assert result.trust is TrustLevel.HIGH
    assert hub.counts["search"] == 0 and hub.counts["model_info"] == 1


def test_generic_file_name_is_searched_by_folder(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("mistralai/Mistral-7B-v0.1", {"model.safetensors": b"m" * 64}, downloads=9)
    result = HubSession().identify(
        request("model", LocalFile("model.safetensors", 64), folder="Mistral-7B-v0.1")
    )
    assert result.trust is TrustLevel.HIGH and result.repo_id == "mistralai/Mistral-7B-v0.1"
    assert "search=Mistral-7B-v0.1" in fake_hub.log[0][1]


def test_hub_500_fails_fast_and_opens_the_breaker(hub: FakeHub) -> None:
    hub.fail(500)
    clock = FakeClock()
    session = HubSession(**clock.session())
    result = session.identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert clock.slept == [RETRY_BACKOFF_S]  # one short pause before the one retry
    assert result.hub_error and "500" in result.hub_error
    assert result.trust is TrustLevel.NONE
    calls = hub.total
    assert calls <= 2  # one bounded retry
    again = session.identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert again.hub_error == result.hub_error
    assert hub.total == calls  # the breaker: no more calls in this session


def test_transient_500_is_retried(hub: FakeHub) -> None:
    hub.fail(503, times=1)
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert result.trust is TrustLevel.HIGH and result.hub_error is None


def test_429_retry_after_is_honoured(hub: FakeHub) -> None:
    hub.fail(429, times=1, retry_after=7)
    clock = FakeClock()
    result = HubSession(**clock.session()).identify(
        request("Meta-Llama-3-8B-Instruct", llama_file())
    )
    assert result.trust is TrustLevel.HIGH
    assert clock.slept == [7.0]  # what the Hub asked for, once, before the retry


def test_429_with_long_retry_after_gives_up_at_once(hub: FakeHub) -> None:
    hub.fail(429, retry_after=3600)
    clock = FakeClock()
    result = HubSession(**clock.session()).identify(
        request("Meta-Llama-3-8B-Instruct", llama_file())
    )
    assert clock.slept == []  # an hour is too long to wait: the Hub counts as down
    assert hub.total == 1
    assert result.hub_error and "429" in result.hub_error


def test_slow_hub_times_out(hub: FakeHub) -> None:
    hub.latency = 2.0  # longer than the timeout: only the timeout can end the call early
    session = HubSession(timeout=0.3)
    result = session.identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert result.hub_error and "did not answer within 0.3 s" in result.hub_error
    assert sum(session.calls.values()) == 1  # a timeout is not retried: the breaker opens


def test_unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = HubSession(endpoint="http://127.0.0.1:9").identify(request(NAME, llama_file()))
    assert result.hub_error and "could not be reached" in result.hub_error


def test_offline_makes_no_calls(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    result = HubSession(offline=True).identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert result.hub_error == "offline" and result.trust is TrustLevel.NONE
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = HubSession().identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert result.hub_error == "offline"
    assert hub.total == 0


# -- the call budget --------------------------------------------------------------------------


def test_one_model_costs_at_most_four_calls(hub: FakeHub) -> None:
    session = HubSession()
    # Worst case: two named repos that do not exist, then searches that find nothing.
    session.identify(
        request(
            "Unknown-Model-7B-Chat-v3",
            LocalFile("Unknown-Model-7B-Chat-v3.safetensors", 5),
            embedded=["ghost/one", "ghost/two"],
        )
    )
    assert hub.total <= 4
    hub.reset_counts()
    session.identify(request("Meta-Llama-3-8B-Instruct", llama_file()))
    assert hub.total <= 4


def test_shard_set_costs_one_model(fake_hub: FakeHub) -> None:
    shards = {f"model-{i:05d}-of-00005.safetensors": bytes([i]) * 100 for i in range(1, 6)}
    fake_hub.add_repo("org/Big-Model-70B", {**shards, "model.safetensors.index.json": b"{}"})
    files = tuple(LocalFile(name, len(data)) for name, data in shards.items())
    result = HubSession().identify(request("model", *files, folder="Big-Model-70B"))
    assert result.trust is TrustLevel.HIGH
    assert set(result.matched_files) == set(shards)
    assert result.expected_sha256 == {n: sha(d) for n, d in shards.items()}
    assert fake_hub.total <= 2  # one search, one listing: the cost of one model


def test_second_lookup_from_same_repo_uses_the_disk_cache(fake_hub: FakeHub) -> None:
    repo = "TheBloke/Llama-2-7B-GGUF"
    quants = {"llama-2-7b.Q4_K_M.gguf": b"4" * 40, "llama-2-7b.Q5_K_M.gguf": b"5" * 50}
    fake_hub.add_repo(repo, quants, downloads=50)
    first = HubSession().identify(request("llama-2-7b", LocalFile("llama-2-7b.Q4_K_M.gguf", 40)))
    assert first.repo_id == repo and fake_hub.counts["model_info"] == 1
    fake_hub.reset_counts()
    second = HubSession().identify(request("llama-2-7b", LocalFile("llama-2-7b.Q5_K_M.gguf", 50)))
    assert second.trust is TrustLevel.HIGH and second.repo_id == repo
    assert fake_hub.counts["model_info"] == 0 and fake_hub.total == 0
    q5 = LocalFile("llama-2-7b.Q5_K_M.gguf", 50)
    HubSession(refresh=True).identify(request("llama-2-7b", q5))
    assert fake_hub.counts["model_info"] == 1


def test_a_file_hashed_before_and_unchanged_is_known_unread(hub: FakeHub) -> None:
    seen = FileStamp("/dl/Meta-Llama-3-8B-Instruct.safetensors", len(WEIGHTS), 1_000)
    HubSession().identify(
        request(NAME, llama_file(fast_hash="f" * 64, sha256=WEIGHTS_SHA, stamp=seen))
    )
    result = HubSession().identify(request(NAME, llama_file(fast_hash="f" * 64, stamp=seen)))
    assert result.trust is TrustLevel.VERIFIED and not result.pending_verification

    # Same fast hash, but not that file as it was read: another path, a later mtime, no
    # stamp at all, or --refresh. The sha256 is then still to compare.
    for other in (
        llama_file(fast_hash="f" * 64, stamp=replace(seen, path="/elsewhere/x.safetensors")),
        llama_file(fast_hash="f" * 64, stamp=replace(seen, mtime_ns=2_000)),
        llama_file(fast_hash="f" * 64),
    ):
        result = HubSession().identify(request(NAME, other))
        assert result.trust is TrustLevel.HIGH and result.pending_verification
    refreshed = HubSession(refresh=True).identify(
        request(NAME, llama_file(fast_hash="f" * 64, stamp=seen))
    )
    assert refreshed.trust is TrustLevel.HIGH and refreshed.pending_verification


def test_a_set_is_verified_only_when_every_file_is_and_none_is_missing(
    fake_hub: FakeHub,
) -> None:
    shards = {f"model-{i:05d}-of-00003.safetensors": bytes([i]) * 100 for i in range(1, 4)}
    repo = fake_hub.add_repo("org/Big-Model-70B", shards)
    files = tuple(LocalFile(n, len(d), sha256=sha(d)) for n, d in shards.items())
    whole = request("model", *files, folder="Big-Model-70B")
    assert HubSession().identify(whole).trust is TrustLevel.VERIFIED
    # Two of three shards present, both the Hub's: the set was not compared whole.
    part = replace(whole, files=files[:2], whole_set=False)
    result = HubSession().identify(part)
    assert (result.trust, result.match_method) == (TrustLevel.HIGH, "filename_exact")
    assert settle_verification(result, {f.name: f.sha256 for f in files}, whole_set=False).trust \
        is TrustLevel.HIGH
    # The Hub lists no sha256 for shard 3: a name and a size are not a comparison.
    repo.files["model-00003-of-00003.safetensors"].lfs = False
    unread = tuple(replace(f, sha256=None) for f in files)
    pending = HubSession(refresh=True).identify(replace(whole, files=unread))
    assert pending.trust is TrustLevel.HIGH and pending.pending_verification
    settled = settle_verification(pending, {f.name: f.sha256 for f in files})
    assert (settled.trust, settled.match_method, settled.pending_verification) == (
        TrustLevel.HIGH, "filename_exact", False,
    )


def test_untrusted_repo_ids_from_search_are_dropped(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("evil/../../etc-passwd-model", {"x.safetensors": b"x"}, downloads=10**9)
    result = HubSession().identify(request("etc-passwd-model", LocalFile("x.safetensors", 1)))
    assert result.repo_id is None
    assert fake_hub.counts["model_info"] == 0


def test_same_size_renamed_file_is_low_until_settled(hub: FakeHub) -> None:
    local = LocalFile(f"{NAME}-copy.safetensors", len(WEIGHTS))
    pending = HubSession().identify(request(NAME, local))
    assert (pending.trust, pending.match_method) == (TrustLevel.LOW, "filename_fuzzy")
    assert pending.pending_verification and pending.expected_sha256 == {local.name: WEIGHTS_SHA}
    assert settle_verification(pending, {local.name: WEIGHTS_SHA}).trust is TrustLevel.VERIFIED
    refuted = settle_verification(pending, {local.name: "0" * 64})
    assert (refuted.trust, refuted.match_method) == (TrustLevel.LOW, "filename_fuzzy")
    assert not refuted.pending_verification and refuted.metadata["hash_mismatch"] is False


def test_an_unrelated_file_in_a_named_repo_is_no_match(hub: FakeHub) -> None:
    """The file names the repo, but none of the repo's files is like it: the name of a model
    file in that repo is no evidence (below the minimum similarity), so no low-confidence
    match is made up from it (issue 25: dropping the minimum made this a 0.5 match)."""
    unrelated = LocalFile("cat-photo-classifier.safetensors", 4321)
    result = HubSession().identify(request("whatever", unrelated, embedded=[LLAMA]))
    assert (result.trust, result.match_method, result.confidence) == (TrustLevel.NONE, None, 0.0)
    assert result.repo_id is None
    assert hub.counts["model_info"] == 1  # the named repo was read and compared
