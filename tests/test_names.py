"""Names: safe path components and the model names people search for."""

from __future__ import annotations

import os
import unicodedata
from pathlib import PurePath

import pytest

from modelimport.names import (
    MAX_COMPONENT_BYTES,
    clean_model_name,
    is_generic_name,
    keep_or_sanitize_component,
    model_name_for,
    sanitize_component,
    slugify,
    valid_text,
)

# What Linux hands Python for the file name b"bad\xff\xfename.safetensors" (os.fsdecode).
NOT_UTF8 = os.fsdecode(b"bad\xff\xfename.safetensors")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "etc-passwd"),
        ("a/b\\c", "a-b-c"),
        ("..", "unnamed"),
        ("name\x00with\x1fcontrol", "name-with-control"),
        ("Ünïcödé モデル", "Ünïcödé-モデル"),
        ("x" * 500, "x" * MAX_COMPONENT_BYTES),
        ("..safetensors", "unnamed.safetensors"),
        ("../../x.safetensors", "x.safetensors"),
        ("a/../../b.gguf", "a.b.gguf"),
        ("\u2215etc\uff0fpasswd", "etc-passwd"),  # division slash, fullwidth solidus
        ("evil\u202etxt.exe", "evil-txt.exe"),  # right-to-left override
        (".hidden", "unnamed.hidden"),
        ("-rf.pt", "rf.pt"),
        (NOT_UTF8, "bad-name.safetensors"),
    ],
)
def test_sanitize_component_never_leaves_a_separator_or_dotdot(raw: str, expected: str):
    out = sanitize_component(raw)
    assert out == expected
    assert "/" not in out and "\\" not in out and out not in ("", ".", "..")
    assert ".." not in out and not out.startswith((".", "-"))
    assert all(unicodedata.category(ch)[0] != "C" for ch in out)  # no control, no surrogate
    assert len(out.encode()) <= MAX_COMPONENT_BYTES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("模型.safetensors", "模型.safetensors"),
        ("ßüper.safetensors", "ßüper.safetensors"),
        ("my model (v2) [final].safetensors", "my-model-v2-final.safetensors"),
        ("Llama 3 — 8B.gguf", "Llama-3-8B.gguf"),
        ("llama-3-70b-00001-of-00002.safetensors", "llama-3-70b-00001-of-00002.safetensors"),
        ("x.safetensors.part2", "x.safetensors.part2"),
        ("sd_xl_base_1.0_0.9vae.safetensors", "sd_xl_base_1.0_0.9vae.safetensors"),
        ("Ke\u0301ras.bin", "K\u00e9ras.bin"),  # NFC: one é, however it was typed
    ],
)
def test_file_names_keep_their_letters_and_extension(raw: str, expected: str):
    assert sanitize_component(raw) == expected


@pytest.mark.parametrize("stem", ["x" * 240, "模" * 100, "é" * 99 + "x"])
def test_long_names_lose_the_end_of_their_stem_never_their_extension(stem: str):
    out = sanitize_component(stem + ".safetensors")
    assert out.endswith(".safetensors") and stem.startswith(out[: -len(".safetensors")])
    assert MAX_COMPONENT_BYTES - 4 < len(out.encode()) <= MAX_COMPONENT_BYTES


def test_slugs_keep_room_for_a_number_that_keeps_two_models_apart():
    slug = slugify("X" * 500)
    assert slug == "x" * len(slug)
    assert sanitize_component(f"{slug}-12") == f"{slug}-12"


@pytest.mark.parametrize(
    ("filename", "slug"),
    [
        ("模型.safetensors", "模型"),
        ("ßüper.safetensors", "ßüper"),
        ("Модель-7B.gguf", "модель-7b"),
        (NOT_UTF8, "bad-name"),
        ("..safetensors", "model"),
    ],
)
def test_slugs_of_names_in_any_script_are_meaningful(filename: str, slug: str):
    assert slugify(clean_model_name(filename)) == slug


def test_undecodable_bytes_never_reach_a_name_or_the_index():
    assert clean_model_name(NOT_UTF8) == "bad-name"
    assert valid_text(NOT_UTF8) == "bad\ufffd\ufffdname.safetensors"
    valid_text(NOT_UTF8).encode("utf-8")  # what SQLite needs


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Windows takes these for devices, whatever the case or the extension.
        ("CON", "CON_"),
        ("nul.safetensors", "nul_.safetensors"),
        ("com1.tar.gz", "com1_.tar.gz"),
        ("LPT9.ckpt", "LPT9_.ckpt"),
        ("aux ", "aux_"),  # Windows drops the trailing space and sees AUX
        # Windows drops trailing dots and spaces, so two names would become one.
        ("model. ", "model"),
        ("lora...", "lora"),
        # Characters Windows refuses in a name.
        ('a<b>:c"d|e?f*.pt', "a-b-c-d-e-f.pt"),
        # Not devices: longer words, COM10.
        ("console.pt", "console.pt"),
        ("com10.ckpt", "com10.ckpt"),
    ],
)
def test_names_are_valid_on_windows_too(raw: str, expected: str):
    assert sanitize_component(raw) == expected
    assert keep_or_sanitize_component(raw) == expected


def test_a_device_name_is_never_kept_as_it_is_in_a_bundle_either():
    assert keep_or_sanitize_component("nul.json") == "nul_.json"
    assert keep_or_sanitize_component("config.json") == "config.json"
    assert slugify("PRN") == "prn_"
