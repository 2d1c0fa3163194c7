"""identify/hub/scoring.py's numbers, pinned where a person reads them: the confidence a
fuzzy match is given, and what a repo's name alone is worth (mutation testing found these
unpinned; docs/testing.md)."""

from __future__ import annotations

from modelimport.identify.hub import LocalFile, LookupRequest, TrustLevel
from modelimport.identify.hub.records import RepoFileEntry, RepoListing
from modelimport.identify.hub.scoring import (
    fuzzy_confidence,
    match_listing,
    name_only_match,
    repo_name_similarity,
    same_file_name,
    to_candidate,
)


def test_fuzzy_confidence_maps_the_similarity_range_onto_the_fuzzy_range():
    assert fuzzy_confidence(0.6) == 0.5  # the least similarity that counts: the least trust
    assert fuzzy_confidence(1.0) == 0.85  # the same name: still below filename_exact (0.95)
    assert fuzzy_confidence(0.8) == 0.675  # linear in between
    assert fuzzy_confidence(2 / 3) == 0.558  # to three decimals, as metadata.json shows it
    assert fuzzy_confidence(0.3) == 0.5 and fuzzy_confidence(1.5) == 0.85  # clamped


def test_a_repo_name_alone_is_compared_without_its_owner():
    # The owner's name is not the model's: "madebyollin/sdxl-vae" is named "sdxl-vae".
    match = name_only_match("sdxl-vae", "madebyollin/sdxl-vae")
    assert (match.trust, match.method, match.confidence) == (TrustLevel.LOW, "filename_fuzzy", 0.6)
    assert match.repo_id == "madebyollin/sdxl-vae"
    legacy = name_only_match("gpt2", "gpt2")  # the Hub's old repos have no owner
    assert (legacy.trust, legacy.confidence, legacy.repo_id) == (TrustLevel.LOW, 0.6, "gpt2")
    unrelated = name_only_match("sdxl-vae", "someone/llama-3-8b-instruct")
    assert (unrelated.trust, unrelated.method, unrelated.confidence) == (TrustLevel.NONE, None, 0.0)
    assert unrelated.repo_id == "someone/llama-3-8b-instruct"


def test_a_repo_name_exactly_at_the_minimum_similarity_counts():
    assert repo_name_similarity("abcde", "o/abcxy") == 0.6  # 2 * 3 matching / 10 characters
    match = name_only_match("abcde", "o/abcxy")
    assert (match.trust, match.confidence, match.repo_id) == (TrustLevel.LOW, 0.5, "o/abcxy")


def test_a_bundle_file_is_the_repo_file_at_the_same_relative_path():
    # A bare name: the repo file's name, in any folder, in any case.
    assert same_file_name("models/Model.Safetensors", "model.safetensors")
    assert not same_file_name("models/model.safetensors.bak", "model.safetensors")
    # A bundle's relative name: the whole repo path, or its tail after a "/".
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert same_file_name("UNet/diffusion_pytorch_model.safetensors", unet)
    assert same_file_name("sdxl/unet/diffusion_pytorch_model.safetensors", unet)
    assert not same_file_name("vae/diffusion_pytorch_model.safetensors", unet)
    assert not same_file_name("diffusion_pytorch_model.safetensors", unet)
    assert not same_file_name("xunet/diffusion_pytorch_model.safetensors", unet)


def _listing(*files: RepoFileEntry) -> RepoListing:
    return RepoListing("org/repo", None, 1, (), None, None, False, {}, files)


def test_a_set_matched_partly_by_hash_and_partly_by_a_similar_name_is_low():
    listing = _listing(
        RepoFileEntry("model-00001-of-00002.safetensors", 10, "a" * 64),
        RepoFileEntry("model-00002-of-00002.safetensors", 20, "b" * 64),
    )
    renamed = LocalFile("model-0002-of-0002.safetensors", 21)  # renamed, another size
    for first, method in (
        (LocalFile("model-00001-of-00002.safetensors", 10, sha256="a" * 64), "hash"),
        (LocalFile("model-00001-of-00002.safetensors", 10), "filename_exact"),  # not hashed
    ):
        match = match_listing(LookupRequest("model", (first, renamed)), listing, "model")
        assert (match.trust, match.method) == (TrustLevel.LOW, "filename_fuzzy")
        assert [e.method for e in match.evidence] == [method, "filename_fuzzy"]
        assert match.confidence == match.evidence[1].confidence < 0.85


def test_a_modified_file_names_the_repo_file_it_differs_from():
    listing = _listing(RepoFileEntry("weights/model.safetensors", 10, "a" * 64))
    for local in (
        LocalFile("model.safetensors", 10, sha256="f" * 64),  # same name and size, other bytes
        LocalFile("model.safetensors", 11),  # same name, another size
    ):
        match = match_listing(LookupRequest("model", (local,)), listing, "model")
        assert (match.trust, match.method, match.confidence) == (
            TrustLevel.MODIFIED, "hash_mismatch", 0.7)
        assert match.repo_id == "org/repo"
        assert match.matched_files == {"model.safetensors": "weights/model.safetensors"}
        assert match.expected_sha256 == {}  # not this file's hash: it was changed


def test_a_listing_without_sizes_is_no_evidence_of_a_change_but_a_hash_still_is():
    listing = _listing(RepoFileEntry("weights/model.safetensors", None, "a" * 64))
    unread = LocalFile("model.safetensors", 10)
    match = match_listing(LookupRequest("model", (unread,)), listing, "model")
    assert (match.trust, match.method, match.confidence) == (
        TrustLevel.LOW, "filename_fuzzy", 0.85)
    assert [(e.local, e.method) for e in match.evidence] == [(unread, "filename_fuzzy")]
    assert match.matched_files == {"model.safetensors": "weights/model.safetensors"}
    assert match.expected_sha256 == {"model.safetensors": "a" * 64}  # what settles it later

    changed = LocalFile("model.safetensors", 10, sha256="f" * 64)
    match = match_listing(LookupRequest("model", (changed,)), listing, "model")
    assert (match.trust, match.method, match.confidence) == (
        TrustLevel.MODIFIED, "hash_mismatch", 0.7)
    assert [(e.local, e.method, e.confidence) for e in match.evidence] == [
        (changed, "hash_mismatch", 0.7)]
    assert match.matched_files == {"model.safetensors": "weights/model.safetensors"}


def test_a_renamed_file_is_matched_to_the_most_similar_name_past_a_same_size_one():
    listing = _listing(
        RepoFileEntry("other.safetensors", 10, "b" * 64),  # same size, but not these bytes
        RepoFileEntry("my-model-v2.safetensors", 99, "c" * 64),  # a similar name
    )
    local = LocalFile("my-model-v1.safetensors", 10, sha256="a" * 64)
    match = match_listing(LookupRequest("my-model-v1", (local,)), listing, "my-model-v1")
    assert (match.trust, match.method) == (TrustLevel.LOW, "filename_fuzzy")
    assert match.matched_files == {"my-model-v1.safetensors": "my-model-v2.safetensors"}


def test_a_file_name_exactly_at_the_minimum_similarity_counts():
    listing = _listing(RepoFileEntry("abcxy.safetensors", 99, "c" * 64))
    local = LocalFile("abcde.safetensors", 10)  # 2 * 3 matching / 10 characters: 0.6
    match = match_listing(LookupRequest("abcde", (local,)), listing, "abcde")
    assert (match.trust, match.confidence) == (TrustLevel.LOW, 0.5)
    assert match.matched_files == {"abcde.safetensors": "abcxy.safetensors"}


def test_a_set_is_judged_by_its_weakest_file_and_the_share_of_files_matched():
    listing = _listing(
        RepoFileEntry("model-00001-of-00003.safetensors", 10, "a" * 64),
        RepoFileEntry("model-00002-of-00003.safetensors", 20, "b" * 64),
        RepoFileEntry("renamed-copy.safetensors", 30, "c" * 64),
    )
    hashed = LocalFile("model-00001-of-00003.safetensors", 10, sha256="a" * 64)
    exact = LocalFile("model-00002-of-00003.safetensors", 20)  # name and size, not hashed
    same_size = LocalFile("totally-other-name.safetensors", 30)  # a renamed copy? 0.85
    unknown = LocalFile("zzzz.safetensors", 7)  # matches nothing

    both = match_listing(LookupRequest("model", (hashed, exact)), listing, "model")
    assert (both.trust, both.method, both.confidence) == (TrustLevel.HIGH, "filename_exact", 0.95)

    two_of_three = match_listing(
        LookupRequest("model", (same_size, exact, unknown)), listing, "model")
    assert (two_of_three.trust, two_of_three.confidence) == (TrustLevel.LOW, 0.567)  # .85 * 2/3
    one_of_two = match_listing(LookupRequest("model", (same_size, unknown)), listing, "model")
    assert (one_of_two.trust, one_of_two.confidence) == (TrustLevel.LOW, 0.5)  # at least 0.5


def test_a_candidate_shows_the_match_and_the_repo_file_it_rests_on():
    listing = _listing(RepoFileEntry("weights/model.safetensors", 10, "a" * 64))
    local = LocalFile("model.safetensors", 10)
    candidate = to_candidate(match_listing(LookupRequest("m", (local,)), listing, "m"), 42)
    assert (candidate.repo_id, candidate.matched_file, candidate.size) == (
        "org/repo", "weights/model.safetensors", 10)
    assert (candidate.match_method, candidate.confidence, candidate.trust, candidate.downloads) == (
        "filename_exact", 0.95, TrustLevel.HIGH, 42)


def test_only_model_files_of_the_same_format_are_compared_by_name():
    local = LocalFile("my-model-v1.safetensors", 10)
    listing = _listing(
        RepoFileEntry("README.md", 5),  # not a model file: passed over, the scan goes on
        RepoFileEntry("my-model-v2.gguf", 99),  # another format: a similar name is no evidence
        RepoFileEntry("my-model-v2.safetensors", 99),
    )
    match = match_listing(LookupRequest("my-model-v1", (local,)), listing, "my-model-v1")
    assert match.matched_files == {"my-model-v1.safetensors": "my-model-v2.safetensors"}
    other_format = _listing(RepoFileEntry("my-model-v2.gguf", 99))
    assert match_listing(LookupRequest("x", (local,)), other_format, "x").trust is TrustLevel.NONE
