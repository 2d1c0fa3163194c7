"""Damaged model files get a one-sentence refusal, never an unexpected exception.

Valid files of every format are damaged in the ways real files are (truncated downloads,
flipped bits, inserted bytes, overwritten lengths) with a fixed seed, then inspected and
probed. Anything but a `ModelImportError` would reach the user as an internal error.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from factories import (
    make_evil_pickle,
    make_gguf,
    make_legacy_torch,
    make_safetensors,
    make_torch_zip,
)

from modelimport.errors import ModelImportError
from modelimport.formats import inspect_file
from modelimport.probe import probe_model

CASES_PER_FORMAT = 150
HEADER_BYTES = 4096  # damage lands where the readers look: headers, not tensor data


def _seeds(folder: Path) -> list[Path]:
    tensors = {"model.diffusion_model.input_blocks.0.0.weight": ("F16", [320, 4, 3, 3])}
    return [
        make_safetensors(
            folder / "a.safetensors", tensors, metadata={"ss_base_model_version": "sdxl"}
        ),
        make_gguf(folder / "b.gguf"),
        make_torch_zip(folder / "c.pt", {"w": ("F32", [4, 4])}),
        make_legacy_torch(folder / "d.ckpt", {"w": ("F32", [4, 4])}),
        make_evil_pickle(folder / "e.bin"),
    ]


def _damage(data: bytearray, rng: random.Random) -> bytearray:
    where = rng.randrange(min(len(data), HEADER_BYTES))
    match rng.randrange(4):
        case 0:  # truncated download
            return data[: rng.randrange(len(data))]
        case 1:  # flipped bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(min(len(data), HEADER_BYTES))] = rng.randrange(256)
        case 2:  # inserted bytes shift everything after them
            data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        case _:  # a length or count overwritten with an extreme value
            width = rng.choice([1, 2, 4, 8])
            extreme = rng.choice(
                [b"\xff" * width, b"\x00" * width, b"\x7f" + b"\xff" * (width - 1)]
            )
            data[where : where + width] = extreme
    return data


@pytest.mark.parametrize(
    "seed_index", range(5), ids=["safetensors", "gguf", "zip", "ckpt", "pickle"]
)
def test_damaged_files_are_refused_or_read_never_crash(tmp_path: Path, seed_index: int):
    seed = _seeds(tmp_path)[seed_index]
    original = seed.read_bytes()
    rng = random.Random(seed_index)
    outcomes = {"refused": 0, "read": 0}
    for case in range(CASES_PER_FORMAT):
        damaged = tmp_path / f"case{case}{seed.suffix}"
        damaged.write_bytes(bytes(_damage(bytearray(original), rng)))
        try:
            probe_model([inspect_file(damaged)])
        except ModelImportError as exc:
            message = str(exc)
            assert damaged.name in message and "\n" not in message, message
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
        damaged.unlink()
    # The damage must actually bite: most cases are refused, so the readers were exercised.
    assert outcomes["refused"] >= CASES_PER_FORMAT // 3, outcomes
