"""The publisher file index: every file of every model repo of the publishers that hold most
of what people download, with its size and LFS SHA256, cached on disk.

Why: most image-model files people have sit in repos whose names share nothing with the
file (repackagers such as Comfy-Org's `*_ComfyUI_repackaged`, one person's bucket repo, a
collection of VAEs). No query made from the file name finds them; knowing what those
publishers hold does. Looked up by SHA256 the index is exact (Verified) and needs no network
once built; by name and size it names the repo to compare, at no Hub call.

What it owns: `store` (the SQLite file under the user cache folder, read-only for lookups),
`update` (building and refreshing it from the Hub, incrementally by each repo's
lastModified) and `catalog` (the default publishers and the evidence for each).
It imports only `identify.hub` (records, answer checks, the HTTP call) and never the
importer, the library or the CLI.

Invariants: an index entry is a candidate like a search hit: the scoring of its listing and
the file's SHA256 decide the trust level, exactly as for a repo found by search; an index
that is missing or unreadable is an empty index; the index never needs the network to be
read, and is never written by a lookup.
"""

from modelimport.identify.publishers.catalog import default_publishers, publisher_evidence
from modelimport.identify.publishers.lookup import verified_by_hash
from modelimport.identify.publishers.store import (
    IndexStats,
    PublisherIndex,
    index_path,
    open_index,
)
from modelimport.identify.publishers.update import (
    MAX_AGE_S,
    UpdateReport,
    refresh_stale,
    stale,
    update_index,
)

__all__ = [
    "MAX_AGE_S",
    "IndexStats",
    "PublisherIndex",
    "UpdateReport",
    "default_publishers",
    "index_path",
    "open_index",
    "publisher_evidence",
    "refresh_stale",
    "stale",
    "update_index",
    "verified_by_hash",
]
