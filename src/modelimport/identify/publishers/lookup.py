"""Exact identification by SHA256 once a model's bytes are read: a file renamed by its owner
(`my_upscaler.pth`) is still found, in whichever repo of an indexed publisher holds it."""

from __future__ import annotations

from dataclasses import replace

from modelimport.identify.hub.records import LookupRequest, LookupResult, TrustLevel
from modelimport.identify.publishers.store import index_path


def verified_by_hash(
    request: LookupRequest, sha256_by_name: dict[str, str]
) -> LookupResult | None:
    """A Verified result when an indexed repo holds every file of the request with these
    SHA256s; None otherwise (no index, a file unknown, a set not whole). No network."""
    if not index_path().is_file() or not request.files:
        return None
    files = tuple(replace(f, sha256=sha256_by_name.get(f.name) or f.sha256) for f in request.files)
    if not all(f.sha256 for f in files):
        return None
    from modelimport.identify.hub.client import HubSession

    session = HubSession(offline=True)
    result = session.identify_from_index(replace(request, files=files))
    if result is None or result.trust is not TrustLevel.VERIFIED:
        return None
    return result
