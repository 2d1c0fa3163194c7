"""Probe: what model a set of files is, from their contents first and their names last.

Package layout: `core` (probe_model and the decisions), `rules` + `key_rules.toml` (tensor-name
rules, as data), `shapes` (family from shapes), `tables` (every other table), `provenance`
(repositories a file names). Invariant: the probe reads only what `formats.inspect_file`
returned (headers, names, shapes); it never opens files and never unpickles.
"""

from modelimport.probe.core import ModelProbe, probe_model
from modelimport.probe.provenance import as_repo_id
from modelimport.probe.tables import MODEL_TYPES

__all__ = ["MODEL_TYPES", "ModelProbe", "as_repo_id", "probe_model"]
