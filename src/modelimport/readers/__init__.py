"""Model readers: which files on disk form one model, read from names and small descriptions.

- `collect`: expand the paths a person names into candidate model files (walking folders,
  sidecars beside a single file, folders that are one model);
- `shard_names` and `shards`: which names belong to a sharded set, and the files of each set
  with what it lacks;
- `bundles`: folders that are one model (diffusers, transformers, GGUF with its projector),
  their description, and the sidecar files of a single model file.

Everything above reads models through these: the import, `shards`, completing a model from
the Hub, lookup and retry-pending, the library's check.

Must never import: the use cases (importer), the capabilities (apps, downloads, identify),
the CLI, rich or typer. It sits below the store; `collect` still asks library.layout whether
a link leads into the library (is_within), the one arrow up left to move to the basics.
"""
