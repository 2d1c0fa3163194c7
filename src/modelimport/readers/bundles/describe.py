"""What a bundle says it is: model type and family from its config.json / model_index.json.

A bundle describes itself for the loader that reads it; that description is the model's own
word, recorded in `field_sources` as "config". The knowledge is in tables, scanned top to
bottom, first match wins:
- PIPELINE_CLASSES: model_index.json `_class_name` (StableDiffusionXLPipeline, FluxPipeline)
  -> (model_type, family);
- COMPONENT_CLASSES: a diffusers component's config.json `_class_name` -> (model_type,
  family), family "?" to decide by CROSS_ATTENTION_FAMILY;
- ARCHITECTURE_TYPES: transformers `architectures[0]` -> model_type;
- CONFIG_MODEL_TYPES: transformers `model_type` -> (model_type or None, family).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.readers.bundles.detect import Bundle, read_description

PIPELINE_CLASSES: tuple[tuple[str, str, str], ...] = (
    (r"^StableDiffusionXL.*Pipeline$", "checkpoint", "sdxl"),
    (r"^StableDiffusion3.*Pipeline$", "checkpoint", "sd3"),
    (r"^StableDiffusionUpscalePipeline$", "upscaler", "sd-x4"),
    (r"^StableDiffusionLatentUpscalePipeline$", "upscaler", "sd-x2-latent"),
    (r"^StableVideoDiffusionPipeline$", "video", "svd"),
    # SD 1.x and 2.x share the pipeline class; the UNet's cross-attention width tells them apart.
    (r"^(StableDiffusion|LatentConsistencyModel|AltDiffusion).*Pipeline$", "checkpoint", "?"),
    (r"^Flux.*Pipeline$", "checkpoint", "flux"),
    (r"^Kolors.*Pipeline$", "checkpoint", "kolors"),
    (r"^PixArt.*Pipeline$", "checkpoint", "pixart"),
    (r"^Sana.*Pipeline$", "checkpoint", "sana"),
    (r"^AuraFlow.*Pipeline$", "checkpoint", "auraflow"),
    (r"^HunyuanDiT.*Pipeline$", "checkpoint", "hunyuan-dit"),
    (r"^Lumina.*Pipeline$", "checkpoint", "lumina"),
    (r"^(Kandinsky|KandinskyV22).*Pipeline$", "checkpoint", "kandinsky"),
    (r"^StableCascade.*Pipeline$", "checkpoint", "stable-cascade"),
    (r"^(Wuerstchen).*Pipeline$", "checkpoint", "wuerstchen"),
    (r"^QwenImage.*Pipeline$", "checkpoint", "qwen-image"),
    (r"^HiDream.*Pipeline$", "checkpoint", "hidream"),
    (r"^Chroma.*Pipeline$", "checkpoint", "chroma"),
    (r"^CogVideoX.*Pipeline$", "video", "cogvideox"),
    (r"^HunyuanVideo.*Pipeline$", "video", "hunyuan-video"),
    (r"^Wan.*Pipeline$", "video", "wan"),
    (r"^LTX.*Pipeline$", "video", "ltx-video"),
    (r"^Mochi.*Pipeline$", "video", "mochi"),
    (r"^(AnimateDiff).*Pipeline$", "video", "animatediff"),
    (r"^(AudioLDM2?|StableAudio|MusicLDM).*Pipeline$", "audio", "?"),
    (r"Pipeline$", "checkpoint", "?"),
)

COMPONENT_CLASSES: tuple[tuple[str, str, str], ...] = (
    (r"^UNet2DConditionModel$", "diffusion_model", "?"),
    (r"^FluxTransformer2DModel$", "diffusion_model", "flux"),
    (r"^SD3Transformer2DModel$", "diffusion_model", "sd3"),
    (r"^PixArtTransformer2DModel$", "diffusion_model", "pixart"),
    (r"^SanaTransformer2DModel$", "diffusion_model", "sana"),
    (r"^QwenImageTransformer2DModel$", "diffusion_model", "qwen-image"),
    (r"^WanTransformer3DModel$", "diffusion_model", "wan"),
    (r"^HunyuanVideoTransformer3DModel$", "diffusion_model", "hunyuan-video"),
    (r"^CogVideoXTransformer3DModel$", "diffusion_model", "cogvideox"),
    (r"^LTXVideoTransformer3DModel$", "diffusion_model", "ltx-video"),
    (r"Transformer[23]DModel$", "diffusion_model", "?"),
    (r"^AutoencoderKL", "vae", "?"),
    (r"^(AutoencoderTiny|AsymmetricAutoencoderKL|ConsistencyDecoderVAE)$", "vae", "?"),
    (r"^(Flux)?ControlNet", "controlnet", "?"),
    (r"^SD3ControlNet", "controlnet", "sd3"),
    (r"^(T2IAdapter|MultiAdapter)$", "t2i_adapter", "?"),
    (r"^MotionAdapter$", "motion_module", "animatediff"),
)

# UNet / ControlNet `cross_attention_dim` -> family (CLIP-L 768, OpenCLIP-H 1024, both 2048).
CROSS_ATTENTION_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
# AutoencoderKL `latent_channels` -> family where it is unambiguous (4 is SD1/SD2/SDXL).
LATENT_CHANNELS_FAMILY = {16: "flux"}

ARCHITECTURE_TYPES: tuple[tuple[str, str], ...] = (
    (r"^CLIPVision", "clip_vision"),
    (r"^(CLIP|OpenCLIP)Text", "text_encoder"),
    (r"^(CLIP|SigLIP|Siglip)(Model)?$", "clip_vision"),
    (r"^(T5|UMT5|MT5)EncoderModel$", "text_encoder"),
    (r"ForCausalLM$|LMHeadModel$", "llm"),
    (r"ForConditionalGeneration$", "llm"),
    (r"ForSpeechSeq2Seq$|^Whisper|^Wav2Vec2|^Hubert", "audio"),
    (r"ForImageClassification$|ForObjectDetection$|ForSemanticSegmentation$|"
     r"ForDepthEstimation$|^(ViT|ConvNext|Dinov2|Swin)Model$", "vision"),
    (r"ForSequenceClassification$|ForTokenClassification$|ForQuestionAnswering$", "classifier"),
    (r"ForMaskedLM$|^(Bert|Roberta|XLMRoberta|MPNet|DistilBert|Deberta(V2)?|Electra|Nomic"
     r"Bert|NewModel|ModernBert|Camembert|Albert)(Model)?$", "text_encoder"),
)  # fmt: skip

# transformers `model_type` -> (model_type when architectures say nothing, family).
CONFIG_MODEL_TYPES: tuple[tuple[str, str | None, str], ...] = (
    (r"^llama", "llm", "llama"), (r"^mistral|^mixtral|^ministral", "llm", "mistral"),
    (r"^qwen", "llm", "qwen"), (r"^gemma", "llm", "gemma"), (r"^phi", "llm", "phi"),
    (r"^deepseek", "llm", "deepseek"), (r"^cohere", "llm", "command-r"),
    (r"^falcon", "llm", "falcon"), (r"^gpt2$", "llm", "gpt2"), (r"^gpt_neox", "llm", "gpt-neox"),
    (r"^starcoder", "llm", "starcoder"), (r"^olmo", "llm", "olmo"),
    (r"^granite", "llm", "granite"), (r"^internlm", "llm", "internlm"),
    (r"^(chatglm|glm)", "llm", "glm"), (r"^smollm", "llm", "smollm"),
    (r"^gpt_oss", "llm", "gpt-oss"),
    (r"^llava", "llm", "llava"), (r"^mllama", "llm", "llama"), (r"^paligemma", "llm", "gemma"),
    (r"^(bert|nomic_bert|new|modernbert|distilbert|albert)$", "text_encoder", "bert"),
    (r"^(roberta|xlm-roberta|camembert)$", "text_encoder", "roberta"),
    (r"^mpnet$", "text_encoder", "mpnet"), (r"^deberta", "text_encoder", "deberta"),
    (r"^(t5|umt5|mt5)$", "text_encoder", "t5"),
    (r"^clip_vision_model$", "clip_vision", "clip"), (r"^clip(_text_model)?$", None, "clip"),
    (r"^siglip", "clip_vision", "siglip"), (r"^whisper", "audio", "whisper"),
)  # fmt: skip


# The keys of a diffusers model_index.json / component config.json kept in the record
# (`file_says.config`). `_name_or_path` is the repo it was saved from: `retry-pending` asks
# the Hub about it as the import did, from the record alone.
SAID_KEYS = ("_class_name", "_diffusers_version", "_name_or_path")


@dataclass(frozen=True)
class BundleDescription:
    """What the bundle's own description files say; empty strings where they say nothing."""

    model_type: str = ""
    family: str = ""
    name_or_path: str = ""
    says: dict[str, Any] = field(default_factory=dict)  # the keys read, for file_says


def describe_bundle(bundle: Bundle) -> BundleDescription:
    root = bundle.root
    if bundle.kind == "diffusers":
        return _describe_pipeline(root)
    if bundle.kind == "diffusers-component":
        return _describe_component(read_description(root / "config.json") or {})
    if bundle.kind == "transformers":
        return _describe_transformers(read_description(root / "config.json") or {})
    return BundleDescription()  # gguf-folder: the GGUF header says it all


def _describe_pipeline(root: Path) -> BundleDescription:
    index = read_description(root / "model_index.json") or {}
    class_name = _text(index.get("_class_name"))
    model_type, family = _first(PIPELINE_CLASSES, class_name)
    if family == "?":
        family = _family_from_component(root / "unet") or _family_from_component(
            root / "transformer"
        )
    return BundleDescription(
        model_type,
        family or "",
        _text(index.get("_name_or_path")),
        {k: v for k in SAID_KEYS if (v := _text(index.get(k)))},
    )


def _describe_component(config: dict[str, Any]) -> BundleDescription:
    class_name = _text(config.get("_class_name"))
    model_type, family = _first(COMPONENT_CLASSES, class_name)
    if family == "?":
        family = _family_by_width(config)
    return BundleDescription(
        model_type,
        family or "",
        _text(config.get("_name_or_path")),
        {k: v for k in SAID_KEYS if (v := _text(config.get(k)))},
    )


def _family_from_component(folder: Path) -> str:
    config = read_description(folder / "config.json")
    return _family_by_width(config) if config else ""


def _family_by_width(config: dict[str, Any]) -> str:
    width = config.get("cross_attention_dim")
    if isinstance(width, int) and width in CROSS_ATTENTION_FAMILY:
        return CROSS_ATTENTION_FAMILY[width]
    latent = config.get("latent_channels")
    if isinstance(latent, int):
        return LATENT_CHANNELS_FAMILY.get(latent, "")
    return ""


def _describe_transformers(config: dict[str, Any]) -> BundleDescription:
    architectures = config.get("architectures")
    architecture = (
        _text(architectures[0]) if isinstance(architectures, list) and architectures else ""
    )
    config_type = _text(config.get("model_type"))
    model_type = next(
        (kind for pattern, kind in ARCHITECTURE_TYPES if re.search(pattern, architecture)), ""
    )
    family = ""
    for pattern, kind, fam in CONFIG_MODEL_TYPES:
        if re.search(pattern, config_type.lower()):
            family = fam
            model_type = model_type or (kind or "")
            break
    says = {"architectures": architecture, "model_type": config_type}
    name_or_path = _text(config.get("_name_or_path"))
    if name_or_path:
        says["_name_or_path"] = name_or_path
    return BundleDescription(model_type, family, name_or_path, {k: v for k, v in says.items() if v})


def _first(table: tuple[tuple[str, str, str], ...], class_name: str) -> tuple[str, str]:
    for pattern, model_type, family in table:
        if class_name and re.search(pattern, class_name):
            return model_type, family
    return "", ""


def _text(value: Any, limit: int = 200) -> str:
    """A string from an untrusted JSON value: printable, bounded, or empty."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value if ch.isprintable())[:limit]
