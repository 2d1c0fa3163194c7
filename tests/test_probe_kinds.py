"""probe: the model kinds ComfyUI's model folders hold, each from a file in its real layout.

Tensor names and the shapes the probe reads are those of the real files (ComfyUI's
repackaged files, the original releases, diffusers folders); the rest of each file is left
out, and zero-filled data is written as holes, so real widths cost no disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf, make_safetensors, make_torch_zip, nested_state_dict_pickle

from modelimport.formats import inspect_file
from modelimport.probe import MODEL_TYPES, ModelProbe, probe_model


def probe(path: Path) -> ModelProbe:
    result = probe_model([inspect_file(path)], path.name)
    assert result.model_type in MODEL_TYPES
    json.dumps(result.file_says)
    return result


def kind(result: ModelProbe) -> tuple[str, str]:
    return result.model_type, result.family


def st(tmp_path: Path, name: str, tensors: dict, dtype: str = "BF16", **kw) -> Path:
    return make_safetensors(tmp_path / name, {k: (dtype, v) for k, v in tensors.items()}, **kw)


# --- VAEs ----------------------------------------------------------------------------------

# black-forest-labs/FLUX.1-dev ae.safetensors (LDM layout, 16 latent channels, no quant_conv).
FLUX_AE = {
    "encoder.conv_in.weight": [128, 3, 3, 3],
    "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3],
    "encoder.mid.attn_1.q.weight": [512, 512, 1, 1],
    "encoder.conv_out.weight": [32, 512, 3, 3],
    "decoder.conv_in.weight": [512, 16, 3, 3],
    "decoder.up.0.block.0.conv1.weight": [128, 256, 3, 3],
    "decoder.conv_out.weight": [3, 128, 3, 3],
}
# stabilityai/stable-diffusion-3.5-large vae/diffusion_pytorch_model.safetensors (diffusers).
SD3_VAE_DIFFUSERS = {
    "encoder.conv_in.weight": [128, 3, 3, 3],
    "encoder.down_blocks.0.resnets.0.conv1.weight": [128, 128, 3, 3],
    "encoder.conv_out.weight": [32, 512, 3, 3],
    "decoder.conv_in.weight": [512, 16, 3, 3],
    "decoder.up_blocks.0.resnets.0.conv1.weight": [512, 512, 3, 3],
}


def test_flux_ae_is_a_vae_of_the_flux_family(tmp_path):
    result = probe(st(tmp_path, "ae.safetensors", FLUX_AE, "F32"))
    assert kind(result) == ("vae", "flux")
    # The type is proven by the tensors; Flux's and SD3's VAEs share every shape, so the
    # family comes from the name black-forest-labs gave it, and the record says so.
    assert result.field_sources["model_type"] == "file"
    assert result.field_sources["family"] == "filename"


def test_sd3_vae_in_diffusers_layout_is_named_by_its_file(tmp_path):
    result = probe(st(tmp_path, "sd3.5_large_vae.safetensors", SD3_VAE_DIFFUSERS))
    assert kind(result) == ("vae", "sd3") and result.field_sources["family"] == "filename"
    # Nothing in the name: 16 channels default to Flux, and the record says it is a default.
    result = probe(st(tmp_path, "diffusion_pytorch_model.safetensors", SD3_VAE_DIFFUSERS))
    assert kind(result) == ("vae", "flux") and result.field_sources["family"] == "default"


def test_flux_ae_imports_into_the_vae_folder(tmp_path):
    path = st(tmp_path / "dl", "ae.safetensors", FLUX_AE, "F32")
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json")
    assert run.code == 0, run.stderr
    model_id = run.json["results"][0]["model_id"]
    assert model_id.startswith("vae/flux/")
    meta = json.loads((lib / model_id / "metadata.json").read_text())
    assert meta["field_sources"]["model_type"] == "file"
    assert meta["field_sources"]["family"] == "filename"


# Comfy-Org wan_2.1_vae.safetensors: causal 3D convolutions, residual blocks with gamma.
WAN_VAE = {
    "encoder.conv1.weight": [96, 3, 3, 3, 3],
    "encoder.downsamples.0.residual.0.gamma": [96, 1, 1, 1],
    "conv1.weight": [32, 32, 1, 1, 1],
    "decoder.conv1.weight": [384, 16, 3, 3, 3],
    "decoder.middle.0.residual.0.gamma": [384, 1, 1, 1],
}


def test_video_vaes(tmp_path):
    assert kind(probe(st(tmp_path, "wan_2.1_vae.safetensors", WAN_VAE))) == ("vae", "wan")
    # Qwen-Image ships the Wan 2.1 VAE: same shapes, so its name tells.
    result = probe(st(tmp_path, "qwen_image_vae.safetensors", WAN_VAE))
    assert kind(result) == ("vae", "qwen_image") and result.field_sources["family"] == "filename"
    hunyuan = {"encoder.down_blocks.0.resnets.0.conv1.conv.weight": [128, 128, 3, 3, 3],
               "decoder.conv_in.conv.weight": [512, 16, 3, 3, 3]}
    assert kind(probe(st(tmp_path, "hunyuan_video_vae_bf16.safetensors", hunyuan))) == (
        "vae", "hunyuan_video")
    ltx = {"decoder.up_blocks.0.res_blocks.0.conv1.conv.weight": [1024, 1024, 3, 3, 3],
           "decoder.conv_in.conv.weight": [1024, 128, 3, 3, 3]}
    assert kind(probe(st(tmp_path, "ltxv_vae.safetensors", ltx))) == ("vae", "ltxv")


# --- Text encoders -------------------------------------------------------------------------


def test_t5_xxl_text_encoder(tmp_path):
    # comfyanonymous/flux_text_encoders t5xxl_fp16.safetensors
    t5 = {
        "shared.weight": [32128, 4096],
        "encoder.block.0.layer.0.SelfAttention.q.weight": [4096, 4096],
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": [32, 64],
        "encoder.block.1.layer.0.SelfAttention.q.weight": [4096, 4096],
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight": [10240, 4096],
        "encoder.final_layer_norm.weight": [4096],
    }
    result = probe(st(tmp_path, "t5xxl_fp16.safetensors", t5, "F16"))
    assert (*kind(result), result.precision) == ("text_encoder", "t5", "fp16")


def test_umt5_xxl_text_encoder_has_a_relative_bias_in_every_block(tmp_path):
    # Comfy-Org/Wan_2.1_ComfyUI_repackaged umt5_xxl_fp16.safetensors
    umt5 = {
        "shared.weight": [256384, 4096],
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": [32, 64],
        "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight": [32, 64],
        "encoder.block.1.layer.0.SelfAttention.q.weight": [4096, 4096],
    }
    assert kind(probe(st(tmp_path, "umt5_xxl_fp16.safetensors", umt5, "F16"))) == (
        "text_encoder", "umt5")


@pytest.mark.parametrize(("name", "width", "family"), [
    ("clip_l.safetensors", 768, "clip_l"), ("clip_g.safetensors", 1280, "clip_g"),
])
def test_clip_text_encoders(tmp_path, name, width, family):
    clip = {
        "text_model.embeddings.token_embedding.weight": [49408, width],
        "text_model.encoder.layers.0.self_attn.q_proj.weight": [width, width],
        "text_model.final_layer_norm.weight": [width],
        "text_projection.weight": [width, width],
    }
    assert kind(probe(st(tmp_path, name, clip, "F16"))) == ("text_encoder", family)


QWEN_VL_7B = {
    "model.embed_tokens.weight": [152064, 3584],
    "model.layers.0.self_attn.q_proj.weight": [3584, 3584],
    "model.layers.0.self_attn.q_proj.bias": [3584],
    "model.norm.weight": [3584],
}


def test_llm_text_encoder_marked_by_comfyui_scaled_fp8(tmp_path):
    # Comfy-Org/Qwen-Image_ComfyUI qwen_2.5_vl_7b_fp8_scaled.safetensors carries "scaled_fp8".
    tensors = {k: ("F8_E4M3", v) for k, v in QWEN_VL_7B.items()}
    tensors["scaled_fp8"] = ("F8_E4M3", [0])
    path = make_safetensors(tmp_path / "encoder.safetensors", tensors)
    result = probe(path)
    assert kind(result) == ("text_encoder", "qwen") and result.subtype == "llm_encoder"
    assert result.field_sources["model_type"] == "file"


def test_llm_text_encoder_known_by_its_comfyui_name(tmp_path):
    gemma = {"model.layers.0.self_attn.q_proj.weight": [2048, 2304],
             "model.layers.0.pre_feedforward_layernorm.weight": [2304]}
    result = probe(st(tmp_path, "gemma_2_2b_fp16.safetensors", gemma, "F16"))
    assert kind(result) == ("text_encoder", "gemma")
    assert result.field_sources["model_type"] == "filename"
    # The same tensors under an LLM's name stay an LLM.
    assert kind(probe(st(tmp_path, "gemma-2-2b-it.safetensors", gemma, "F16"))) == (
        "llm", "gemma")


# --- CLIP vision --------------------------------------------------------------------------


def test_clip_vision_h(tmp_path):
    # Comfy-Org clip_vision_h.safetensors (open_clip ViT-H/14 in transformers layout)
    vit_h = {
        "vision_model.embeddings.class_embedding": [1280],
        "vision_model.embeddings.patch_embedding.weight": [1280, 3, 14, 14],
        "vision_model.encoder.layers.0.self_attn.q_proj.weight": [1280, 1280],
        "vision_model.post_layernorm.weight": [1280],
        "visual_projection.weight": [1024, 1280],
    }
    assert kind(probe(st(tmp_path, "clip_vision_h.safetensors", vit_h, "F16"))) == (
        "clip_vision", "clip_vit_h")


def test_siglip_vision(tmp_path):
    # Comfy-Org sigclip_vision_patch14_384.safetensors (FLUX.1 Redux's image encoder)
    siglip = {
        "vision_model.embeddings.patch_embedding.weight": [1152, 3, 14, 14],
        "vision_model.encoder.layers.0.self_attn.q_proj.weight": [1152, 1152],
        "vision_model.head.attention.in_proj_weight": [3456, 1152],
    }
    assert kind(probe(st(tmp_path, "sigclip_vision_patch14_384.safetensors", siglip))) == (
        "clip_vision", "siglip")


# --- ControlNet, T2I-Adapter, IP-Adapter, style models --------------------------------------


def test_controlnet_ldm_layout_in_a_pth(tmp_path):
    # lllyasviel/ControlNet-v1-1 control_v11p_sd15_canny.pth
    tensors = {
        "control_model.input_hint_block.0.weight": ("F32", [16, 3, 3, 3]),
        "control_model.input_blocks.0.0.weight": ("F32", [320, 4, 3, 3]),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
            ("F32", [320, 768]),
        "control_model.zero_convs.0.0.weight": ("F32", [320, 320, 1, 1]),
        "control_model.middle_block_out.0.weight": ("F32", [1280, 1280, 1, 1]),
    }
    path = make_torch_zip(tmp_path / "control_v11p_sd15_canny.pth", tensors)
    assert kind(probe(path)) == ("controlnet", "sd15")


def test_controlnet_diffusers_layout(tmp_path):
    # diffusers/controlnet-canny-sdxl-1.0 diffusion_pytorch_model.safetensors
    sdxl = {
        "controlnet_cond_embedding.conv_in.weight": [16, 3, 3, 3],
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
        "controlnet_down_blocks.0.weight": [320, 320, 1, 1],
        "controlnet_mid_block.weight": [1280, 1280, 1, 1],
    }
    assert kind(probe(st(tmp_path, "diffusion_pytorch_model.safetensors", sdxl, "F16"))) == (
        "controlnet", "sdxl")


def test_flux_controlnet_diffusers_layout(tmp_path):
    # InstantX/FLUX.1-dev-Controlnet-Union
    flux = {
        "controlnet_blocks.0.weight": [3072, 3072],
        "controlnet_x_embedder.weight": [3072, 64],
        "transformer_blocks.0.attn.to_q.weight": [3072, 3072],
        "single_transformer_blocks.0.attn.to_q.weight": [3072, 3072],
    }
    assert kind(probe(st(tmp_path, "diffusion_pytorch_model.safetensors", flux))) == (
        "controlnet", "flux")


def test_t2i_adapter_original_and_diffusers_layouts(tmp_path):
    # TencentARC/T2I-Adapter models/t2iadapter_canny_sd15v2.pth: 1 channel, unshuffled by 8.
    original = {
        "conv_in.weight": ("F32", [320, 64, 3, 3]),
        "body.0.block1.weight": ("F32", [320, 320, 3, 3]),
        "body.0.block2.weight": ("F32", [320, 320, 1, 1]),
        "body.2.down_opt.op.weight": ("F32", [640, 640, 3, 3]),
    }
    result = probe(make_torch_zip(tmp_path / "t2iadapter_canny_sd15v2.pth", original))
    assert kind(result) == ("controlnet", "sd15") and result.subtype == "t2i_adapter"
    # TencentARC/t2i-adapter-canny-sdxl-1.0 (diffusers): 3 channels unshuffled by 16.
    diffusers = {
        "adapter.conv_in.weight": [320, 768, 3, 3],
        "adapter.body.0.resnets.0.block1.weight": [320, 320, 3, 3],
        "adapter.body.0.resnets.0.block2.weight": [320, 320, 1, 1],
    }
    result = probe(st(tmp_path, "diffusion_pytorch_model.safetensors", diffusers, "F16"))
    assert kind(result) == ("controlnet", "sdxl") and result.subtype == "t2i_adapter"


def test_ip_adapter_safetensors_and_bin(tmp_path):
    # h94/IP-Adapter models/ip-adapter_sd15.safetensors
    sd15 = {
        "image_proj.proj.weight": [3072, 1024],
        "image_proj.norm.weight": [768],
        "ip_adapter.1.to_k_ip.weight": [320, 768],
        "ip_adapter.1.to_v_ip.weight": [320, 768],
    }
    result = probe(st(tmp_path, "ip-adapter_sd15.safetensors", sd15, "F16"))
    assert kind(result) == ("ipadapter", "sd15") and result.subtype == "ip_adapter"
    # h94/IP-Adapter sdxl_models/ip-adapter-plus_sdxl_vit-h.bin: {"image_proj", "ip_adapter"}
    groups = {
        "image_proj": {"latents": ("F16", [1, 16, 1280]),
                       "proj_in.weight": ("F16", [1280, 1280])},
        "ip_adapter": {"1.to_k_ip.weight": ("F16", [640, 2048]),
                       "1.to_v_ip.weight": ("F16", [640, 2048])},
    }
    tensors = {k: v for g in groups.values() for k, v in g.items()}
    path = make_torch_zip(tmp_path / "ip-adapter-plus_sdxl_vit-h.bin", tensors,
                          pickle_bytes=nested_state_dict_pickle(groups))
    result = probe(path)
    assert kind(result) == ("ipadapter", "sdxl") and result.subtype == "plus"
    assert result.file_says["pickle_scan"]["verdict"] == "safe"


def test_flux_redux_style_model(tmp_path):
    redux = {"redux_up.weight": [12288, 1152], "redux_down.weight": [4096, 12288]}
    assert kind(probe(st(tmp_path, "flux1-redux-dev.safetensors", redux))) == (
        "style_model", "flux")


# --- Upscalers (spandrel's architectures) -------------------------------------------------

UPSCALERS = {
    # xinntao Real-ESRGAN realesr-general-x4v3.pth (SRVGGNetCompact): conv, PReLU, conv, ...
    "realesrgan_compact": {"body.0.weight": [64, 3, 3, 3], "body.0.bias": [64],
                           "body.1.weight": [64], "body.2.weight": [64, 64, 3, 3],
                           "body.34.weight": [48, 64, 3, 3]},
    # JingyunLiang 003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth
    "swinir": {"conv_first.weight": [180, 3, 3, 3], "patch_embed.norm.weight": [180],
               "layers.0.residual_group.blocks.0.norm1.weight": [180],
               "layers.0.residual_group.blocks.0.attn.relative_position_bias_table": [225, 6],
               "conv_after_body.weight": [180, 180, 3, 3]},
    # Swin2SR_RealworldSR_X4_64_BSRGAN_PSNR.pth
    "swin2sr": {"conv_first.weight": [180, 3, 3, 3],
                "layers.0.residual_group.blocks.0.norm1.weight": [180],
                "layers.0.residual_group.blocks.0.attn.cpb_mlp.0.weight": [512, 2]},
    # Real_HAT_GAN_SRx4.pth
    "hat": {"conv_first.weight": [180, 3, 3, 3],
            "layers.0.residual_group.blocks.0.norm1.weight": [180],
            "layers.0.residual_group.blocks.0.conv_block.cab.0.weight": [60, 180, 3, 3]},
    # Phhofm 4xNomos8kDAT.pth
    "dat": {"conv_first.weight": [180, 3, 3, 3], "before_RG.1.weight": [180],
            "layers.0.blocks.0.attn.attns.0.pos.pos_proj.weight": [45, 2]},
    # OmniSR_X4_DIV2K.safetensors
    "omnisr": {"input.weight": [64, 3, 3, 3],
               "residual_layer.0.residual_layer.0.layer.0.fn.0.weight": [128, 64, 1, 1]},
    # 4x-ClearRealityV1 SPAN
    "span": {"conv_1.sk.weight": [48, 3, 1, 1], "block_1.c1_r.sk.weight": [48, 48, 1, 1]},
}


@pytest.mark.parametrize("family", sorted(UPSCALERS))
def test_upscaler_architectures(tmp_path, family):
    tensors = {k: ("F32", v) for k, v in UPSCALERS[family].items()}
    # BasicSR releases wrap the weights in "params_ema".
    path = make_torch_zip(tmp_path / f"4x_{family}.pth", tensors, wrap="params_ema")
    assert kind(probe(path)) == ("upscaler", family)


# --- Video diffusion models ---------------------------------------------------------------


def test_wan_text_and_image_to_video(tmp_path):
    # Comfy-Org wan2.1_t2v_1.3B_fp16.safetensors
    wan = {
        "patch_embedding.weight": [1536, 16, 1, 2, 2],
        "text_embedding.0.weight": [1536, 4096],
        "blocks.0.self_attn.q.weight": [1536, 1536],
        "head.modulation": [1, 2, 1536],
        "head.head.weight": [64, 1536],
    }
    result = probe(st(tmp_path, "wan2.1_t2v_1.3B_fp16.safetensors", wan, "F16"))
    assert kind(result) == ("diffusion_model", "wan") and result.subtype == "t2v"
    i2v = {**wan, "img_emb.proj.0.weight": [1280], "img_emb.proj.0.bias": [1280]}
    result = probe(st(tmp_path, "wan2.1_i2v_480p_14B_fp16.safetensors", i2v, "F16"))
    assert kind(result) == ("diffusion_model", "wan") and result.subtype == "i2v"


def test_hunyuan_video_is_not_taken_for_flux(tmp_path):
    # Comfy-Org hunyuan_video_t2v_720p_bf16.safetensors: double/single blocks like Flux.
    hunyuan = {
        "img_in.proj.weight": [3072, 16, 1, 2, 2],
        "txt_in.individual_token_refiner.blocks.0.norm1.weight": [3072],
        "double_blocks.0.img_attn_qkv.weight": [9216, 3072],
        "single_blocks.0.linear1.weight": [21504, 3072],
    }
    assert kind(probe(st(tmp_path, "hunyuan_video_t2v_720p_bf16.safetensors", hunyuan))) == (
        "diffusion_model", "hunyuan_video")


def test_ltx_video(tmp_path):
    # Lightricks/LTX-Video ltx-video-2b-v0.9.5.safetensors carries its VAE: a checkpoint.
    ltx = {
        "model.diffusion_model.patchify_proj.weight": [2048, 128],
        "model.diffusion_model.adaln_single.emb.timestep_embedder.linear_1.weight": [2048, 256],
        "model.diffusion_model.transformer_blocks.0.attn1.to_q.weight": [2048, 2048],
        "vae.decoder.conv_in.conv.weight": [1024, 128, 3, 3, 3],
    }
    assert kind(probe(st(tmp_path, "ltx-video-2b-v0.9.5.safetensors", ltx))) == (
        "checkpoint", "ltxv")
    transformer = {k.removeprefix("model.diffusion_model."): v for k, v in ltx.items()
                   if k.startswith("model.")}
    assert kind(probe(st(tmp_path, "ltxv-transformer.safetensors", transformer))) == (
        "diffusion_model", "ltxv")


# --- GGUF-quantised image and video models (city96's ComfyUI-GGUF) --------------------------


def test_flux_unet_in_gguf_q8_0(tmp_path):
    # city96/FLUX.1-dev-gguf flux1-dev-Q8_0.gguf: architecture "flux", PyTorch tensor names.
    path = make_gguf(tmp_path / "flux1-dev-Q8_0.gguf", arch="flux", quant="Q8_0",
                     kv={"general.file_type": 7},
                     tensors={"double_blocks.0.img_attn.qkv.weight": [96, 64],
                              "single_blocks.0.linear1.weight": [224, 64],
                              "img_in.weight": [64, 64]})
    result = probe(path)
    assert (*kind(result), result.precision) == ("diffusion_model", "flux", "Q8_0")
    assert result.file_says["tensor_dtypes"]["Q8_0"] == 3


def test_sd3_unet_in_gguf(tmp_path):
    path = make_gguf(tmp_path / "sd3.5_large-Q4_0.gguf", arch="sd3", quant="Q4_0",
                     kv={"general.file_type": 2},
                     tensors={"joint_blocks.0.context_block.attn.qkv.weight": [96, 64]})
    result = probe(path)
    assert (*kind(result), result.precision) == ("diffusion_model", "sd3", "Q4_0")


def test_gguf_image_model_of_an_unlisted_architecture_is_known_by_its_tensor_names(tmp_path):
    # A converter's new architecture name: the PyTorch tensor names still tell.
    path = make_gguf(tmp_path / "wan2.2-Q8_0.gguf", arch="wan22", quant="Q8_0",
                     tensors={"head.modulation": [1, 2, 64],
                              "blocks.0.self_attn.q.weight": [64, 64]})
    assert kind(probe(path)) == ("diffusion_model", "wan")


@pytest.mark.parametrize(("arch", "family"), [
    ("hyvid", "hunyuan_video"), ("ltxv", "ltxv"), ("wan", "wan"), ("aura", "auraflow"),
    ("hidream", "hidream"), ("lumina2", "lumina2"), ("qwen_image", "qwen_image"),
])
def test_gguf_video_and_image_architectures(tmp_path, arch, family):
    result = probe(make_gguf(tmp_path / f"{arch}-Q4_K_M.gguf", arch=arch))
    assert kind(result) == ("diffusion_model", family)


# --- Image diffusion models ComfyUI knows -------------------------------------------------


@pytest.mark.parametrize(("keys", "family"), [
    (["txt_norm.weight", "transformer_blocks.0.img_mod.1.weight"], "qwen_image"),
    (["double_stream_blocks.0.block.attn1.to_q.weight"], "hidream"),
    (["cap_embedder.0.weight", "noise_refiner.0.attention.qkv.weight"], "lumina2"),
    (["double_layers.0.attn.w1q.weight"], "auraflow"),
    (["distilled_guidance_layer.in_proj.weight", "double_blocks.0.img_attn.qkv.weight",
      "single_blocks.0.linear1.weight"], "chroma"),
    (["mlp_t5.0.weight", "blocks.0.attn1.Wqkv.weight"], "hunyuan_dit"),
])
def test_other_diffusion_transformers(tmp_path, keys, family):
    path = st(tmp_path, f"{family}.safetensors", {k: [8, 8] for k in keys})
    assert kind(probe(path)) == ("diffusion_model", family)


def test_a_t2i_adapter_keeps_its_subtype_after_a_verified_match_to_a_controlnet_repo(
    tmp_path, fake_hub, fake_hub_env
):
    diffusers = {
        "adapter.conv_in.weight": [320, 768, 3, 3],
        "adapter.body.0.resnets.0.block1.weight": [320, 320, 3, 3],
    }
    path = st(tmp_path / "dl", "t2i-adapter-canny-sdxl-1.0.safetensors", diffusers, "F16")
    fake_hub.add_repo("TencentARC/t2i-adapter-canny-sdxl-1.0", {path.name: path.read_bytes()},
                      tags=["controlnet", "t2i-adapter", "stable-diffusion-xl"])
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["trust_level"] == "verified"
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert (meta["model_type"], meta["family"], meta["subtype"]) == (
        "controlnet", "sdxl", "t2i_adapter")
    assert meta["field_sources"]["subtype"] == "file"


KOHYA_ATTN1 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
KOHYA_TE = "lora_te_text_model_encoder_layers_0_mlp_fc1"


@pytest.mark.parametrize(
    ("te_width", "family", "source"),
    [(None, "sd15", "default"), (768, "sd15", "file"), (1024, "sd2", "file")],
)
def test_a_kohya_lora_s_family_is_a_fact_only_when_a_width_proves_it(
    tmp_path: Path, te_width: int | None, family: str, source: str
):
    """`lora_unet_`/`lora_te_` keys are SD 1.x's and SD 2.x's alike: with only self-attention
    UNet keys nothing tells them apart, so sd15 is a default (a CivitAI answer may refile
    it); a text-encoder LoRA's width (CLIP-L 768, OpenCLIP-H 1024) proves the family."""
    tensors = {f"{KOHYA_ATTN1}.lora_down.weight": [8, 320],
               f"{KOHYA_ATTN1}.lora_up.weight": [320, 8]}
    if te_width:
        tensors[f"{KOHYA_TE}.lora_down.weight"] = [8, te_width]
        tensors[f"{KOHYA_TE}.lora_up.weight"] = [3072, 8]
    result = probe(st(tmp_path, "style.safetensors", tensors, dtype="F16"))
    assert kind(result) == ("lora", family)
    assert result.field_sources["family"] == source
