"""Real model files of each kind an app folder holds, small, typed right by today's probe."""

from __future__ import annotations

import os
from pathlib import Path

from factories import make_gguf, make_safetensors


def sdxl_checkpoint(path: Path, fill: bytes = b"\x01") -> Path:
    return make_safetensors(
        path,
        {
            "model.diffusion_model.input_blocks.0.0.weight": ("F16", [4, 4]),
            "conditioner.embedders.1.model.ln_final.weight": ("F16", [8]),
            "first_stage_model.decoder.conv_in.weight": ("F16", [4, 4]),
        },
        fill=fill,
    )


def sdxl_lora(path: Path, fill: bytes = b"\x02") -> Path:
    return make_safetensors(
        path,
        {
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("F16", [4, 8]),
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": ("F16", [8, 4]),
        },
        fill=fill,
    )


def sdxl_vae(path: Path, fill: bytes = b"\x03") -> Path:
    return make_safetensors(
        path,
        {
            "encoder.down.0.block.0.conv1.weight": ("F16", [4, 4]),
            "quant_conv.weight": ("F16", [8, 8]),
            "decoder.conv_in.weight": ("F16", [8, 4, 3, 3]),
        },
        fill=fill,
    )


def clip_l_text_encoder(path: Path, fill: bytes = b"\x04") -> Path:
    return make_safetensors(
        path,
        {
            "text_model.encoder.layers.0.self_attn.q_proj.weight": ("F16", [768, 768]),
            "text_model.embeddings.token_embedding.weight": ("F16", [16, 768]),
        },
        fill=fill,
    )


def esrgan_upscaler(path: Path, fill: bytes = b"\x05") -> Path:
    return make_safetensors(
        path,
        {
            "conv_first.weight": ("F32", [8, 3, 3, 3]),
            "body.0.rdb1.conv1.weight": ("F32", [8, 8, 3, 3]),
        },
        fill=fill,
    )


def gguf_with_source(path: Path, repo: str, name: str = "Tiny Llama") -> Path:
    """A llama GGUF that names the Hub repo it was converted from."""
    return make_gguf(
        path, "llama", name, kv={"general.source.huggingface.repository": repo}
    )


def gguf_split_set(folder: Path, stem: str = "bigmodel-Q4_K_M", total: int = 3) -> list[Path]:
    """A llama.cpp split set: `<stem>-0000N-of-0000M.gguf`, each a valid GGUF."""
    paths = []
    for i in range(1, total + 1):
        paths.append(
            make_gguf(
                folder / f"{stem}-{i:05d}-of-{total:05d}.gguf",
                "llama",
                "Big Model",
                kv={"split.no": i - 1, "split.count": total},
                tensors={f"blk.{i}.attn_q.weight": [8, 4]},
            )
        )
    return paths


def assert_relative_link_to(link: Path, library_file: Path) -> None:
    assert link.is_symlink(), f"{link} is not a symlink"
    assert not os.path.isabs(os.readlink(link)), os.readlink(link)
    assert link.resolve() == library_file.resolve()
    assert link.read_bytes() == library_file.read_bytes()


def tree(root: Path) -> dict[str, tuple]:
    """Everything under `root` as (kind, link text or bytes): to prove nothing changed."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path), path.lstat().st_ino)
        elif path.is_file():
            found[key] = ("file", path.read_bytes(), path.stat().st_ino)
        else:
            found[key] = ("dir",)
    return found
