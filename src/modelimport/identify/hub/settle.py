"""Settling a lookup once the file's SHA256 is known: Verified, or the candidate holding these
bytes, or Modified; and whether another candidate holds the same name and size with other
bytes (then the name and size alone no longer say which repo it is)."""

from __future__ import annotations

from dataclasses import replace

from modelimport.identify.hub.records import CONFIDENCE, LookupResult, TrustLevel


def _other_bytes_same_size(result: LookupResult, others: list[LookupResult]) -> bool:
    """Does another candidate list a file of the same name and size with another sha256?"""
    mine = result.expected_sha256
    sizes = {
        f["path"]: f["size"] for f in result.metadata.get("repo_files") or [] if "path" in f
    }
    for other in others:
        other_sizes = {
            f["path"]: f["size"] for f in other.metadata.get("repo_files") or [] if "path" in f
        }
        for name, sha in other.expected_sha256.items():
            here = result.matched_files.get(name)
            there = other.matched_files.get(name)
            if (
                name in mine
                and mine[name].lower() != sha.lower()
                and here is not None
                and there is not None
                and sizes.get(here) == other_sizes.get(there)
            ):
                return True
    return False


def settle_verification(
    result: LookupResult, sha256_by_name: dict[str, str], *, whole_set: bool = True
) -> LookupResult:
    """Decide a pending verification; when these bytes are not the chosen repo's, the other
    candidates holding files of the same names (`alternates`) are tried before Modified:
    Modified means no candidate holds these bytes."""
    settled = _settle_one(result, sha256_by_name, whole_set=whole_set)
    if settled.trust is TrustLevel.VERIFIED or not result.alternates:
        return settled
    for alternate in result.alternates:
        other = _settle_one(alternate, sha256_by_name, whole_set=whole_set)
        if other.trust is TrustLevel.VERIFIED:
            return replace(other, candidates=result.candidates, alternates=())
    return settled


def _settle_one(
    result: LookupResult, sha256_by_name: dict[str, str], *, whole_set: bool = True
) -> LookupResult:
    """Decide a pending verification once the full sha256s are known (from the copy stream).

    Verified only when every file of the result has a sha256 equal to the one the Hub lists
    and the set is whole (`whole_set`: no shard missing). Any different -> Modified version
    (hash_mismatch), except for a fuzzy match, which stays Low confidence. A file the Hub
    lists no sha256 for, or a missing shard, was not compared: at most High confidence.
    Nothing to compare -> unchanged.
    """
    expected = result.expected_sha256
    compared = {
        name: sha256_by_name[name].lower() == sha.lower()
        for name, sha in expected.items()
        if sha256_by_name.get(name)
    }
    if not all(compared.values()):
        if result.match_method == "filename_fuzzy":
            # Only the guess "same size, so a renamed copy" is refuted; the similar name
            # remains what it was: low-confidence evidence, not a modified version.
            return replace(result, pending_verification=False, expected_sha256={})
        return replace(
            result,
            trust=TrustLevel.MODIFIED,
            match_method="hash_mismatch",
            confidence=CONFIDENCE["hash_mismatch"],
            pending_verification=False,
            metadata={**result.metadata, "hash_mismatch": True},
        )
    every_file = result.local_files or tuple(result.matched_files)
    if whole_set and every_file and all(compared.get(name) for name in every_file):
        return replace(
            result,
            trust=TrustLevel.VERIFIED,
            match_method="hash",
            confidence=CONFIDENCE["hash"],
            pending_verification=False,
            metadata={**result.metadata, "hash_mismatch": False},
        )
    if compared and len(compared) == len(expected):
        result = replace(result, pending_verification=False)  # nothing left to compare
    if result.trust is TrustLevel.VERIFIED and not whole_set:
        result = replace(
            result,
            trust=TrustLevel.HIGH,
            match_method="filename_exact",
            confidence=CONFIDENCE["filename_exact"],
        )
    return result
