"""Bundles: a folder that is one model, and the sidecar files that belong to a single file.

A loader reads some models as a whole folder: `from_pretrained(<folder>)` needs config.json,
the tokenizer files and the weights together; a diffusers pipeline needs model_index.json and
its component folders; a vision GGUF needs its mmproj projector. Such a folder (a *bundle*)
is imported as one model, every file at its relative path, byte for byte.

- `detect`: which folders are bundle roots (decided by what the folder holds, never by its
  name), the files of a bundle with their roles, and what is left out (.git/, .cache/,
  *.incomplete, lock files).
- `describe`: model type and family from the bundle's own description (config.json,
  model_index.json), as tables.
- `sidecars`: the files beside a single model file that travel with it (<stem>.civitai.info,
  <stem>.preview.png, <stem>.yaml, ...).

Invariants:
- A bundle's relative paths come from walking its root; they never hold `..` or an absolute
  part, and each component is sanitised again before it names a file in the library.
- A folder that merely contains models (~/Downloads) is never a bundle: a root needs the
  description file a loader reads (config.json with architectures/model_type beside
  weights, model_index.json with component folders) or a GGUF folder holding nothing but
  one model, its mmproj and small companions.
"""

from modelimport.readers.bundles.detect import (
    Bundle,
    BundleFile,
    detect_bundle,
    read_bundle,
)
from modelimport.readers.bundles.sidecars import is_sidecar_name, sidecar_owner_stem, sidecars_of

__all__ = [
    "Bundle",
    "BundleFile",
    "detect_bundle",
    "is_sidecar_name",
    "read_bundle",
    "sidecar_owner_stem",
    "sidecars_of",
]
