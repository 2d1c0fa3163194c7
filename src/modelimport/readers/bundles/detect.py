"""Which folders are one model (bundle roots), and the files of a bundle with their roles.

A folder is a bundle root by what it holds (BUNDLE_RULES, first match wins):
- diffusers: `model_index.json` naming a pipeline class and at least one component folder
  that is here (unet/, vae/, transformer/, text_encoder/, ...);
- diffusers-component: `config.json` written by diffusers (`_class_name`) beside
  `diffusion_pytorch_model*` weights (a lone unet/ or vae/ folder);
- transformers: `config.json` with `architectures` or `model_type` beside weights (a
  transformers or sentence-transformers folder as `hf download` leaves it);
- gguf-folder: one GGUF model (a file or one split set) with its `mmproj*.gguf` vision
  projector, and nothing else but small companions (README, licence, template, images).

Everything under a root belongs to the bundle except what LEFT_OUT_DIRS and LEFT_OUT_FILES
name (version control, hf download's `.cache/`, unfinished downloads, lock files); those are
listed with the reason, never copied.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from modelimport.readers.shard_names import parse_shard_name

MAX_DESCRIPTION_BYTES = 4 * 1024 * 1024  # a config.json is kilobytes; refuse to read a huge one

# Folder name -> why it is not part of a bundle.
LEFT_OUT_DIRS: dict[str, str] = {
    ".git": "version control data",
    ".cache": "hf download's own metadata",
    ".huggingface": "hf download's own metadata",
    "__pycache__": "Python bytecode cache",
    ".ipynb_checkpoints": "notebook autosaves",
    ".modelimport": "a model library's own data",
}
# File name pattern -> why it is not part of a bundle.
LEFT_OUT_FILES: tuple[tuple[str, str], ...] = (
    (r"\.incomplete$", "an unfinished download"),
    (r"\.lock$", "a lock file"),
    (r"^\.DS_Store$", "Finder metadata"),
    (r"^Thumbs\.db$", "Windows thumbnail cache"),
)

# Relative path (posix, matched with re.search) -> role in metadata.json files[]; first wins.
ROLE_RULES: tuple[tuple[str, str], ...] = (
    (r"\.index\.json$", "index"),
    (
        r"(^|/)(tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|"
        r"added_tokens\.json|vocab\.(txt|json)|merges\.txt|spiece\.model|"
        r"sentencepiece\.bpe\.model|[^/]*\.tiktoken|chat_template\.(json|jinja))$",
        "tokenizer",
    ),
    (
        r"\.(safetensors|bin|pt|pth|ckpt|gguf|onnx|onnx_data|msgpack|h5|ot|tflite|pb|npz)$",
        "weights",
    ),
    (r"(^|/)tokenizer[^/]*/", "tokenizer"),
    (r"\.(json|ya?ml|jinja|xml)$", "config"),
    (r".", "companion"),
)

# Weights a transformers folder keeps beside its config.json (at its root).
TRANSFORMERS_WEIGHTS = re.compile(
    r"\.(safetensors|bin|pt|pth|msgpack|h5)$|\.index\.json$", re.IGNORECASE
)
DIFFUSERS_WEIGHTS = re.compile(r"^diffusion_pytorch_model.*\.(safetensors|bin)$", re.IGNORECASE)
MMPROJ = re.compile(r"mmproj", re.IGNORECASE)

# Files a GGUF folder may hold besides its GGUF files (LM Studio / hf download layouts).
GGUF_COMPANIONS = re.compile(
    r"(^readme|^license|^licence|^notice|^\.gitattributes$|^usage|\.(md|txt|json|jinja|"
    r"png|jpe?g|webp|yaml|yml)$)",
    re.IGNORECASE,
)


HF_CACHE_REPO_FOLDER = re.compile(r"models--.+--.+")


def search_folder_name(root: PurePath) -> str:
    """The folder name a bundle is looked up by: its own, except for a Hugging Face cache
    snapshot (`models--<org>--<name>/snapshots/<commit>/`), whose commit hash says nothing
    and whose repo folder names the repo (the Hub lookup takes `models--org--name` as its
    first candidate)."""
    if root.parent.name == "snapshots" and HF_CACHE_REPO_FOLDER.fullmatch(root.parent.parent.name):
        return root.parent.parent.name
    return root.name


def weights_order(path: PurePath) -> tuple[bool, int, str]:
    """Sort key of a bundle's weight files, the model's own first: a GGUF folder's model
    before its projector, then the shallowest, then by path. The first is the one a lookup
    is named by, so an import and a later `retry-pending` (which has only the relative
    paths of metadata.json) must order them alike: the key gives the same order for paths
    relative to the bundle root as for the absolute paths under it."""
    return bool(MMPROJ.search(path.name)), len(path.parts), str(path)


@dataclass(frozen=True)
class BundleFile:
    path: Path  # where the file is now (absolute)
    name: str  # its path relative to the bundle root, posix separators, as found
    role: str  # weights | config | tokenizer | companion | index


@dataclass(frozen=True)
class Bundle:
    root: Path
    kind: str  # transformers | diffusers | diffusers-component | gguf-folder
    reason: str  # one sentence: why this folder was taken as one model
    files: tuple[BundleFile, ...]
    left_out: tuple[tuple[str, str], ...] = ()  # (relative path, why it was left out)
    problems: tuple[str, ...] = ()  # what stops it from being imported whole

    @property
    def display_name(self) -> str:
        return f"{self.root.name}/"


def role_of(relative_name: str) -> str:
    for pattern, role in ROLE_RULES:
        if re.search(pattern, relative_name, re.IGNORECASE):
            return role
    return "companion"


def read_description(path: Path) -> dict[str, Any] | None:
    """A config.json / model_index.json as a dict, or None if it is not one we can read.

    The file is untrusted: bounded in size, and only a JSON object counts.
    """
    try:
        if path.stat().st_size > MAX_DESCRIPTION_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def detect_bundle(folder: Path, files: list[str], dirs: list[str]) -> tuple[str, str] | None:
    """(kind, reason) if `folder` is one model, else None; `files`/`dirs` are its entries."""
    for rule in BUNDLE_RULES:
        found = rule(folder, files, dirs)
        if found:
            return found
    return None


def _diffusers_pipeline(folder: Path, files: list[str], dirs: list[str]) -> tuple[str, str] | None:
    if "model_index.json" not in files:
        return None
    index = read_description(folder / "model_index.json")
    if not index or not isinstance(index.get("_class_name"), str):
        return None
    components = sorted(
        name for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and name in dirs
    )  # fmt: skip
    if not components:
        return None
    return (
        "diffusers",
        f"model_index.json names a {index['_class_name']} with component folders "
        f"{', '.join(c + '/' for c in components)}",
    )


def _diffusers_component(
    folder: Path, files: list[str], dirs: list[str]
) -> tuple[str, str] | None:
    if "config.json" not in files:
        return None
    weights = sorted(f for f in files if DIFFUSERS_WEIGHTS.search(f))
    if not weights:
        return None
    config = read_description(folder / "config.json")
    if not config or not isinstance(config.get("_class_name"), str):
        return None
    return (
        "diffusers-component",
        f"config.json describes a diffusers {config['_class_name']} beside {weights[0]}",
    )


def _transformers(folder: Path, files: list[str], dirs: list[str]) -> tuple[str, str] | None:
    if "config.json" not in files:
        return None
    weights = sorted(f for f in files if TRANSFORMERS_WEIGHTS.search(f))
    if not weights:
        return None
    config = read_description(folder / "config.json")
    if not config:
        return None
    architectures = config.get("architectures")
    model_type = config.get("model_type")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        says = f"architectures {architectures[0]}"
    elif isinstance(model_type, str) and model_type:
        says = f"model_type {model_type}"
    else:
        return None
    return "transformers", f"config.json names {says} beside {weights[0]}"


def _gguf_folder(folder: Path, files: list[str], dirs: list[str]) -> tuple[str, str] | None:
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    projectors = [f for f in ggufs if MMPROJ.search(f)]
    models = [f for f in ggufs if not MMPROJ.search(f)]
    if not projectors or not models:
        return None
    shard_bases = {(s.base, s.ext) if (s := parse_shard_name(f)) else f for f in models}
    if len(shard_bases) != 1:
        return None  # several models (quantisations) share the projector: not one model
    others = [f for f in files if f not in ggufs and not _left_out_file(f)]
    if any(not GGUF_COMPANIONS.search(f) for f in others):
        return None
    if any(d not in LEFT_OUT_DIRS for d in dirs):
        return None
    return "gguf-folder", f"{sorted(models)[0]} with its vision projector {projectors[0]}"


# Rules in order: a pipeline folder may hold a config.json too, a component's config.json
# also has no `architectures`; the first rule that recognises the folder decides.
BUNDLE_RULES = (_diffusers_pipeline, _diffusers_component, _transformers, _gguf_folder)


def link_leads_outside(path: Path, boundary: Path) -> bool:
    """Whether `path`, met while walking the folder `boundary` the person named, is a symbolic
    link whose target lies outside that folder: such a link is never followed (a downloaded
    folder's `tokenizer.json -> ~/.ssh/id_rsa` would copy a private file into the library).
    The Hugging Face cache's own links, from a snapshot into its repo's real `blobs/`, stay."""
    if not os.path.islink(path):
        return False
    target = os.path.realpath(path)
    allowed = [os.path.realpath(boundary)]
    for parent in Path(os.path.abspath(path)).parents:
        if HF_CACHE_REPO_FOLDER.fullmatch(parent.name):
            blobs = os.path.realpath(parent / "blobs")
            if blobs == os.path.join(os.path.realpath(parent), "blobs"):  # not a planted link
                allowed.append(blobs)
            break
    return not any(target == root or target.startswith(root.rstrip(os.sep) + os.sep)
                   for root in allowed)


def _left_out_file(name: str) -> str | None:
    for pattern, reason in LEFT_OUT_FILES:
        if re.search(pattern, name):
            return reason
    return None


def read_bundle(
    root: Path, kind: str, reason: str, exclude: tuple[int, int] | None = None,
    boundary: Path | None = None,
) -> Bundle:
    """Every file under `root` (symlinked folders followed once), with roles and what is left
    out. `exclude` is the (device, inode) of the library root, never walked into; a link
    leading outside `boundary` (the folder the person named, else `root`) is left out."""
    files: list[BundleFile] = []
    left_out: list[tuple[str, str]] = []
    problems: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(folder: Path, prefix: str) -> None:
        try:
            st = folder.stat()
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"the folder {folder} cannot be listed ({exc.strerror or exc})")
            return
        for entry in entries:
            relative = f"{prefix}{entry.name}"
            if link_leads_outside(Path(entry.path), boundary or root):
                left_out.append((relative, "a link leading outside the folder named"))
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                left_out.append((relative, "a broken symlink or unreadable entry"))
                continue
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if entry.name in LEFT_OUT_DIRS:
                    left_out.append((relative + "/", LEFT_OUT_DIRS[entry.name]))
                elif ident == exclude:
                    left_out.append((relative + "/", "the model library itself"))
                elif ident not in seen_dirs:
                    walk(Path(entry.path), relative + "/")
            elif not stat.S_ISREG(st.st_mode):
                left_out.append((relative, "not a regular file"))
            elif why := _left_out_file(entry.name):
                left_out.append((relative, why))
            else:
                files.append(BundleFile(Path(entry.path).absolute(), relative, role_of(relative)))

    walk(root, "")
    return Bundle(root.absolute(), kind, reason, tuple(files), tuple(left_out), tuple(problems))
