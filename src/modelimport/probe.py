"""Probe: what model a set of files is (type, family, precision), from contents first, name last."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.formats import FileFacts
from modelimport.names import clean_model_name


@dataclass(frozen=True)
class ModelProbe:
    model_type: str
    family: str
    precision: str
    variant: str
    name: str
    file_says: dict[str, Any] = field(default_factory=dict)
    embedded_repos: tuple[str, ...] = ()
    unsafe_pickle: bool = False
    field_sources: dict[str, str] = field(default_factory=dict)


def probe_model(files: list[FileFacts], display_name: str | None = None) -> ModelProbe:
    first = files[0]
    name = clean_model_name(display_name or Path(first.path).name)
    model_type = "llm" if first.format == "gguf" else "checkpoint"
    return ModelProbe(
        model_type=model_type,
        family="unknown",
        precision="unknown",
        variant="standard",
        name=name,
        field_sources={"model_type": "format", "name": "filename"},
    )
