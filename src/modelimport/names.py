"""Names: turning untrusted strings into safe path components, and file names into model names.

Every path component the library creates goes through `sanitize_component`; names from the
Hub or from inside model files are untrusted and must never place a file outside the library.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

# In UTF-8 bytes: well under the 255-byte NAME_MAX of common file systems (and eCryptfs'
# 143), leaving room for the `N-` and `-N` the importer adds to keep two names apart.
MAX_COMPONENT_BYTES = 128
# Slugs stop short of the bound so that `<slug>-N` is still a whole component.
SLUG_RESERVE_BYTES = 8

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
        "pytorch-lora-weights",
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
# Kept as they are besides letters, marks and digits of any script.
_KEPT_PUNCTUATION = frozenset("._+-")
# A run of dots and dashes holding a dot becomes one dot: no `..`, no `name-.ext`.
_DOT_RUN = re.compile(r"[-.]*\.[-.]*")
# The extensions kept whole when a name is shortened (`.safetensors`, `.safetensors.part2`,
# `.index.json`): up to three, longest first. ASCII only, so they always fit in the bound.
_SUFFIXES = tuple(re.compile(rf"(?:\.[A-Za-z0-9]{{1,16}}){{{n}}}$") for n in (3, 2, 1))
# What os.fsdecode makes of bytes that are not UTF-8 (\udc80-\udcff), and any other lone
# surrogate a JSON header may smuggle in: not text, and SQLite and UTF-8 files refuse them.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Names Windows keeps for devices, with or without an extension (learn.microsoft.com, "Naming
# Files, Paths, and Namespaces"); the superscript digits count too.
_WINDOWS_DEVICE = re.compile(r"(?i)^(con|prn|aux|nul|conin\$|conout\$|(com|lpt)[0-9¹²³])$")


def sanitize_component(
    raw: str, fallback: str = "unnamed", max_bytes: int = MAX_COMPONENT_BYTES
) -> str:
    """One safe path component: no separators, no `..`, no control characters, bounded length.

    Letters, marks and digits of any script are kept (NFC), and `._+-`; anything else (slashes,
    spaces, brackets, controls, undecodable bytes) becomes `-`. The result never starts with a
    dot and is at most `max_bytes` of UTF-8; a long name loses the end of its stem, never its
    extension, so `x.safetensors` stays a `.safetensors` file.
    """
    text = "".join(
        ch if ch in _KEPT_PUNCTUATION or unicodedata.category(ch)[0] in "LMN" else "-"
        for ch in unicodedata.normalize("NFC", raw)
    )
    text = re.sub(r"-{2,}", "-", _DOT_RUN.sub(".", text))
    stem, suffix = _split_suffix(text)
    stem = stem.strip("-.").encode()[: max_bytes - len(suffix)].decode("utf-8", "ignore")
    stem = stem.strip("-.")
    if not stem:
        if not fallback:
            return ""
        stem = fallback
    return _not_a_windows_device(stem + suffix)


def _not_a_windows_device(name: str) -> str:
    """`con.safetensors` -> `con_.safetensors`: Windows takes CON, NUL, COM1 ... (any case, any
    extension) for devices, not files. Done on every system, so ids are the same on all."""
    base = name.split(".", 1)[0]
    if _WINDOWS_DEVICE.match(base):
        return base + "_" + name[len(base) :]
    return name


def _split_suffix(text: str) -> tuple[str, str]:
    """(stem, extensions): the most extensions that still leave a stem (`..safetensors` has
    none left, and gets the caller's fallback stem)."""
    found = [m for m in (p.search(text) for p in _SUFFIXES) if m]
    for match in found:
        if text[: match.start()].strip("-."):
            return text[: match.start()], match.group()
    return ("", found[-1].group()) if found else (text, "")


def slugify(raw: str, fallback: str = "model") -> str:
    """A lower-case slug for a model directory (any script's letters kept, see above)."""
    return sanitize_component(
        raw.lower(), fallback=fallback, max_bytes=MAX_COMPONENT_BYTES - SLUG_RESERVE_BYTES
    )


def valid_text(text: str) -> str:
    """`text` with every lone surrogate (an undecodable byte of a file name) as U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)


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
    # Undecodable bytes separate words like any other junk between them.
    name = _LONE_SURROGATE.sub("-", unicodedata.normalize("NFC", filename))
    stem = SHARD_SUFFIX.sub("", strip_model_extension(name))
    # Quant names such as Q4_K_M contain separators; remove them before tokenising.
    stem = re.sub(r"(?i)(?<![A-Za-z0-9])i?q[1-8](_[0-9a-z]{1,2}){0,2}(?![A-Za-z0-9])", "", stem)
    tokens = [t for t in _TOKEN_SPLIT.split(stem) if t and not QUANT_TOKENS.match(t)]
    return "-".join(tokens) or stem or name


def is_generic_name(filename: str) -> bool:
    """True for names like `model.safetensors` or `model-00001-of-00004.safetensors`."""
    return clean_model_name(filename).lower() in GENERIC_STEMS


def model_name_for(path: PurePath) -> str:
    """The name a model file is known by: its cleaned name, or its folder's for generic names."""
    if is_generic_name(path.name) and path.parent.name:
        return clean_model_name(path.parent.name)
    return clean_model_name(path.name)


def human_size(size: int | float) -> str:
    """A byte count as people read it: 1.5 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


WINDOWS_RESERVED = frozenset('<>:"|?*')


def keep_or_sanitize_component(raw: str, fallback: str = "unnamed") -> str:
    """A library path component kept exactly when that is safe, else `sanitize_component`.

    Files inside a bundle are found by name (modules.json names `1_Pooling`, an index json
    names every shard, tokenizer_config.json names its files), so a renamed file breaks the
    loader; a LoRA's file name is what A1111's `<lora:name>` and a workflow use. A name is
    kept when it is one component (no separator, not `.` or `..`), has no control character,
    undecodable byte nor character Windows refuses, is no Windows device name (`nul.pt`),
    does not end in a space or dot, is NFC,
    and fits the bound; `.gitattributes` stays `.gitattributes`. Anything else gets the
    library's usual treatment.
    """
    if (
        raw not in ("", ".", "..")
        and "/" not in raw
        and "\\" not in raw
        and not any(ch in WINDOWS_RESERVED for ch in raw)  # a library on SMB, a Windows app
        and not raw.endswith((" ", "."))
        and _not_a_windows_device(raw) == raw
        and not _LONE_SURROGATE.search(raw)
        and all(unicodedata.category(ch)[0] != "C" for ch in raw)
        and unicodedata.normalize("NFC", raw) == raw
        and len(raw.encode()) <= MAX_COMPONENT_BYTES
    ):
        return raw
    return sanitize_component(raw, fallback=fallback)
