"""Names: turning untrusted strings into safe path components, and file names into model names.

Every path component the library creates goes through `sanitize_component`; names from the
Hub or from inside model files are untrusted and must never place a file outside the library.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

MAX_COMPONENT_LENGTH = 96

MODEL_EXTENSIONS = (".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin")

# Tokens that describe how a file was stored, not which model it is; dropped from search
# queries and slugs. Matched case-insensitively as whole tokens.
QUANT_TOKENS = re.compile(
    r"^(i?q[1-8](_[0-9a-z]+)*|f16|f32|bf16|fp16|fp32|fp8|fp8_e4m3fn|fp8_e5m2|int8|int4|"
    r"4bit|8bit|nf4|gptq|awq|exl2|half|full|pruned|ema|emaonly|noema|safetensors|gguf)$",
    re.IGNORECASE,
)
SHARD_SUFFIX = re.compile(r"[-_.](\d{1,5})-of-(\d{1,5})$|\.part\d+$", re.IGNORECASE)
# Cleaned names (lower case) of files that name their role in a repo, not a model; people
# keep such files in a folder named after the repo, so the folder's name stands in for them.
GENERIC_STEMS = frozenset(
    {
        "model",
        "pytorch-model",
        "diffusion-pytorch-model",
        "tf-model",
        "flax-model",
        "adapter-model",
        "consolidated",
        "ggml-model",
        "weights",
        "unet",
        "vae",
        "text-encoder",
    }
)
_TOKEN_SPLIT = re.compile(r"[-_\s]+|(?<!\d)\.|\.(?!\d)")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+\-]+")


def sanitize_component(raw: str, fallback: str = "unnamed") -> str:
    """One safe path component: no separators, no `..`, no control characters, bounded length."""
    text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE_CHARS.sub("-", text).strip("-.")
    text = re.sub(r"-{2,}", "-", text)[:MAX_COMPONENT_LENGTH].strip("-.")
    return text or fallback


def slugify(raw: str, fallback: str = "model") -> str:
    """A lower-case slug for a model directory."""
    return sanitize_component(raw.lower(), fallback=fallback)


def strip_model_extension(filename: str) -> str:
    """`a.safetensors` -> `a`; `a.safetensors.part2` -> `a`; `a.safetensors.index.json` -> `a`."""
    name = PurePath(filename).name
    name = re.sub(r"\.part\d+$", "", name, flags=re.IGNORECASE)
    name = re.sub(r"\.index\.json$", "", name, flags=re.IGNORECASE)
    for ext in MODEL_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def clean_model_name(filename: str) -> str:
    """The model's name as people search for it: extension, shard suffix, quant tags dropped.

    `Meta-Llama-3-8B-Instruct-Q4_K_M.gguf` -> `Meta-Llama-3-8B-Instruct`.
    """
    stem = SHARD_SUFFIX.sub("", strip_model_extension(filename))
    # Quant names such as Q4_K_M contain separators; remove them before tokenising.
    stem = re.sub(r"(?i)(?<![A-Za-z0-9])i?q[1-8](_[0-9a-z]{1,2}){0,2}(?![A-Za-z0-9])", "", stem)
    tokens = [t for t in _TOKEN_SPLIT.split(stem) if t and not QUANT_TOKENS.match(t)]
    return "-".join(tokens) or stem or filename


def is_generic_name(filename: str) -> bool:
    """True for names like `model.safetensors` or `model-00001-of-00004.safetensors`."""
    return clean_model_name(filename).lower() in GENERIC_STEMS


def model_name_for(path: PurePath) -> str:
    """The name a model file is known by: its cleaned name, or its folder's for generic names."""
    if is_generic_name(path.name) and path.parent.name:
        return clean_model_name(path.parent.name)
    return clean_model_name(path.name)
