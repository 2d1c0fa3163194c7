"""Sidecars: files beside a single model file that describe it and travel with it.

`add_detail.safetensors` keeps `add_detail.civitai.info` (CivitAI's record, as A1111/Forge
extensions and Stability Matrix save it), `add_detail.cm-info.json` (Stability Matrix),
`add_detail.preview.png` (the preview image apps show), `add_detail.yaml` (the inference
config SD 1.x/2.x checkpoints need), `add_detail.json` and `add_detail.txt` (trigger words,
notes). A sidecar is matched by the model's stem (its name without the last extension) and
one suffix of SIDECAR_SUFFIXES; the suffix is compared without regard to case.
"""

from __future__ import annotations

from pathlib import Path

# Longest first: `.preview.png` must win over `.png`, `.cm-info.json` over `.json`.
SIDECAR_SUFFIXES: tuple[str, ...] = (
    ".civitai.info",
    ".cm-info.json",
    ".preview.png",
    ".preview.jpg",
    ".preview.jpeg",
    ".preview.webp",
    ".json",
    ".yaml",
    ".txt",
    # A1111 shows `<stem>.png` as the card image when there is no `.preview.png`.
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
)


def model_stem(model_name: str) -> str:
    """`add_detail.safetensors` -> `add_detail`."""
    stem, dot, _ = model_name.rpartition(".")
    return stem if dot else model_name


def sidecar_owner_stem(name: str) -> str | None:
    """The model stem a file named `name` would be a sidecar of, or None."""
    lower = name.lower()
    for suffix in SIDECAR_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def is_sidecar_name(name: str, model_name: str) -> bool:
    """Is a file named `name` a sidecar of the model file `model_name` beside it?"""
    return sidecar_owner_stem(name) == model_stem(model_name)


def sidecars_of(model: Path, sibling_names: list[str]) -> list[Path]:
    """The sidecars of `model` among the names of the files in its folder, sorted."""
    return sorted(
        model.parent / name
        for name in sibling_names
        if name != model.name and is_sidecar_name(name, model.name)
    )
