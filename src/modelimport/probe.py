"""Probe: what model a set of files is (type, family, precision), from contents first, name last.

The knowledge lives in the tables below, scanned top to bottom, first match wins; adding a
model kind is adding a row. The file's own word (tensor names and shapes, GGUF metadata,
safetensors `__metadata__`) decides; the filename only fills what the file leaves open, and
`field_sources` says which one each value came from.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.formats import FileFacts, TensorInfo
from modelimport.names import clean_model_name


@dataclass(frozen=True)
class ModelProbe:
    model_type: str
    family: str
    precision: str
    variant: str
    name: str
    file_says: dict[str, Any] = field(default_factory=dict)
    embedded_repos: tuple[str, ...] = ()
    unsafe_pickle: bool = False
    field_sources: dict[str, str] = field(default_factory=dict)
    # Added: the parameter count over all files (0 when the file does not say).
    parameter_count: int = 0
    pickle_globals: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyRule:
    """A model kind recognised by its tensor names: every `needs` pattern matches some key,
    no `excludes` pattern matches any. `family` may be "?" to decide it by shape afterwards."""

    model_type: str
    family: str
    needs: tuple[str, ...]
    excludes: tuple[str, ...] = ()


# Tensor-name patterns (re.search against each key), most specific first.
KEY_RULES: tuple[KeyRule, ...] = (
    # LoRA: kohya (lora_unet_/lora_te_), diffusers/PEFT (lora_A / lora.down), LyCORIS.
    KeyRule(
        "lora", "?",
        (r"\.(lora_down|lora_up|lora_A|lora_B|lora\.down|lora\.up|hada_w1_a|lokr_w1)\.weight$",),
    ),
    KeyRule("controlnet", "?", (r"^(control_model\.)?input_hint_block\.",)),
    KeyRule("controlnet", "?", (r"^controlnet_cond_embedding\.",)),
    KeyRule("embedding", "?", (r"^(string_to_param|emb_params|clip_[lg])(\.|$)",), (r"\.weight$",)),
    KeyRule(
        "checkpoint", "sd3",
        (r"^model\.diffusion_model\.joint_blocks\.", r"^(text_encoders|first_stage_model)\."),
    ),
    KeyRule("diffusion_model", "sd3", (r"^(model\.diffusion_model\.)?joint_blocks\.\d+\.",)),
    KeyRule(
        "checkpoint", "flux",
        (r"^model\.diffusion_model\.double_blocks\.", r"^(text_encoders|vae|first_stage_model)\."),
    ),
    KeyRule(
        "diffusion_model", "flux",
        (r"^(model\.diffusion_model\.)?double_blocks\.\d+\.", r"single_blocks\.\d+\."),
    ),
    KeyRule(
        "diffusion_model", "flux",
        (r"^transformer_blocks\.\d+\.", r"^single_transformer_blocks\.\d+\."),
    ),
    KeyRule("checkpoint", "sdxl", (r"^model\.diffusion_model\.", r"^conditioner\.embedders\.1\.")),
    KeyRule(
        "checkpoint", "sdxl",
        (r"^model\.diffusion_model\.label_emb\.", r"^first_stage_model\."),
    ),
    KeyRule("checkpoint", "sd2", (r"^model\.diffusion_model\.", r"^cond_stage_model\.model\.")),
    KeyRule(
        "checkpoint", "sd15",
        (r"^model\.diffusion_model\.", r"^cond_stage_model\.transformer\."),
    ),
    KeyRule(
        "checkpoint", "?",
        (r"^model\.diffusion_model\.input_blocks\.", r"^first_stage_model\."),
    ),
    KeyRule("diffusion_model", "?", (r"^(model\.diffusion_model\.)?input_blocks\.\d+\.",)),
    KeyRule("diffusion_model", "?", (r"^down_blocks\.\d+\.attentions\.",)),
    KeyRule(
        "vae", "?",
        (r"^(first_stage_model\.)?encoder\.down\.\d+\.", r"quant_conv\."),
        (r"diffusion_model\.",),
    ),
    KeyRule("vae", "?", (r"^encoder\.down_blocks\.\d+\.resnets\.", r"quant_conv\.")),
    KeyRule("upscaler", "esrgan", (r"^conv_first\.weight$", r"^(RRDB_trunk|body)\.\d+\.")),
    KeyRule("upscaler", "esrgan", (r"^model\.0\.weight$", r"^model\.1\.sub\.\d+\.")),
    KeyRule(
        "text_encoder", "clip",
        (r"^(text_model\.)?encoder\.layers\.\d+\.self_attn\.",),
        (r"^model\.layers\.",),
    ),
    KeyRule("text_encoder", "t5", (r"^encoder\.block\.\d+\.layer\.\d+\.",)),
    KeyRule(
        "text_encoder", "bert",
        (
            r"^(bert\.|roberta\.|model\.)?embeddings\.word_embeddings\.weight$",
            r"encoder\.layer\.\d+\.",
        ),
    ),
    KeyRule("llm", "?", (r"^(model\.)?layers\.\d+\.self_attn\.(q_proj|qkv_proj)\.weight$",)),
    KeyRule("llm", "?", (r"^(transformer|model)\.h\.\d+\.(attn|self_attention)\.",)),
)

# Cross-attention context width of a UNet -> family (SD1.x: CLIP-L 768, SD2: OpenCLIP-H 1024,
# SDXL: CLIP-L + OpenCLIP-G 2048).
CONTEXT_DIM_KEY = re.compile(r"(^|\.)(input_blocks\.\d+\.1\.transformer_blocks\.0\.attn2\.to_k|"
                             r"down_blocks\.\d+\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k|"
                             r"lora_unet_(input_blocks|down_blocks)_\d+_(1_)?(attentions_0_)?transformer_blocks_0_attn2_to_k\.lora_down)"
                             r"\.weight$")
CONTEXT_DIM_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl"}

# LoRA key patterns that name the base model outright.
LORA_KEY_FAMILY: tuple[tuple[str, str], ...] = (
    (r"^lora_te2_|^lora_te1_", "sdxl"),
    (r"double_blocks|single_blocks|single_transformer_blocks", "flux"),
    (r"joint_blocks|context_block", "sd3"),
    (r"^lora_unet_|^lora_te_", "sd15"),
)

# VAE latent channels (decoder.conv_in input width) -> family; 4 is shared by SD1.x/2/SDXL.
LATENT_CHANNELS_FAMILY = {4: "sd15", 16: "flux"}

# Embedding width of a textual inversion -> family.
EMBEDDING_WIDTH_FAMILY = {768: "sd15", 1024: "sd2"}

# Textual CLIP width -> which CLIP.
CLIP_WIDTH_FAMILY = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}

# kohya `ss_base_model_version` / modelspec architecture prefix -> family.
METADATA_FAMILY: tuple[tuple[str, str], ...] = (
    (r"^sdxl|stable-diffusion-xl", "sdxl"),
    (r"^sd_v2|stable-diffusion-v2", "sd2"),
    (r"^sd_v1|stable-diffusion-v1", "sd15"),
    (r"^sd3|stable-diffusion-3", "sd3"),
    (r"^flux", "flux"),
)

# GGUF general.architecture -> (model_type, family).
GGUF_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "llama": ("llm", "llama"), "llama4": ("llm", "llama"), "mistral3": ("llm", "mistral"),
    "qwen": ("llm", "qwen"), "qwen2": ("llm", "qwen"), "qwen2moe": ("llm", "qwen"),
    "qwen3": ("llm", "qwen"), "qwen3moe": ("llm", "qwen"), "qwen2vl": ("llm", "qwen"),
    "gemma": ("llm", "gemma"), "gemma2": ("llm", "gemma"), "gemma3": ("llm", "gemma"),
    "gemma3n": ("llm", "gemma"), "phi2": ("llm", "phi"), "phi3": ("llm", "phi"),
    "phimoe": ("llm", "phi"), "deepseek": ("llm", "deepseek"), "deepseek2": ("llm", "deepseek"),
    "command-r": ("llm", "command-r"), "cohere2": ("llm", "command-r"),
    "falcon": ("llm", "falcon"), "gpt2": ("llm", "gpt2"), "gptneox": ("llm", "gpt-neox"),
    "starcoder": ("llm", "starcoder"), "starcoder2": ("llm", "starcoder"),
    "mamba": ("llm", "mamba"), "rwkv6": ("llm", "rwkv"), "olmo": ("llm", "olmo"),
    "olmo2": ("llm", "olmo"), "granite": ("llm", "granite"), "granitemoe": ("llm", "granite"),
    "internlm2": ("llm", "internlm"), "chatglm": ("llm", "glm"), "glm4": ("llm", "glm"),
    "exaone": ("llm", "exaone"), "minicpm": ("llm", "minicpm"), "smollm3": ("llm", "smollm"),
    "gpt-oss": ("llm", "gpt-oss"), "openai-moe": ("llm", "gpt-oss"),
    "bert": ("text_encoder", "bert"), "nomic-bert": ("text_encoder", "bert"),
    "jina-bert-v2": ("text_encoder", "bert"), "t5": ("text_encoder", "t5"),
    "t5encoder": ("text_encoder", "t5"), "clip": ("text_encoder", "clip"),
    "flux": ("diffusion_model", "flux"), "sd3": ("diffusion_model", "sd3"),
    "sdxl": ("diffusion_model", "sdxl"), "sd1": ("diffusion_model", "sd15"),
}

# Name tokens -> family, for when the file only says "llama-compatible" (Mistral GGUFs say
# general.architecture = llama) or says nothing. Matched case-insensitively, first wins.
NAME_FAMILY: tuple[tuple[str, str], ...] = (
    (r"mi[sx]tral|codestral|ministral|magistral|devstral", "mistral"),
    (r"qwen|qwq", "qwen"), (r"gemma", "gemma"), (r"\bphi[-_ ]?\d", "phi"),
    (r"deepseek", "deepseek"), (r"llama", "llama"), (r"flux", "flux"),
    (r"sdxl|\bxl\b|pony|illustrious", "sdxl"), (r"\bsd3", "sd3"),
    (r"\bsd[-_ ]?2|v2[-_]1", "sd2"), (r"\bsd[-_ ]?1[-_.]?5|\bsd15\b|v1[-_]5", "sd15"),
    (r"bert|minilm|mpnet", "bert"),
)

# (model_type, family the file's shapes say) -> the families that share those shapes, so the
# name may refine them: a llama-architecture LLM may be a Mistral (never an SDXL); a VAE with
# 4 latent channels is the same network in SD1.x, SD2 and SDXL.
REFINABLE_FAMILIES: dict[tuple[str, str], frozenset[str]] = {
    ("llm", "llama"): frozenset({"mistral", "llama", "deepseek"}),
    ("vae", "sd15"): frozenset({"sd15", "sd2", "sdxl"}),
}

# (model_type, family the shapes give) that the shapes cannot actually tell from its siblings
# in REFINABLE_FAMILIES: the family is the name's word, or only a default to be improved.
SHAPE_AMBIGUOUS: frozenset[tuple[str, str]] = frozenset({("vae", "sd15")})

# Tensor dtype -> precision. I64/I32/BOOL hold ids and masks and never decide precision.
DTYPE_PRECISION: dict[str, str] = {
    "F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16",
    "F8_E4M3": "fp8", "F8_E5M2": "fp8", "F8_E8M0": "fp8", "F4": "fp4",
    "I8": "int8", "U8": "int8",
}

# GGUF file types that are plain floats -> the precision names used for other formats.
GGUF_FLOAT_PRECISION = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}

# Filename tokens -> precision and variant (the seed's rules), used only as fallback.
NAME_PRECISION: tuple[tuple[str, str], ...] = (
    (r"fp16|half", "fp16"), (r"bf16", "bf16"), (r"fp32|float32", "fp32"), (r"fp8", "fp8"),
    (r"int8|8bit", "int8"), (r"int4|4bit|nf4", "int4"),
    (r"(?<![a-z0-9])(i?q[1-8](_[0-9a-z]{1,2}){0,2})(?![a-z0-9])", "gguf"),
)
NAME_VARIANT: tuple[tuple[str, str], ...] = (
    (r"ema[-_]?only|(?<![a-z])ema(?![a-z])", "ema"),
    (r"pruned", "pruned"),
    (r"(?<![a-z])full(?![a-z])", "full"),
)

# GGUF keys naming repositories; `{n}` counts base models from 0.
GGUF_REPO_KEYS = ("general.source.huggingface.repository", "general.source.repo_url",
                  "general.base_model.{n}.repo_url", "general.base_model.{n}.repository")
HF_URL = re.compile(r"^(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/([\w.-]+/[\w.-]+)")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
# safetensors __metadata__ keys that may name a repository.
METADATA_REPO_KEYS = ("modelspec.source", "source", "repo_id", "hf_repo", "base_model",
                      "ss_sd_model_name", "modelspec.base_model", "_name_or_path")


def probe_model(files: list[FileFacts], display_name: str | None = None) -> ModelProbe:
    """Identify a model from all its files (one file, or every shard of a set in order)."""
    if not files:
        raise ValueError("probe_model needs at least one file")
    first = files[0]
    filename = display_name or Path(first.path).name
    sources: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for facts in files:
        tensors.update(facts.tensors)
    metadata = _merged_metadata(files)

    if first.format == "gguf":
        model_type, family = _gguf_kind(first.details, filename)
    else:
        model_type, family = _kind_from_keys(tensors, metadata)
    if model_type != "unknown":
        sources["model_type"] = "file"
    if family not in ("unknown", "?"):
        sources.setdefault("family", "file")
    refinable = REFINABLE_FAMILIES.get((model_type, family))
    ambiguous = (model_type, family) in SHAPE_AMBIGUOUS
    if family in ("unknown", "?") or refinable:
        named = _match(NAME_FAMILY, _gguf_name(first.details) or filename)
        if named and (family in ("unknown", "?") or named in (refinable or ())):
            if named != family or ambiguous:
                sources["family"] = "filename" if not _gguf_name(first.details) else "file"
            family = named
        elif family == "?":
            family = "unknown"
        elif ambiguous:
            sources["family"] = "default"  # a guess: a Hub match or a person may say better
    if model_type == "unknown" and first.format == "gguf":
        model_type = "llm"
        sources["model_type"] = "format"

    precision, precision_source = _precision(files, tensors, filename)
    sources["precision"] = precision_source
    variant, variant_source = _variant(tensors, filename)
    sources["variant"] = variant_source
    name, name_source = _name(first, filename)
    sources["name"] = name_source
    sources["cleaned_name"] = name_source  # the metadata.json spelling of the same field
    for fld in ("model_type", "family"):
        sources.setdefault(fld, "unknown")

    scans = [f.details.get("pickle_scan") for f in files if f.details.get("pickle_scan")]
    unsafe = any(scan["verdict"] != "safe" for scan in scans)
    pickle_globals = tuple(sorted({g for scan in scans for g in scan.get("globals", [])}))
    params = sum(int(f.details.get("parameter_count") or 0) for f in files)
    file_says = _file_says(files, tensors, params, metadata, scans)
    return ModelProbe(
        model_type=model_type,
        family=family,
        precision=precision,
        variant=variant,
        name=name,
        file_says=file_says,
        embedded_repos=_embedded_repos(first, metadata),
        unsafe_pickle=unsafe,
        field_sources=sources,
        parameter_count=params,
        pickle_globals=pickle_globals,
    )


def _kind_from_keys(tensors: dict[str, TensorInfo], metadata: dict[str, Any]) -> tuple[str, str]:
    keys = [_strip_wrapper(k) for k in tensors]
    stripped = dict(zip(keys, tensors.values(), strict=True))
    for rule in KEY_RULES:
        needs_met = all(_any_key(p, keys) for p in rule.needs)
        if needs_met and not any(_any_key(p, keys) for p in rule.excludes):
            family = rule.family
            if family == "?":
                family = _family_by_shape(rule.model_type, stripped, metadata)
            return rule.model_type, family
    return "unknown", "?"


def _family_by_shape(model_type: str, tensors: dict[str, TensorInfo], metadata: dict) -> str:
    if model_type == "lora":
        for key in ("ss_base_model_version", "modelspec.architecture"):
            named = _match(METADATA_FAMILY, str(metadata.get(key, "")))
            if named:
                return named
    context = next((t.shape for k, t in tensors.items() if CONTEXT_DIM_KEY.search(k)), None)
    if context and len(context) >= 2 and context[1] in CONTEXT_DIM_FAMILY:
        return CONTEXT_DIM_FAMILY[context[1]]
    if model_type == "lora":
        return _match(LORA_KEY_FAMILY, "\n".join(tensors), multiline=True) or "?"
    if model_type == "vae":
        conv_in = next((t for k, t in tensors.items() if k.endswith("decoder.conv_in.weight")),
                       None)
        if conv_in and len(conv_in.shape) >= 2:
            return LATENT_CHANNELS_FAMILY.get(conv_in.shape[1], "?")
    if model_type == "embedding":
        if "clip_g" in tensors:
            return "sdxl"
        widths = {t.shape[-1] for t in tensors.values() if t.shape}
        return next((EMBEDDING_WIDTH_FAMILY[w] for w in widths if w in EMBEDDING_WIDTH_FAMILY), "?")
    if model_type == "text_encoder":
        width = next((t.shape[-1] for k, t in tensors.items() if k.endswith("q_proj.weight")), 0)
        return CLIP_WIDTH_FAMILY.get(width, "clip")
    if model_type == "llm":
        return _llm_family(tensors)
    return "?"


# Tensor names that tell llama-compatible LLM families apart (checked in order).
LLM_KEY_FAMILY: tuple[tuple[str, str], ...] = (
    (r"self_attn\.qkv_proj\.weight$", "phi"),
    (r"pre_feedforward_layernorm|post_feedforward_layernorm", "gemma"),
    (r"self_attn\.q_norm\.weight$", "qwen"),
    (r"self_attn\.q_proj\.bias$", "qwen"),
    (r"\.h\.\d+\.attn\.c_attn\.", "gpt2"),
)


def _llm_family(tensors: dict[str, TensorInfo]) -> str:
    return _match(LLM_KEY_FAMILY, "\n".join(tensors), multiline=True) or "?"


def _gguf_kind(details: dict[str, Any], filename: str) -> tuple[str, str]:
    arch = details.get("architecture")
    if isinstance(arch, str) and arch in GGUF_ARCHITECTURES:
        return GGUF_ARCHITECTURES[arch]
    return "llm", "?"


def _gguf_name(details: dict[str, Any]) -> str:
    meta = details.get("metadata") or {}
    for key in ("general.name", "general.basename"):
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _precision(
    files: list[FileFacts], tensors: dict[str, TensorInfo], filename: str
) -> tuple[str, str]:
    first = files[0]
    if first.format == "gguf":
        quant = first.details.get("quantization")
        if quant:
            # Unquantised GGUF types read like every other file's precision (fp16, not F16).
            return GGUF_FLOAT_PRECISION.get(quant, quant), "file"
        counts = Counter()
        for info in tensors.values():
            if len(info.shape) >= 2:
                counts[info.dtype] += info.numel
        if counts:
            return counts.most_common(1)[0][0], "file"
    params: Counter[str] = Counter()
    for facts in files:
        for dtype, count in (facts.details.get("dtype_parameters") or {}).items():
            if dtype in DTYPE_PRECISION:
                params[DTYPE_PRECISION[dtype]] += count
    if params:
        return params.most_common(1)[0][0], "file"
    named = _match(NAME_PRECISION, filename.lower())
    if named == "gguf":
        token = re.search(NAME_PRECISION[-1][0], filename.lower())
        named = token.group(1).upper() if token else None
    return (named, "filename") if named else ("unknown", "unknown")


def _variant(tensors: dict[str, TensorInfo], filename: str) -> tuple[str, str]:
    named = _match(NAME_VARIANT, strip_ext(filename).lower())
    if any(k.startswith("model_ema.") for k in tensors):
        # A checkpoint that still carries its EMA copy next to the live weights is the full one.
        return "full", "file"
    if named:
        return named, "filename"
    return "standard", "default"


def strip_ext(filename: str) -> str:
    return Path(filename).stem


def _name(first: FileFacts, filename: str) -> tuple[str, str]:
    if first.format == "gguf":
        meta = first.details.get("metadata") or {}
        for key in ("general.name", "general.basename"):
            value = meta.get(key)
            if isinstance(value, str) and value.strip():
                return clean_model_name(value.strip()), "file"
    return clean_model_name(filename), "filename"


def _merged_metadata(files: list[FileFacts]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for facts in files:
        merged.update(facts.details.get("metadata") or {})
    return merged


def _embedded_repos(first: FileFacts, metadata: dict[str, Any]) -> tuple[str, ...]:
    candidates: list[str] = []
    if first.format == "gguf":
        for pattern in GGUF_REPO_KEYS:
            for n in range(16) if "{n}" in pattern else [None]:
                value = metadata.get(pattern.format(n=n))
                if value is None:
                    if n is not None and n > 0:
                        break
                    continue
                candidates.append(str(value))
    else:
        candidates += [str(metadata[k]) for k in METADATA_REPO_KEYS if k in metadata]
    repos: list[str] = []
    for value in candidates:
        repo = as_repo_id(value)
        if repo and repo not in repos:
            repos.append(repo)
    return tuple(repos)


def as_repo_id(value: str) -> str | None:
    """`https://huggingface.co/org/name` or `org/name` -> `org/name`; anything else -> None."""
    value = value.strip()
    found = HF_URL.match(value)
    if found:
        value = found.group(1)
    if value.endswith(".git"):
        value = value[:-4]
    return value if REPO_ID.match(value) and ".." not in value else None


def _file_says(files: list[FileFacts], tensors: dict[str, TensorInfo], params: int,
               metadata: dict[str, Any], scans: list[dict]) -> dict[str, Any]:
    first = files[0]
    dtypes: Counter[str] = Counter()
    for facts in files:
        dtypes.update(facts.details.get("tensor_dtypes") or facts.details.get("tensor_types") or {})
    says: dict[str, Any] = {
        "format": first.format,
        "parameter_count": params,
        "tensor_count": sum(int(f.details.get("tensor_count") or 0) for f in files),
        "tensor_dtypes": dict(dtypes),
    }
    for key in ("architecture", "quantization", "file_type", "context_length", "gguf_version"):
        if first.details.get(key) is not None:
            says[key] = first.details[key]
    if metadata:
        says["embedded_metadata"] = metadata
    if scans:
        says["pickle_scan"] = {
            "verdict": "unsafe" if any(s["verdict"] != "safe" for s in scans) else "safe",
            "globals": sorted({g for s in scans for g in s.get("globals", [])}),
            "dangerous": sorted({g for s in scans for g in s.get("dangerous", [])}),
            "unknown": sorted({g for s in scans for g in s.get("unknown", [])}),
        }
    return says


def _strip_wrapper(key: str) -> str:
    # DataParallel saves prefix every key with "module."; it says nothing about the model.
    return key[7:] if key.startswith("module.") else key


def _any_key(pattern: str, keys: list[str]) -> bool:
    regex = _compiled(pattern)
    return any(regex.search(k) for k in keys)


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _CACHE:
        _CACHE[pattern] = re.compile(pattern)
    return _CACHE[pattern]


def _match(table: tuple[tuple[str, str], ...], text: str, multiline: bool = False) -> str | None:
    flags = re.IGNORECASE | (re.MULTILINE if multiline else 0)
    for pattern, value in table:
        if re.search(pattern, text, flags):
            return value
    return None
