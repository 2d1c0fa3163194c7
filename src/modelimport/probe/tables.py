"""The probe's knowledge other than tensor-name rules: shapes, metadata, GGUF, name tokens.

Each table is scanned top to bottom (first match wins) or looked up by key; extending the
probe is adding a row. Tensor-name rules live in `key_rules.toml`.
"""

from __future__ import annotations

# Every model_type the probe can produce. The apps layouts link by these names (ComfyUI
# folders: checkpoints, diffusion_models, loras, vae, text_encoders, clip_vision,
# controlnet, upscale_models, embeddings, ipadapter, style_models), so they stay stable.
MODEL_TYPES = frozenset({
    "checkpoint", "diffusion_model", "lora", "vae", "text_encoder", "clip_vision",
    "controlnet", "upscaler", "embedding", "ipadapter", "style_model", "llm", "unknown",
})

# Cross-attention context width of a UNet (or ControlNet) -> family (SD1.x: CLIP-L 768,
# SD2: OpenCLIP-H 1024, SDXL: CLIP-L + OpenCLIP-G 2048).
CONTEXT_DIM_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl"}

# LoRA key patterns -> the families they allow (space-separated, most likely first). kohya's
# `lora_unet_`/`lora_te_` keys are SD 1.x's and SD 2.x's alike: without a width that tells
# (the UNet's cross-attention context, the text encoder's 768 or 1024), sd15 is a default,
# recorded as such, not a fact.
LORA_KEY_FAMILY: tuple[tuple[str, str], ...] = (
    (r"^lora_te2_|^lora_te1_", "sdxl"),
    (r"double_blocks|single_blocks|single_transformer_blocks", "flux"),
    (r"joint_blocks|context_block", "sd3"),
    (r"^lora_unet_|^lora_te_", "sd15 sd2"),
)
# A kohya text-encoder LoRA's input width (lora_te_*mlp_fc1.lora_down: [rank, width]): CLIP-L
# (SD 1.x) is 768 wide, OpenCLIP-H (SD 2.x) 1024.
LORA_TE_WIDTH_FAMILY = {768: "sd15", 1024: "sd2"}

# VAE latent channels (decoder.conv_in input width) -> the families whose VAEs have exactly
# those shapes. More than one: the shapes cannot tell them apart (SD1.x, SD2 and SDXL share
# one network; Flux's ae.safetensors and SD3's VAE another), so the name or metadata may
# choose, and without either the first is a default, said as such.
LATENT_CHANNELS_FAMILIES: dict[int, tuple[str, ...]] = {
    4: ("sd15", "sd2", "sdxl"),
    16: ("flux", "sd3"),
    32: ("flux2",),
}

# The Wan 2.1 VAE is also Qwen-Image's; Wan 2.2's 5B VAE has 48 latent channels.
WAN_VAE_FAMILIES: dict[int, tuple[str, ...]] = {16: ("wan", "qwen_image"), 48: ("wan",)}

# Embedding width of a textual inversion -> family.
EMBEDDING_WIDTH_FAMILY = {768: "sd15", 1024: "sd2"}

# Textual CLIP width -> which CLIP (ComfyUI's CLIP-L / CLIP-H / CLIP-G).
CLIP_WIDTH_FAMILY = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}

# Vision transformer width -> which CLIP vision tower (ComfyUI clip_vision files).
VISION_WIDTH_FAMILY = {768: "clip_vit_b", 1024: "clip_vit_l", 1280: "clip_vit_h",
                       1664: "clip_vit_bigg"}

# IP-Adapter to_k_ip input width (the UNet's context width) -> family.
IPADAPTER_WIDTH_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl"}

# T2I-Adapter conv_in input channels: SDXL adapters unshuffle by 16 (256 = 1 x 16 x 16,
# 768 = 3 x 16 x 16); SD1.x ones by 8 (64, 192). ComfyUI's adapter loader decides the same way.
T2I_ADAPTER_CIN_FAMILY = {64: "sd15", 192: "sd15", 256: "sdxl", 768: "sdxl"}

# kohya `ss_base_model_version` / modelspec architecture prefix -> family.
METADATA_FAMILY: tuple[tuple[str, str], ...] = (
    (r"^sdxl|stable-diffusion-xl", "sdxl"),
    (r"^sd_v2|stable-diffusion-v2", "sd2"),
    (r"^sd_v1|stable-diffusion-v1", "sd15"),
    (r"^sd3|stable-diffusion-3", "sd3"),
    (r"^flux", "flux"),
)

# Tensor names that tell llama-compatible LLM families apart (checked in order).
LLM_KEY_FAMILY: tuple[tuple[str, str], ...] = (
    (r"self_attn\.qkv_proj\.weight$", "phi"),
    (r"pre_feedforward_layernorm|post_feedforward_layernorm", "gemma"),
    (r"self_attn\.q_norm\.weight$", "qwen"),
    (r"self_attn\.q_proj\.bias$", "qwen"),
    (r"\.h\.\d+\.attn\.c_attn\.", "gpt2"),
)

# GGUF general.architecture -> (model_type, family). The image and video entries are the
# architectures city96's ComfyUI-GGUF converter writes.
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
    "aura": ("diffusion_model", "auraflow"), "hidream": ("diffusion_model", "hidream"),
    "cosmos": ("diffusion_model", "cosmos"), "ltxv": ("diffusion_model", "ltxv"),
    "hyvid": ("diffusion_model", "hunyuan_video"), "wan": ("diffusion_model", "wan"),
    "lumina2": ("diffusion_model", "lumina2"), "qwen_image": ("diffusion_model", "qwen_image"),
    "chroma": ("diffusion_model", "chroma"),
}

# Name tokens -> family, for when the file only says "llama-compatible" (Mistral GGUFs say
# general.architecture = llama), when its shapes are shared (VAEs) or when it says nothing.
# Matched case-insensitively against the file name, first wins.
NAME_FAMILY: tuple[tuple[str, str], ...] = (
    (r"mi[sx]tral|codestral|ministral|magistral|devstral", "mistral"),
    (r"qwen[-_ ]?image", "qwen_image"),
    (r"qwen|qwq", "qwen"), (r"gemma", "gemma"), (r"\bphi[-_ ]?\d", "phi"),
    (r"deepseek", "deepseek"), (r"llama", "llama"), (r"flux[-_.]?2", "flux2"), (r"flux", "flux"),
    (r"^ae\.(safetensors|sft)$", "flux"),  # black-forest-labs' name for the FLUX.1 VAE
    (r"sdxl|\bxl\b|pony|illustrious", "sdxl"), (r"\bsd[-_ ]?3", "sd3"),
    (r"\bsd[-_ ]?2|v2[-_]1", "sd2"), (r"\bsd[-_ ]?1[-_.]?5|\bsd15\b|v1[-_]5", "sd15"),
    (r"\bwan[-_ ]?2", "wan"), (r"hunyuan", "hunyuan_video"), (r"\bltx", "ltxv"),
    (r"bert|minilm|mpnet", "bert"),
)

# (model_type, family the file's shapes say) -> the families that share those shapes, so the
# name may refine them: a llama-architecture LLM may be a Mistral (never an SDXL).
REFINABLE_FAMILIES: dict[tuple[str, str], frozenset[str]] = {
    ("llm", "llama"): frozenset({"mistral", "llama", "deepseek"}),
}

# A type the file's tensors prove, that its name may narrow to the folder it is used from:
# ComfyUI's LLM text encoders (Qwen-Image's Qwen2.5-VL, Hunyuan Video's llava-llama3,
# Lumina 2's Gemma, ...) have an LLM's layout. Comfy-Org's repackaged files spell these
# names with underscores (gemma_2_2b_fp16), the models' own repos with hyphens
# (gemma-2-2b-it), so the underscore spelling alone narrows. (type from file, name, type).
NAME_MODEL_TYPE: tuple[tuple[str, str, str], ...] = (
    ("llm", r"text[-_ ]?encoder|llava_llama3|qwen_2\.5_vl|qwen_3_\d+b|gemma_2_2b|gemma_3_\d+b"
            r"|mistral_3_small_flux", "text_encoder"),
)

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
