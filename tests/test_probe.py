"""probe: model type, family and precision from what files say, the filename only as fallback."""

from __future__ import annotations

import json

import pytest
from factories import (
    make_evil_pickle,
    make_gguf,
    make_legacy_torch,
    make_safetensors,
    make_torch_zip,
)

from modelimport.formats import inspect_file
from modelimport.probe import ModelProbe, as_repo_id, probe_model

UNET = "model.diffusion_model."
ATTN2_K = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def probe(*paths, display_name=None) -> ModelProbe:
    result = probe_model([inspect_file(p) for p in paths], display_name or paths[0].name)
    json.dumps(result.file_says)  # goes into metadata.json as is
    return result


def sd_checkpoint(dtype: str, context: int, text: dict, extra: dict | None = None) -> dict:
    return {
        f"{UNET}input_blocks.0.0.weight": (dtype, [320, 4, 3, 3]),
        f"{UNET}{ATTN2_K}": (dtype, [320, context]),
        "first_stage_model.encoder.down.0.block.0.conv1.weight": (dtype, [128, 128, 3, 3]),
        "first_stage_model.quant_conv.weight": (dtype, [8, 8, 1, 1]),
        **{key: (dtype, shape) for key, (_, shape) in text.items()},
        **(extra or {}),
    }


SD15 = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight":
        ("F16", [1000, 768])}
SDXL = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight":
        ("F16", [1000, 768]),
    "conditioner.embedders.1.model.token_embedding.weight": ("F16", [1000, 1280]),
    f"{UNET}label_emb.0.0.weight": ("F16", [1280, 2816]),
}


def test_sd15_checkpoint(tmp_path):
    path = make_safetensors(tmp_path / "dreamshaper_8_pruned.safetensors",
                            sd_checkpoint("F16", 768, SD15))
    result = probe(path)
    assert (result.model_type, result.family, result.precision) == ("checkpoint", "sd15", "fp16")
    assert result.variant == "pruned" and result.field_sources["variant"] == "filename"
    assert result.field_sources["family"] == "file"
    assert result.field_sources["precision"] == "file"
    assert result.name == "dreamshaper-8"


def test_sd15_checkpoint_with_ema_is_the_full_variant(tmp_path):
    extra = {"model_ema.diffusion_modelinput_blocks00weight": ("F32", [320, 4, 3, 3])}
    path = make_safetensors(tmp_path / "v1-5.safetensors",
                            sd_checkpoint("F32", 768, SD15, extra))
    result = probe(path)
    assert (result.family, result.precision, result.variant) == ("sd15", "fp32", "full")


def test_sd2_checkpoint(tmp_path):
    text = {"cond_stage_model.model.token_embedding.weight": ("F16", [1000, 1024])}
    path = make_safetensors(tmp_path / "v2-1_768.safetensors", sd_checkpoint("F16", 1024, text))
    assert (probe(path).model_type, probe(path).family) == ("checkpoint", "sd2")


def test_sdxl_checkpoint(tmp_path):
    path = make_safetensors(tmp_path / "juggernaut.safetensors",
                            sd_checkpoint("BF16", 2048, SDXL))
    result = probe(path)
    assert (result.model_type, result.family, result.precision) == ("checkpoint", "sdxl", "bf16")


def test_sd3_checkpoint(tmp_path):
    tensors = {
        f"{UNET}joint_blocks.0.context_block.attn.qkv.weight": ("F16", [48, 16]),
        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": ("F16", [768]),
    }
    result = probe(make_safetensors(tmp_path / "sd3_medium.safetensors", tensors))
    assert (result.model_type, result.family) == ("checkpoint", "sd3")


def test_unet_only_is_a_diffusion_model_with_family_from_context_width(tmp_path):
    tensors = {f"{UNET}input_blocks.0.0.weight": ("F16", [320, 4, 3, 3]),
               f"{UNET}{ATTN2_K}": ("F16", [320, 2048])}
    result = probe(make_safetensors(tmp_path / "unet.safetensors", tensors))
    assert (result.model_type, result.family) == ("diffusion_model", "sdxl")


def test_kohya_lora_family_from_its_metadata(tmp_path):
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [8, 320]),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [320, 8]),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": ("F16", []),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("F16", [8, 768]),
    }
    meta = {"ss_base_model_version": "sd_v1", "ss_network_module": "networks.lora"}
    result = probe(make_safetensors(tmp_path / "my_style_v2.safetensors", tensors, metadata=meta))
    assert (result.model_type, result.family, result.precision) == ("lora", "sd15", "fp16")
    assert result.file_says["embedded_metadata"]["ss_network_module"] == "networks.lora"


def test_sdxl_lora_without_metadata_is_known_by_its_second_text_encoder(tmp_path):
    tensors = {
        "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": ("BF16", [16, 640]),
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("BF16", [16, 768]),
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("BF16", [16, 1280]),
    }
    result = probe(make_safetensors(tmp_path / "xl_lora.safetensors", tensors))
    assert (result.model_type, result.family, result.precision) == ("lora", "sdxl", "bf16")


def test_flux_lora(tmp_path):
    tensors = {"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": ("BF16", [16, 3072])}
    result = probe(make_safetensors(tmp_path / "flux_lora.safetensors", tensors))
    assert (result.model_type, result.family) == ("lora", "flux")


def test_vae(tmp_path):
    tensors = {
        "encoder.down.0.block.0.conv1.weight": ("F32", [128, 128, 3, 3]),
        "decoder.conv_in.weight": ("F32", [512, 4, 3, 3]),
        "decoder.up.0.block.0.conv1.weight": ("F32", [128, 256, 3, 3]),
        "quant_conv.weight": ("F32", [8, 8, 1, 1]),
        "post_quant_conv.weight": ("F32", [4, 4, 1, 1]),
    }
    result = probe(make_safetensors(tmp_path / "vae-ft-mse-840000.safetensors", tensors))
    assert (result.model_type, result.family, result.precision) == ("vae", "sd15", "fp32")
    # SD 1.x, 2.x and XL VAEs have identical shapes: sd15 is a default, not the file's word.
    assert result.field_sources["family"] == "default"

    # SDXL's VAE is the same network: the shapes cannot tell, the name may.
    result = probe(make_safetensors(tmp_path / "sdxl_vae.safetensors", tensors))
    assert (result.model_type, result.family) == ("vae", "sdxl")
    assert result.field_sources["family"] == "filename"

    # ...but a name never turns a 4-channel VAE into a family with other shapes.
    result = probe(make_safetensors(tmp_path / "flux-vae-copy.safetensors", tensors))
    assert result.family == "sd15"


def test_flux_vae_has_16_latent_channels(tmp_path):
    tensors = {
        "encoder.down.0.block.0.conv1.weight": ("BF16", [128, 128, 3, 3]),
        "decoder.conv_in.weight": ("BF16", [512, 16, 3, 3]),
        "quant_conv.weight": ("BF16", [32, 32, 1, 1]),
    }
    result = probe(make_safetensors(tmp_path / "ae.safetensors", tensors))
    assert (result.model_type, result.family) == ("vae", "flux")


def test_flux_transformer(tmp_path):
    tensors = {
        "double_blocks.0.img_attn.qkv.weight": ("BF16", [96, 32]),
        "double_blocks.0.txt_mlp.0.weight": ("BF16", [128, 32]),
        "single_blocks.0.linear1.weight": ("BF16", [224, 32]),
        "img_in.weight": ("BF16", [3072, 64]),
    }
    result = probe(make_safetensors(tmp_path / "flux1-dev.safetensors", tensors))
    assert (result.model_type, result.family, result.precision) == (
        "diffusion_model", "flux", "bf16")


def test_flux_fp8_transformer_precision_follows_the_bulk_of_parameters(tmp_path):
    tensors = {
        "double_blocks.0.img_attn.qkv.weight": ("F8_E4M3", [96, 32]),
        "single_blocks.0.linear1.weight": ("F8_E4M3", [224, 32]),
        "double_blocks.0.img_attn.norm.query_norm.scale": ("BF16", [128]),
    }
    result = probe(make_safetensors(tmp_path / "flux1-dev-fp8.safetensors", tensors))
    assert result.precision == "fp8" and result.field_sources["precision"] == "file"


LLAMA_GGUF_KV = {
    "general.file_type": 15,
    "llama.context_length": 8192,
    "general.source.huggingface.repository": "meta-llama/Meta-Llama-3-8B-Instruct",
    "general.base_model.0.repo_url": "https://huggingface.co/meta-llama/Meta-Llama-3-8B",
}


def test_llama_gguf_q4_k_m_with_embedded_repos(tmp_path):
    path = make_gguf(tmp_path / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf",
                     name="Meta Llama 3 8B Instruct", kv=LLAMA_GGUF_KV,
                     tensors={"token_embd.weight": [32, 16], "blk.0.attn_q.weight": [16, 16]})
    result = probe(path)
    assert (result.model_type, result.family, result.precision) == ("llm", "llama", "Q4_K_M")
    assert result.embedded_repos == ("meta-llama/Meta-Llama-3-8B-Instruct",
                                     "meta-llama/Meta-Llama-3-8B")
    assert result.name == "Meta-Llama-3-8B-Instruct"
    assert result.field_sources["name"] == "filename"  # the file's name, as everywhere
    assert result.file_says["context_length"] == 8192
    assert result.file_says["quantization"] == "Q4_K_M"
    assert result.parameter_count == 32 * 16 + 16 * 16
    assert result.unsafe_pickle is False


def test_mistral_gguf_says_llama_architecture_but_its_name_refines_the_family(tmp_path):
    path = make_gguf(tmp_path / "m.gguf", name="Mistral 7B Instruct v0.3",
                     kv={"general.file_type": 7})
    result = probe(path)
    assert (result.model_type, result.family, result.precision) == ("llm", "mistral", "Q8_0")


@pytest.mark.parametrize(("arch", "family", "model_type"), [
    ("qwen2", "qwen", "llm"), ("gemma2", "gemma", "llm"), ("phi3", "phi", "llm"),
    ("bert", "bert", "text_encoder"), ("flux", "flux", "diffusion_model"),
])
def test_gguf_architecture_table(tmp_path, arch, family, model_type):
    result = probe(make_gguf(tmp_path / f"{arch}.gguf", arch=arch, kv={"general.file_type": 1}))
    assert (result.model_type, result.family, result.precision) == (model_type, family, "fp16")


def test_bert_safetensors(tmp_path):
    tensors = {
        "embeddings.word_embeddings.weight": ("F32", [300, 384]),
        "embeddings.position_ids": ("I64", [1, 512]),
        "encoder.layer.0.attention.self.query.weight": ("F32", [384, 384]),
        "pooler.dense.weight": ("F32", [384, 384]),
    }
    result = probe(make_safetensors(tmp_path / "model.safetensors", tensors))
    assert (result.model_type, result.family, result.precision) == ("text_encoder", "bert", "fp32")


def test_llama_hf_shards_are_probed_together(tmp_path):
    one = make_safetensors(tmp_path / "model-00001-of-00002.safetensors", {
        "model.embed_tokens.weight": ("BF16", [128, 16]),
        "model.layers.0.self_attn.q_proj.weight": ("BF16", [16, 16]),
    })
    two = make_safetensors(tmp_path / "model-00002-of-00002.safetensors", {
        "model.layers.1.self_attn.q_proj.weight": ("BF16", [16, 16]),
        "lm_head.weight": ("BF16", [128, 16]),
    })
    result = probe_model([inspect_file(one), inspect_file(two)],
                         "Llama-3.2-1B-model-00001-of-00002.safetensors")
    assert (result.model_type, result.family, result.precision) == ("llm", "llama", "bf16")
    assert result.field_sources["family"] == "filename"
    assert result.parameter_count == 2 * 128 * 16 + 2 * 16 * 16


def test_qwen_hf_safetensors_is_known_by_its_attention_biases(tmp_path):
    tensors = {"model.layers.0.self_attn.q_proj.weight": ("BF16", [16, 16]),
               "model.layers.0.self_attn.q_proj.bias": ("BF16", [16])}
    result = probe(make_safetensors(tmp_path / "model.safetensors", tensors))
    assert (result.model_type, result.family) == ("llm", "qwen")


def test_zip_checkpoint(tmp_path):
    path = make_torch_zip(tmp_path / "v1-5-pruned-emaonly.ckpt",
                          sd_checkpoint("F16", 768, SD15), wrap="state_dict")
    result = probe(path)
    assert (result.model_type, result.family, result.precision) == ("checkpoint", "sd15", "fp16")
    assert result.variant == "ema"
    assert result.unsafe_pickle is False
    assert result.file_says["pickle_scan"]["verdict"] == "safe"


def test_legacy_pickle_checkpoint(tmp_path):
    tensors = {"conv_first.weight": ("F32", [64, 3, 3, 3]),
               "RRDB_trunk.0.RDB1.conv1.weight": ("F32", [32, 64, 3, 3])}
    result = probe(make_legacy_torch(tmp_path / "4x_esrgan.pth", tensors))
    assert (result.model_type, result.family, result.precision) == ("upscaler", "esrgan", "fp32")


def test_pickle_importing_os_system_is_flagged_unsafe(tmp_path):
    result = probe(make_evil_pickle(tmp_path / "pytorch_model.bin"))
    assert result.unsafe_pickle is True
    assert "os.system" in result.pickle_globals
    assert result.file_says["pickle_scan"]["dangerous"] == ["os.system"]


def test_filename_is_the_fallback_for_precision_and_type(tmp_path):
    path = make_safetensors(tmp_path / "mystery_fp16.safetensors", {"ids": ("I64", [4])})
    result = probe(path)
    assert result.model_type == "unknown" and result.family == "unknown"
    assert result.precision == "fp16" and result.field_sources["precision"] == "filename"


def test_the_file_beats_the_filename(tmp_path):
    path = make_safetensors(tmp_path / "model_fp16.safetensors", {"w": ("I8", [4])})
    result = probe(path)
    assert result.precision == "int8" and result.field_sources["precision"] == "file"


def test_gguf_precision_from_filename_when_file_type_is_missing(tmp_path):
    result = probe(make_gguf(tmp_path / "x.gguf"), display_name="tiny-Q5_K_S.gguf")
    # no general.file_type: the tensor types (F32 here) are still the file's word
    assert result.precision == "F32" and result.field_sources["precision"] == "file"


def test_safetensors_metadata_names_a_repo(tmp_path):
    meta = {"modelspec.source": "https://huggingface.co/black-forest-labs/FLUX.1-dev"}
    tensors = {"double_blocks.0.img_attn.qkv.weight": ("BF16", [8, 8]),
               "single_blocks.0.linear1.weight": ("BF16", [8, 8])}
    result = probe(make_safetensors(tmp_path / "f.safetensors", tensors, metadata=meta))
    assert result.embedded_repos == ("black-forest-labs/FLUX.1-dev",)


@pytest.mark.parametrize(("raw", "repo"), [
    ("org/name", "org/name"),
    ("https://huggingface.co/org/name", "org/name"),
    ("https://huggingface.co/org/name/tree/main", "org/name"),
    ("hf.co/org/name.git", "org/name"),
    ("../etc/passwd", None),
    ("just-a-name", None),
    ("https://example.com/org/name", None),
])
def test_repo_ids_from_untrusted_metadata(raw, repo):
    assert as_repo_id(raw) == repo


def test_a_gguf_model_id_is_the_slug_of_its_file_name_not_of_general_name(tmp_path):
    """Issue 20, point 8: SmolLM2-135M-Instruct.Q4_1.gguf became
    smollm2-135m-8k-lc100k-mix1-ep2-q4_1 (its general.name), losing "Instruct"."""
    from cli import run_cli

    path = make_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf",
                     name="SmolLM2 135M 8k lc100k mix1 ep2", kv={"general.file_type": 3})
    assert probe(path).name == "SmolLM2-135M-Instruct"
    run = run_cli("--library", tmp_path / "lib", "import", path, "--yes", "--offline", "--json")
    [result] = run.json["results"]
    assert result["model_id"].endswith("/smollm2-135m-instruct-q4_1"), result["model_id"]
    generic = make_gguf(tmp_path / "x" / "model.gguf", name="Tiny Story Teller")
    assert probe(generic).name == "Tiny-Story-Teller"  # a name that says nothing gives way
