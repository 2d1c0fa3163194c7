"""metadata.json records: field precedence and what a Hub match changes."""

from __future__ import annotations

from modelimport.identify.hub.records import LookupResult, TrustLevel
from modelimport.library.metadata import apply_lookup, new_record, resolve_fields, set_candidate


def _record(**file_says: str) -> dict:
    record = new_record()
    for field, value in file_says.items():
        set_candidate(record, field, "file", value)
    set_candidate(record, "family", "filename", "sd15")
    resolve_fields(record)
    return record


def _match(trust: TrustLevel, method: str, confidence: float, **meta: str) -> LookupResult:
    return LookupResult(
        trust=trust,
        match_method=method,
        confidence=confidence,
        repo_id="org/repo",
        pending_verification=False,
        metadata=dict(meta),
    )


def test_file_contents_beat_the_filename():
    record = _record(family="sdxl")
    assert record["family"] == "sdxl" and record["field_sources"]["family"] == "file"


def test_filename_is_the_fallback_when_the_file_says_nothing():
    record = _record()
    assert record["family"] == "sd15" and record["field_sources"]["family"] == "filename"


def test_unverified_hub_match_does_not_override_the_file():
    record = _record(family="sdxl", model_type="checkpoint")
    apply_lookup(record, _match(TrustLevel.LOW, "filename_fuzzy", 0.6, family="flux"))
    assert record["family"] == "sdxl" and record["field_sources"]["family"] == "file"
    assert record["trust_level"] == "low_confidence" and record["repo_id"] == "org/repo"


def test_a_verified_match_never_overrides_what_the_structure_proves():
    record = _record(family="sdxl", model_type="lora")
    apply_lookup(
        record,
        _match(
            TrustLevel.VERIFIED, "hash", 1.0,
            family="pony", model_type="checkpoint", cleaned_name="pony-diffusion",
        ),
    )
    assert (record["model_type"], record["family"]) == ("lora", "sdxl")
    assert record["field_sources"]["model_type"] == record["field_sources"]["family"] == "file"
    # What the file cannot tell, a verified match fills.
    assert record["cleaned_name"] == "pony-diffusion"
    assert record["field_sources"]["cleaned_name"] == "hub_verified"


def test_a_verified_match_beats_a_family_the_name_or_a_default_gave():
    record = _record(model_type="vae")  # family sd15 from the file name
    apply_lookup(record, _match(TrustLevel.VERIFIED, "hash", 1.0, family="sdxl"))
    assert record["family"] == "sdxl" and record["field_sources"]["family"] == "hub_verified"
    record = new_record()
    set_candidate(record, "family", "default", "sd15")
    apply_lookup(record, _match(TrustLevel.HIGH, "filename_exact", 0.95, family="sdxl"))
    assert record["family"] == "sdxl" and record["field_sources"]["family"] == "hub"


def test_unverified_hub_fills_what_the_file_left_open():
    record = _record(model_type="checkpoint")
    set_candidate(record, "cleaned_name", "filename", "my-file")
    apply_lookup(
        record, _match(TrustLevel.HIGH, "filename_exact", 0.95, cleaned_name="stable-diffusion-xl")
    )
    assert record["cleaned_name"] == "stable-diffusion-xl"
    assert record["field_sources"]["cleaned_name"] == "hub"


def test_user_edit_beats_everything():
    record = _record()
    apply_lookup(record, _match(TrustLevel.VERIFIED, "hash", 1.0, family="pony"))
    set_candidate(record, "family", "user", "illustrious")
    resolve_fields(record)
    assert record["family"] == "illustrious" and record["field_sources"]["family"] == "user"


def test_hub_failure_only_counts_the_attempt():
    record = _record(family="sdxl")
    failed = LookupResult(
        trust=TrustLevel.NONE,
        match_method=None,
        confidence=0.0,
        repo_id=None,
        pending_verification=False,
        hub_error="Hub down",
    )
    apply_lookup(record, failed)
    apply_lookup(record, failed)
    assert record["pending_online_lookup"] is True
    assert record["lookup_attempts"] == 2 and record["last_lookup_attempt"]
    assert record["repo_id"] is None and record["family"] == "sdxl"
