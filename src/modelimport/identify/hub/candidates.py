"""Where to look on the Hub: search queries from a model's names, and how to rank what they find.

The Hub's `search` matches a case-insensitive substring of the repo id and nothing else, so a
query is useful when it is a run of words the repo id also spells. A person looking for
`sd3.5_large_controlnet_blur.safetensors` tries the whole name, then the name in the Hub's
usual spelling (`-` between words), then drops words from either end (`large-controlnet-blur`
finds `stabilityai/stable-diffusion-3.5-large-controlnet-blur`), and finally single
distinctive words. `search_queries` yields queries in that order; the client stops once a
listed repo holds a file of the same name and size, and skips any query containing one that
found nothing (a longer substring cannot match where a shorter one did not).

Names inside the file (`hints`: GGUF general.basename/size_label/finetune, modelspec.title,
kohya ss_output_name, config _name_or_path) are queried right after the file's own name.

Generic file names (`model.safetensors`, `diffusion_pytorch_model.safetensors`) say nothing
about the model, so the folder they sit in is searched instead (people keep repo downloads in
folders named after the repo, including the Hub cache's `models--org--name`), unless the folder
is itself generic (`Downloads`, `models`, `loras`): then the probe's family and type
(`sdxl-vae`) are all there is to search.

`rank_hits` orders search results by how much of the name a repo id spells, so the listings
(one call each) go to the likeliest repos first, not to the most downloaded distractor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from modelimport.identify.hub.records import LocalFile, LookupRequest, SearchHit
from modelimport.names import (
    GENERIC_STEMS,
    QUANT_TOKENS,
    SHARD_SUFFIX,
    clean_model_name,
    is_generic_name,
    strip_model_extension,
)

MIN_QUERY_LENGTH = 3
MIN_WORD_QUERY_LENGTH = 4  # a single word shorter than this matches half the Hub
MAX_WINDOW_QUERIES = 12  # beyond this the budget is spent long before

# Trailing tokens that mark a person's copy rather than the model ("v2", "final", "copy (1)").
VERSION_NOISE = re.compile(r"^(v\d+(\.\d+)*|final|fixed|new|copy|latest|\(\d+\)|\d{8})$", re.I)

# Words too common to find anything on their own (matched as whole lower-case tokens). They
# still count inside longer queries and when ranking.
COMMON_WORDS = frozenset(
    {
        "model", "models", "base", "instruct", "chat", "it", "hf", "v1", "v2", "v3", "v1.0",
        "1.0", "2.0", "the", "and", "for", "with", "large", "small", "medium", "mini", "tiny",
        "lora", "vae", "unet", "clip", "text", "encoder", "diffusion", "pytorch", "weights",
        "fp16", "fp32", "bf16", "fp8", "gguf", "safetensors", "pruned", "ema", "emaonly",
        "final", "latest", "full", "dev", "pro", "xl", "sd", "x4", "4x", "2x", "8x", "1x",
        "beta", "alpha", "controlnet", "adapter", "image", "video", "turbo", "lightning",
        "quantized", "merged", "uncensored", "distilled", "preview", "release", "original",
    }
)

# Folder names that say where a file was put, not what it is: never searched.
GENERIC_FOLDERS = frozenset(
    {
        "downloads", "download", "desktop", "documents", "home", "tmp", "temp", "models",
        "model", "checkpoints", "checkpoint", "stable-diffusion", "lora", "loras", "lycoris",
        "vae", "vae-approx", "unet", "diffusion-models", "text-encoders", "clip", "clip-vision",
        "controlnet", "upscale-models", "esrgan", "embeddings", "hypernetworks", "ipadapter",
        "gguf", "llm", "llms", "weights", "files", "data", "new-folder", "output", "input",
        "comfyui", "invokeai", "lm-studio", "lmstudio", "ollama", "style-models", "photomaker",
    }
)

# Probe model type -> the word repo ids use for it (for generic names in generic folders).
TYPE_WORDS: dict[str, str] = {
    "vae": "vae",
    "lora": "lora",
    "controlnet": "controlnet",
    "upscaler": "upscaler",
    "text_encoder": "text-encoder",
    "embedding": "embedding",
}

# A Hub repo id: one or two components of the characters the Hub allows.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_HUB_CACHE_FOLDER = re.compile(r"^models--([^/]+?)--(.+)$")
_REPO_URL = re.compile(r"^(?:https?://(?:www\.)?huggingface\.co/|hf://)?([^?#]+?)/?$")
# Separators between words; a dot between digits is a version (`3.5`) and stays in its word.
_SEPARATOR = re.compile(r"([-_\s]+|(?<!\d)\.|\.(?!\d))")
_QUANT_SPAN = re.compile(r"(?i)(?<![A-Za-z0-9])i?q[1-8](_[0-9a-z]{1,2}){0,2}(?![A-Za-z0-9])")
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)*")
# A word that is a short name glued to its version (`wan2.2`, `sd3.5`, `flux1`).
_NAME_VERSION = re.compile(r"^([A-Za-z]{2,})(\d+(?:\.\d+)*)$")
_VERSION = re.compile(r"^v?\d+(\.\d+)+$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])")

# How people abbreviate a family in file names -> how its publisher spells it in repo ids.
FAMILY_ALIASES: dict[str, str] = {
    "sd_xl": "stable-diffusion-xl",  # not `sdxl`: repos spell it so too (stabilityai/sdxl-vae)
    "sd15": "stable-diffusion-v1-5",
    "sd_v1-5": "stable-diffusion-v1-5",
    "v1-5": "stable-diffusion-v1-5",
    "sd21": "stable-diffusion-2-1",
    "sd2.1": "stable-diffusion-2-1",
    "sd3": "stable-diffusion-3",
    "sd3.5": "stable-diffusion-3.5",
}


def valid_repo_id(value: object) -> str | None:
    """`value` when it is a plausible Hub repo id (from a file or the Hub: untrusted), else None."""
    # fullmatch, not match: `$` also matches before a trailing newline, so "org/x\n" passed.
    if isinstance(value, str) and REPO_ID.fullmatch(value) and ".." not in value:
        return value
    return None


def normalize_repo_id(raw: str) -> str | None:
    """`org/name` from an id or URL found inside a file; None when it is not a plausible repo id."""
    match = _REPO_URL.match(raw.strip())
    if not match:
        return None
    repo = match.group(1)
    repo = re.sub(r"/(tree|blob|resolve)/.*$", "", repo)
    return valid_repo_id(repo)


# -- names -> words ---------------------------------------------------------------------------


def name_parts(name: str) -> list[tuple[str, str]]:
    """(separator before, word) pairs of a file or model name, storage tokens dropped.

    `t5-v1_1-xxl-encoder-Q8_0.gguf` -> [("", "t5"), ("-", "v1"), ("_", "1"), ("-", "xxl"),
    ("-", "encoder")]: the name's own separators are kept for the query in its own spelling.
    """
    stem = SHARD_SUFFIX.sub("", strip_model_extension(name))
    stem = _QUANT_SPAN.sub("", stem)
    pieces = _SEPARATOR.split(stem)
    parts: list[tuple[str, str]] = []
    separator = ""
    for i, piece in enumerate(pieces):
        if i % 2:  # a separator
            separator = separator or piece
            continue
        if not piece or QUANT_TOKENS.match(piece):
            continue
        parts.append(("" if not parts else separator or "-", piece))
        separator = ""
    return parts


def words_of(text: str) -> set[str]:
    """Lower-case words of a name or repo id, for ranking (`3.5` stays one word)."""
    return set(_WORD.findall(text.lower().replace("_", " ")))


def _spell(parts: list[tuple[str, str]], own: bool) -> str:
    if own:
        return "".join(sep + word for sep, word in parts).strip()
    return "-".join(word for _, word in parts)


def _is_distinctive(word: str) -> bool:
    low = word.lower()
    return (
        len(low) >= MIN_WORD_QUERY_LENGTH
        and low not in COMMON_WORDS
        and not low.isdigit()
        and not VERSION_NOISE.match(low)
        and not re.fullmatch(r"\d+(\.\d+)?[bmk]", low)  # a parameter count (7b, 1.5b)
    )


def _windows(parts: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """Runs of consecutive words, longest first; at one length, leading words dropped first
    (a prefix like `4x-` or `sd3.5_` is more often the person's than the repo's)."""
    n = len(parts)
    for length in range(n, 1, -1):
        starts = list(range(n - length, -1, -1)) if length < n else [0]
        # Dropping only leading words, then only trailing, then both ends.
        starts.sort(key=lambda s: (s == 0, s))
        for start in starts:
            yield parts[start : start + length]


def whole_name_queries(name: str) -> list[str]:
    """The whole name as queries: in its own spelling, and in the Hub's (`-` between words)."""
    whole = name_parts(name)
    return list(dict.fromkeys(q for q in (_spell(whole, True), _spell(whole, False)) if q))


def name_queries(name: str) -> list[str]:
    """Queries from one name: whole (own spelling, then `-`), shorter runs, then single words."""
    parts = name_parts(name)
    while len(parts) > 1 and VERSION_NOISE.match(parts[-1][1]):
        parts = parts[:-1]
    queries: list[str] = []

    def add(text: str) -> None:
        text = text.strip("-_. ")
        if len(text) >= MIN_QUERY_LENGTH and text.lower() not in (q.lower() for q in queries):
            queries.append(text)

    whole = name_parts(name)
    # A name written with one separator throughout (`sd3.5_large_controlnet_blur`) is the
    # person's spelling; shorter runs are tried in the Hub's (`-`). A name mixing them keeps
    # its own spelling in shorter runs too.
    mixed = len({sep for sep, _ in whole[1:]}) > 1
    add(_spell(whole, own=True))
    add(_spell(whole, own=False))
    windows = 0
    for window in _windows(parts):
        if windows >= MAX_WINDOW_QUERIES:
            break
        # A short run of common words and numbers (`base-1.0`) finds everything and nothing.
        if not any(_is_distinctive(w) for _, w in window) and len(_spell(window, False)) < 10:
            continue
        if window[0][1].isdigit() and len(window) < len(parts):  # `1-xxl` split from `v1_1-xxl`
            continue
        before = len(queries)
        if mixed:  # `t5-v1_1-xxl`: the `_` is part of the repo's spelling too
            add(_spell(window, own=True))
        add(_spell(window, own=False))
        windows += len(queries) > before
    singles = sorted(
        {w for _, w in parts if _is_distinctive(w)}, key=lambda w: (-len(w), w.lower())
    )
    for word in singles:
        add(word)
    return queries


def person_queries(name: str) -> list[str]:
    """What a person types for a name the Hub spells otherwise: a name glued to its version
    split both ways (`wan2.2` -> `wan_2.2`, `wan-2.2`), a family and its version alone
    (`ltx-2.3`), CamelCase split (`OmniSR` -> `Omni-SR`), the first two words in the name's
    own spelling (`fooocus_inpaint`), and a family's abbreviation written out
    (`sd_xl_refiner` -> `stable-diffusion-xl`)."""
    parts = name_parts(name)
    words = [w for _, w in parts]
    if not words:
        return []
    queries: list[str] = []
    first = words[0]
    lowered = "_".join(w.lower() for w in words)
    for short, spelled in FAMILY_ALIASES.items():
        key = short.replace("-", "_")
        if lowered == key or lowered.startswith(key + "_"):
            # The family alone: its repos are few, and ranking by the name's other words
            # picks among them (`refiner`, `large-controlnet-blur`).
            queries.append(spelled)
            break
    glued = _NAME_VERSION.match(first)
    if glued and "." in glued.group(2) and not queries:  # `wan2.2`, not `flux1` or `sd15`
        queries += [f"{glued.group(1)}_{glued.group(2)}", f"{glued.group(1)}-{glued.group(2)}"]
    if len(words) > 1 and _VERSION.match(words[1]):
        queries.append(f"{first}-{words[1]}")
    camel = _CAMEL_BOUNDARY.split(first)
    if len(camel) > 1 and all(len(piece) >= 2 for piece in camel):
        queries.append("-".join(camel))
    if len(parts) > 2 and parts[1][0] == "_" and all(_is_distinctive(w) for w in words[:2]):
        queries.append(_spell(parts[:2], own=True))
    return [q for q in dict.fromkeys(queries) if len(q) >= MIN_QUERY_LENGTH]


# -- the request -> queries -------------------------------------------------------------------


def _folder_name(request: LookupRequest) -> str | None:
    folder = request.folder_name
    if not folder:
        return None
    cached = _HUB_CACHE_FOLDER.match(folder)
    if cached:
        return cached.group(2)
    if clean_model_name(folder).lower() in GENERIC_FOLDERS:
        return None
    return folder


def names_are_generic(request: LookupRequest) -> bool:
    return (
        not request.name
        or request.name.lower() in GENERIC_STEMS
        or all(is_generic_name(f.name) for f in request.files)
    )


def search_base(request: LookupRequest) -> str:
    """The name the model goes by: its own, or its folder's when the file names are generic
    (and the folder is not a generic one like `Downloads`)."""
    if names_are_generic(request):
        folder = _folder_name(request)
        if folder:
            return clean_model_name(folder)
    return request.name


def search_queries(request: LookupRequest) -> list[str]:
    """Every query worth trying for this request, best first (the client stops early)."""
    queries: list[str] = []

    def extend(more: list[str]) -> None:
        for query in more:
            if query.lower() not in (q.lower() for q in queries):
                queries.append(query)

    generic = names_are_generic(request)
    own = [] if generic else name_queries(request.files[0].name if request.files else "")
    folder = _folder_name(request) if generic else None
    # The whole name first, in its own spelling and the Hub's; names inside the file next;
    # then shorter runs and single words of each.
    extend(own[:1])
    # GGUF names follow their repos' (search finds them as they are): the person's
    # spellings are for the image models whose file names their publishers respell. They
    # come before the whole name in the Hub's spelling, which finds namesakes sharing the
    # words (`fooocus-inpaint-head-collection`) more often than the holder.
    if not generic and request.files and not request.files[0].name.lower().endswith(".gguf"):
        extend(person_queries(request.files[0].name))
    extend(own[1:2])
    if folder:
        extend(name_queries(folder)[:2])
    for hint in request.hints:
        extend(name_queries(hint)[:2])
    extend(own[2:])
    if folder:
        extend(name_queries(folder)[2:])
    for hint in request.hints:
        extend(name_queries(hint)[2:])
    if generic and request.family and request.model_type in TYPE_WORDS:
        extend([f"{request.family}-{TYPE_WORDS[request.model_type]}"])
    return queries


def embedded_candidates(request: LookupRequest) -> list[str]:
    """Repo ids named inside the files or by a Hub-cache folder, in order, valid ones only."""
    repos: list[str] = []
    raw = list(request.embedded_repos)
    if request.folder_name and (cached := _HUB_CACHE_FOLDER.match(request.folder_name)):
        raw.append(f"{cached.group(1)}/{cached.group(2)}")
    for item in raw:
        repo = normalize_repo_id(item)
        if repo and repo not in repos:
            repos.append(repo)
    return repos


# -- ranking ----------------------------------------------------------------------------------

# Words of a repo id that say which format it publishes; a hit publishing another format than
# the file's is less likely to hold it (a `-GGUF` repo holds no .safetensors, and the reverse).
FORMAT_WORDS = {".gguf": "gguf"}


def rank_hits(request: LookupRequest, hits: list[SearchHit]) -> list[SearchHit]:
    """Hits ordered by how much of the name their repo id spells, then by downloads."""
    wanted = words_of(search_base(request))
    for hint in request.hints:
        wanted |= words_of(hint)
    suffix = ""
    if request.files:
        name = request.files[0].name.lower()
        suffix = next((ext for ext in FORMAT_WORDS if name.endswith(ext)), "")
    type_word = TYPE_WORDS.get(request.model_type or "", "")

    def score(hit: SearchHit) -> float:
        repo_words = words_of(hit.repo_id.split("/")[-1])
        overlap = len(wanted & repo_words) / max(1, len(wanted))
        extra = len(repo_words - wanted) / max(1, len(repo_words))
        value = 2.0 * overlap - 0.5 * extra
        fmt = FORMAT_WORDS.get(suffix)
        has_gguf = "gguf" in repo_words
        if fmt and has_gguf:
            value += 0.5
        elif not fmt and has_gguf:
            value -= 1.0
        if type_word and type_word in hit.repo_id.lower():
            value += 0.25
        return value + math.log10(1 + max(0, hit.downloads)) / 10

    return sorted(hits, key=score, reverse=True)


def metadata_hints(metadata: dict[str, Any] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, base-model repos) a file's embedded metadata gives: GGUF general.* keys,
    safetensors modelspec.title / kohya ss_output_name, config `_name_or_path`.

    Untrusted text: only used as search words (the Hub's answer decides), and repo ids are
    checked by `normalize_repo_id`.
    """
    if not metadata:
        return (), ()
    names: list[str] = []

    def text(key: str) -> str:
        value = metadata.get(key)
        return value.strip() if isinstance(value, str) else ""

    basename = text("general.basename")
    if basename:
        size = text("general.size_label")
        finetune = text("general.finetune")
        names.append("-".join(p for p in (basename, size, finetune) if p))
        if size or finetune:
            names.append(basename)
    for key in ("general.name", "modelspec.title", "ss_output_name", "_name_or_path"):
        value = text(key)
        if value and len(value) <= 200:
            names.append(value.split("/")[-1])
    bases: list[str] = []
    for n in range(16):
        found = False
        for key in (f"general.base_model.{n}.repo_url", f"general.base_model.{n}.repository"):
            repo = normalize_repo_id(text(key)) if text(key) else None
            found = found or bool(text(key))
            if repo and repo not in bases:
                bases.append(repo)
        org, name = text(f"general.base_model.{n}.organization"), text(
            f"general.base_model.{n}.name"
        )
        if org and name and not found:
            repo = valid_repo_id(f"{org.replace(' ', '-')}/{name.replace(' ', '-')}")
            if repo and repo not in bases:
                bases.append(repo)
        if not (found or name):
            break
    for key in ("modelspec.base_model", "ss_base_model", "base_model", "ss_sd_model_name"):
        value = text(key)
        repo = normalize_repo_id(value) if "/" in value else None
        if repo is None and key == "ss_sd_model_name" and value:
            # kohya records the checkpoint a LoRA was trained on by its file name, often a
            # well-known one (`sd_xl_base_1.0.safetensors`): the catalog knows its repo.
            from modelimport.identify.catalog import load_catalog

            known = load_catalog().get(value.replace("\\", "/").split("/")[-1].lower(), ())
            repo = known[0].repo_id if known else None
        if repo and repo not in bases:
            bases.append(repo)
    unique: list[str] = []
    for name in names:
        if name.lower() not in (u.lower() for u in unique) and len(name) >= MIN_QUERY_LENGTH:
            unique.append(name)
    return tuple(unique), tuple(bases)


def request_for(
    files: tuple[LocalFile, ...],
    folder_name: str | None,
    *,
    embedded_repos: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
    model_type: str | None = None,
    family: str | None = None,
    whole_set: bool = True,
    name_or_path: str = "",
) -> LookupRequest:
    """The lookup request for a model's files, with what the file says about itself: the
    names inside it and the base models it names (`metadata_hints`), its type and family.
    `name_or_path`: what a bundle's config.json / model_index.json names as the repo it was
    saved from, a candidate and a query like any name inside a file (the weights' hashes
    still decide)."""
    if name_or_path:
        from modelimport.probe.provenance import as_repo_id

        repo = as_repo_id(name_or_path)
        if repo and repo not in embedded_repos:
            embedded_repos = (*embedded_repos, repo)
        metadata = {**(metadata or {}), "_name_or_path": name_or_path}
    hints, base_models = metadata_hints(metadata)
    return LookupRequest.for_files(
        files,
        folder_name,
        embedded_repos,
        whole_set=whole_set,
        hints=hints,
        base_models=base_models,
        model_type=model_type,
        family=family,
    )
