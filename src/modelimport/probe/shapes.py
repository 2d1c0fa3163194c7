"""Family from tensor shapes: the `by:<name>` resolvers that key rules refer to.

A resolver returns the families the shapes allow, most likely first: one family is a fact,
several are shapes shared by those families (the name may then choose among them), none is
"the shapes do not say". Resolvers read only names and shapes, never tensor data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from modelimport.formats import TensorInfo
from modelimport.probe.tables import (
    CLIP_WIDTH_FAMILY,
    CONTEXT_DIM_FAMILY,
    EMBEDDING_WIDTH_FAMILY,
    IPADAPTER_WIDTH_FAMILY,
    LATENT_CHANNELS_FAMILIES,
    LLM_KEY_FAMILY,
    LORA_KEY_FAMILY,
    LORA_TE_WIDTH_FAMILY,
    METADATA_FAMILY,
    T2I_ADAPTER_CIN_FAMILY,
    VISION_WIDTH_FAMILY,
    WAN_VAE_FAMILIES,
)

Tensors = dict[str, TensorInfo]
Resolver = Callable[[Tensors, dict[str, Any]], tuple[str, ...]]

CONTEXT_DIM_KEY = re.compile(
    r"(^|\.)(input_blocks\.\d+\.1\.transformer_blocks\.0\.attn2\.to_k|"
    r"down_blocks\.\d+\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k|"
    r"lora_unet_(input_blocks|down_blocks)_\d+_(1_)?(attentions_0_)?transformer_blocks_0_attn2_to_k"
    r"\.lora_down)\.weight$"
)


def match_table(
    table: tuple[tuple[str, str], ...], text: str, multiline: bool = False
) -> str | None:
    """The value of the first (pattern, value) row whose pattern is found in `text`."""
    flags = re.IGNORECASE | (re.MULTILINE if multiline else 0)
    for pattern, value in table:
        if re.search(pattern, text, flags):
            return value
    return None


def _shape(tensors: Tensors, suffix: str) -> tuple[int, ...] | None:
    return next((t.shape for k, t in tensors.items() if k.endswith(suffix)), None)


def _dim(shape: tuple[int, ...] | None, index: int) -> int | None:
    return shape[index] if shape and len(shape) > abs(index) - (index < 0) else None


def _one(family: str | None) -> tuple[str, ...]:
    return (family,) if family else ()


def by_context_dim(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    shape = next((t.shape for k, t in tensors.items() if CONTEXT_DIM_KEY.search(k)), None)
    return _one(CONTEXT_DIM_FAMILY.get(_dim(shape, 1) or 0))


def by_lora(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    for key in ("ss_base_model_version", "modelspec.architecture"):
        named = match_table(METADATA_FAMILY, str(metadata.get(key, "")))
        if named:
            return (named,)
    allowed = match_table(LORA_KEY_FAMILY, "\n".join(tensors), multiline=True)
    if allowed == "sd15 sd2":
        width = _dim(_shape(tensors, "mlp_fc1.lora_down.weight"), 1)
        if width in LORA_TE_WIDTH_FAMILY and any(k.startswith("lora_te_") for k in tensors):
            allowed = LORA_TE_WIDTH_FAMILY[width]
    return by_context_dim(tensors, metadata) or tuple((allowed or "").split())


def by_latent_channels(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    channels = _dim(_shape(tensors, "decoder.conv_in.weight"), 1)
    if channels is None:  # no decoder: the encoder's output is mean and logvar
        out = _dim(_shape(tensors, "encoder.conv_out.weight"), 0)
        channels = out // 2 if out else None
    return LATENT_CHANNELS_FAMILIES.get(channels or 0, ())


def by_wan_vae(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    channels = _dim(_shape(tensors, "decoder.conv1.weight"), 1)
    return WAN_VAE_FAMILIES.get(channels or 0, ("wan",))


def by_embedding_width(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    if "clip_g" in tensors:
        return ("sdxl",)
    widths = {t.shape[-1] for t in tensors.values() if t.shape}
    return _one(next((EMBEDDING_WIDTH_FAMILY[w] for w in widths if w in EMBEDDING_WIDTH_FAMILY),
                     None))


def by_clip_width(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    width = _dim(_shape(tensors, "q_proj.weight"), -1) or _dim(
        _shape(tensors, "token_embedding.weight"), -1
    )
    return (CLIP_WIDTH_FAMILY.get(width or 0, "clip"),)


def by_vision_width(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    width = _dim(_shape(tensors, "embeddings.patch_embedding.weight"), 0) or _dim(
        _shape(tensors, "visual.conv1.weight"), 0
    )
    return (VISION_WIDTH_FAMILY.get(width or 0, "clip_vision"),)


def by_t5(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    # UMT5 (Wan's text encoder) gives every block its own relative attention bias; T5 only
    # the first.
    per_block = any(k.startswith("encoder.block.1.") and "relative_attention_bias" in k
                    for k in tensors)
    return ("umt5",) if per_block else ("t5",)


def by_llm(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    return _one(match_table(LLM_KEY_FAMILY, "\n".join(tensors), multiline=True))


def by_ipadapter(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    width = _dim(_shape(tensors, "to_k_ip.weight"), 1)
    return _one(IPADAPTER_WIDTH_FAMILY.get(width or 0))


def by_t2i_adapter(tensors: Tensors, metadata: dict[str, Any]) -> tuple[str, ...]:
    cin = _dim(_shape(tensors, "conv_in.weight"), 1)
    return _one(T2I_ADAPTER_CIN_FAMILY.get(cin or 0))


FAMILY_RESOLVERS: dict[str, Resolver] = {
    "context_dim": by_context_dim,
    "lora": by_lora,
    "latent_channels": by_latent_channels,
    "wan_vae": by_wan_vae,
    "embedding_width": by_embedding_width,
    "clip_width": by_clip_width,
    "vision_width": by_vision_width,
    "t5": by_t5,
    "llm": by_llm,
    "ipadapter": by_ipadapter,
    "t2i_adapter": by_t2i_adapter,
}
