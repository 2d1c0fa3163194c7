"""Model file formats: validate a file by its content and read what it says about itself.

`inspect_file` is the one entry point. It recognises a file by its first bytes, never by its
name, reads a bounded amount (headers, never tensor data), never unpickles, and either returns
`FileFacts` or raises `InvalidModelFile` with one sentence naming the file.

Invariants:
- A declared length (safetensors header, GGUF string or array, pickle member) is checked
  against the file size and a fixed cap *before* anything of that length is allocated.
- Pickles are only disassembled (`pickletools.genops`) and interpreted symbolically; no
  global they name is ever imported or called.
- Every way `torch.load` could read a file is scanned or refused: a tar header refuses the
  file whatever else it is, and a file that parses as safetensors or GGUF and also runs as a
  pickle is refused as two formats at once (`_one_format`).
- `details` is JSON-serialisable and small: it goes into metadata.json. The tensor table,
  which can be large, travels separately in `FileFacts.tensors` for the probe.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.errors import InvalidModelFile, UnreadableFile

# Formats, by the magic bytes they start with. A safetensors file has no magic: it starts
# with its header length, so it is what remains once the others are ruled out, except that
# a length whose low bytes read 80 02..80 05 looks like a pickle: such a file is tried as
# safetensors first (a pickle never parses as one: its length would exceed the file).
GGUF_MAGIC = b"GGUF"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOLS = range(2, 6)
# Every `FileFacts.format`: a file recorded in metadata.json with one of these was read by
# `inspect_file` (the files an import looks up); any other format (a bundle's ONNX or
# OpenVINO weights, configs) is a file carried as it is.
READ_FORMATS = frozenset({"safetensors", "gguf", "torch-zip", "pickle"})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a header describes it; `dtype` uses safetensors spelling (F16, BF16, ...)
    or, for GGUF, the ggml type name (Q4_K, F16, ...)."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class FileFacts:
    """What one file says about itself; `details` is JSON-serialisable and goes to metadata.json."""

    path: Path
    format: str  # "safetensors" | "gguf" | "torch-zip" | "pickle"
    size: int
    details: dict[str, Any] = field(default_factory=dict)
    # name -> TensorInfo, in file order; for the probe only (too big for metadata.json).
    tensors: dict[str, TensorInfo] = field(default_factory=dict, repr=False, compare=False)


def inspect_file(path: Path, *, require_tensors: bool = True) -> FileFacts:
    """Validate `path` by content and read its header; raise `InvalidModelFile` if it is not
    a model file we can import. `require_tensors=False` reads a pickle that holds no tensors
    (a folder model's training_args.bin) for its scan instead of refusing it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(TAR_HEADER_BYTES)
    except IsADirectoryError as exc:
        raise InvalidModelFile(f"{path.name} is a folder, not a model file.") from exc
    except PermissionError as exc:
        raise UnreadableFile(f"Permission denied reading {path}.") from exc
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnreadableFile(f"{path.name} could not be read ({reason}).") from exc
    if size == 0:
        raise InvalidModelFile(f"{path.name} is empty.")
    from modelimport.formats.torch_file import is_tar

    if is_tar(head):  # whatever else it parses as, torch.load reads it as a tar
        raise InvalidModelFile(_TAR.format(name=path.name))
    head = head[:8]
    if head[:4] == GGUF_MAGIC:
        from modelimport.formats.gguf_file import inspect_gguf

        return _one_format(inspect_gguf(path, size))
    if head[:4] == ZIP_MAGIC:
        from modelimport.formats.torch_file import inspect_torch_zip

        return inspect_torch_zip(path, size, require_tensors)
    if len(head) >= 2 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS:
        from modelimport.formats.safetensors_file import inspect_safetensors
        from modelimport.formats.torch_file import inspect_pickle

        # A safetensors header of 640, 896, 1152 or 1408 bytes (plus any multiple of 65536)
        # starts with the same bytes as a pickle: a file that parses as safetensors is one.
        facts = None
        if len(head) == 8:
            with contextlib.suppress(InvalidModelFile):
                facts = inspect_safetensors(path, size, head)
        return _one_format(facts) if facts else inspect_pickle(path, size, require_tensors)
    if len(head) == 8:
        from modelimport.formats.safetensors_file import inspect_safetensors
        from modelimport.formats.torch_file import inspect_pickle, runs_as_pickle

        try:
            facts = inspect_safetensors(path, size, head)
        except InvalidModelFile:
            if runs_as_pickle(path, size):  # a protocol 0 or 1 pickle: torch.load reads it
                return inspect_pickle(path, size, require_tensors)
            text = _text_file(path)
            if text:
                raise InvalidModelFile(text) from None
            if path.suffix.lower() in PICKLE_SUFFIXES:
                # Named like a checkpoint: saying it is "not valid safetensors" would mislead.
                raise InvalidModelFile(_NOT_A_MODEL.format(name=path.name)) from None
            raise
        return _one_format(facts)
    raise InvalidModelFile(_text_file(path) or _NOT_A_MODEL.format(name=path.name))


TAR_HEADER_BYTES = 512
_TAR = ("{name} is a tar archive: torch.load would unpickle its members (PyTorch's oldest "
        "format), which this tool does not import.")


def _one_format(facts: FileFacts) -> FileFacts:
    """`facts`, unless the file also runs as a pickle: `torch.load` of it (named .ckpt) would
    then unpickle what our reader of the other format never looked at."""
    from modelimport.formats.torch_file import runs_as_pickle

    if runs_as_pickle(facts.path, facts.size):
        raise InvalidModelFile(
            f"{facts.path.name} parses both as {facts.format} and as a pickle; "
            "a file that is two formats at once is refused."
        )
    return facts


# Files that sit beside models, by extension -> what to call them once their content has
# failed to parse as a model.
TEXT_FILE_KINDS = {
    ".json": "a JSON file", ".txt": "a text file", ".md": "a text file",
    ".yaml": "a YAML config file", ".yml": "a YAML config file", ".toml": "a TOML config file",
    ".py": "a Python script", ".html": "a web page", ".htm": "a web page",
    ".info": "a JSON file",
}
# Keys that make a JSON file a model's config or a sharded set's index -> what to call it.
JSON_FILE_KINDS = (
    ("weight_map", "the index of a sharded model (it names the shards; import those)"),
    ("_class_name", "a diffusers config file (JSON)"),
    ("architectures", "a model config file (JSON)"),
    ("model_type", "a model config file (JSON)"),
)
MAX_TEXT_SNIFF = 64 * 1024  # a config.json is a few KiB; a bigger one is just "JSON"


def _text_file(path: Path) -> str | None:
    """The one-sentence refusal for a config or text file, or None if it is not one."""
    kind = TEXT_FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        return None
    if path.suffix.lower() in (".json", ".info"):
        import json

        try:
            with open(path, "rb") as fh:
                body = json.loads(fh.read(MAX_TEXT_SNIFF))
        except (OSError, ValueError, RecursionError):  # [[[[... is a JSON file all the same
            body = None
        if isinstance(body, dict):
            kind = next((k for key, k in JSON_FILE_KINDS if key in body), "a JSON config file")
    return f"{path.name} is {kind}, not a model file."


# Extensions PyTorch checkpoints use (a safetensors file may wear them too).
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_NOT_A_MODEL = (
    "{name} is not a model file: not a PyTorch checkpoint (ZIP or pickle), "
    "safetensors or GGUF."
)


__all__ = ["FileFacts", "TensorInfo", "inspect_file"]
