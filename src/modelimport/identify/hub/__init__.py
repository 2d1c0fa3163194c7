"""Identify model files on the Hugging Face Hub: candidates, trust levels, cache, bounded calls.

Public API (what the importer and the `lookup` command use):

    session = HubSession(offline=False, timeout=5.0, refresh=False)
    result = session.identify(LookupRequest(name, files, folder_name, embedded_repos))
    result = settle_verification(result, {"file.safetensors": sha256})

Submodules: `records` (dataclasses), `client` (HubSession), `settle` (settle_verification),
`http` (one bounded GET), `candidates` (search queries, generic names), `scoring` (per-file
evidence -> trust level), `describe` (metadata from a repo), `cache` (disk cache). Hashing
of local files is `modelimport.hashing`.
"""

from modelimport.identify.hub.client import HubSession, HubUnavailable
from modelimport.identify.hub.records import (
    Candidate,
    LocalFile,
    LookupRequest,
    LookupResult,
    TrustLevel,
)
from modelimport.identify.hub.settle import settle_verification

__all__ = [
    "Candidate",
    "HubSession",
    "HubUnavailable",
    "LocalFile",
    "LookupRequest",
    "LookupResult",
    "TrustLevel",
    "settle_verification",
]
