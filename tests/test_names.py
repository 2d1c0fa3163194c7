"""Names: safe path components and the model names people search for."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from modelimport.names import clean_model_name, is_generic_name, model_name_for, sanitize_component


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "etc-passwd"),
        ("a/b\\c", "a-b-c"),
        ("..", "unnamed"),
        ("name\x00with\x1fcontrol", "name-with-control"),
        ("Ünïcödé モデル", "Unicode"),
        ("x" * 500, "x" * 96),
    ],
)
def test_sanitize_component_never_leaves_a_separator_or_dotdot(raw: str, expected: str):
    out = sanitize_component(raw)
    assert out == expected
    assert "/" not in out and "\\" not in out and out not in ("", ".", "..")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", "Meta-Llama-3-8B-Instruct"),
        ("mistral-7b-instruct-v0.2.Q4_K_M.gguf", "mistral-7b-instruct-v0.2"),
        ("sd_xl_base_1.0_0.9vae.safetensors", "sd-xl-base-1.0-0.9vae"),
        ("llama-3-70b-Q4_K_M-00002-of-00005.gguf", "llama-3-70b"),
        ("flux1-dev-fp8.safetensors", "flux1-dev"),
        ("x.safetensors.part2", "x"),
    ],
)
def test_clean_model_name_drops_storage_tokens(filename: str, expected: str):
    assert clean_model_name(filename) == expected


@pytest.mark.parametrize(
    "filename",
    [
        "model.safetensors",
        "pytorch_model.bin",
        "diffusion_pytorch_model.safetensors",
        "model-00001-of-00004.safetensors",
        "pytorch_model-00002-of-00003.bin",
    ],
)
def test_generic_names_take_their_folder_name(filename: str):
    assert is_generic_name(filename)
    assert model_name_for(PurePath("/dl/Mistral-7B-v0.1") / filename) == "Mistral-7B-v0.1"


def test_specific_names_keep_their_own_name():
    assert not is_generic_name("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf")
    assert model_name_for(PurePath("/dl/x/anime-mix-v3.safetensors")) == "anime-mix-v3"
