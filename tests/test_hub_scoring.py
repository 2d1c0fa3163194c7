"""identify/hub/scoring.py's numbers, pinned where a person reads them: the confidence a
fuzzy match is given, and what a repo's name alone is worth (mutation testing found these
unpinned; docs/testing.md)."""

from __future__ import annotations

from modelimport.identify.hub import TrustLevel
from modelimport.identify.hub.scoring import (
    fuzzy_confidence,
    name_only_match,
    repo_name_similarity,
)


def test_fuzzy_confidence_maps_the_similarity_range_onto_the_fuzzy_range():
    assert fuzzy_confidence(0.6) == 0.5  # the least similarity that counts: the least trust
    assert fuzzy_confidence(1.0) == 0.85  # the same name: still below filename_exact (0.9)
    assert fuzzy_confidence(0.8) == 0.675  # linear in between
    assert fuzzy_confidence(2 / 3) == 0.558  # to three decimals, as metadata.json shows it
    assert fuzzy_confidence(0.3) == 0.5 and fuzzy_confidence(1.5) == 0.85  # clamped


def test_a_repo_name_alone_is_compared_without_its_owner():
    # The owner's name is not the model's: "madebyollin/sdxl-vae" is named "sdxl-vae".
    match = name_only_match("sdxl-vae", "madebyollin/sdxl-vae")
    assert (match.trust, match.method, match.confidence) == (TrustLevel.LOW, "filename_fuzzy", 0.6)
    assert match.repo_id == "madebyollin/sdxl-vae"
    unrelated = name_only_match("sdxl-vae", "someone/llama-3-8b-instruct")
    assert (unrelated.trust, unrelated.method, unrelated.confidence) == (TrustLevel.NONE, None, 0.0)


def test_a_repo_name_exactly_at_the_minimum_similarity_counts():
    assert repo_name_similarity("abcde", "o/abcxy") == 0.6  # 2 * 3 matching / 10 characters
    match = name_only_match("abcde", "o/abcxy")
    assert (match.trust, match.confidence, match.repo_id) == (TrustLevel.LOW, 0.5, "o/abcxy")
