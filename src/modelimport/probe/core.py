"""Probe: what model a set of files is (type, family, precision), from contents first, name last.

The knowledge lives in tables: tensor-name rules in `key_rules.toml` (probe/rules.py), shapes
to families in probe/shapes.py, everything else in probe/tables.py. The file's own word
(tensor names and shapes, GGUF metadata, safetensors `__metadata__`) decides; the filename
only fills what the file leaves open, and `field_sources` says which one each value came
from: "file", "filename", or "default" when shapes shared by several families left the
choice open and nothing named one.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelimport.formats import FileFacts, TensorInfo
from modelimport.formats.limits import KeptMetadata
from modelimport.formats.pickle_verdict import REFUSED_VERDICTS
from modelimport.names import clean_model_name, is_generic_name
from modelimport.probe.provenance import embedded_repos
from modelimport.probe.rules import KeyText, first_matching_rule
from modelimport.probe.shapes import FAMILY_RESOLVERS, match_table
from modelimport.probe.tables import (
    DTYPE_PRECISION,
    GGUF_ARCHITECTURES,
    GGUF_FLOAT_PRECISION,
    METADATA_FAMILY,
    NAME_FAMILY,
    NAME_MODEL_TYPE,
    NAME_PRECISION,
    NAME_VARIANT,
    REFINABLE_FAMILIES,
)

PICKLE_VERDICT_ORDER = ("safe", "needs_classes", "unknown", "unsafe")


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
    # Added: the parameter count over all files (0 when the file does not say).
    parameter_count: int = 0
    pickle_globals: tuple[str, ...] = ()
    # A finer kind within model_type (t2i_adapter, control_lora, i2v, llm_encoder, ...).
    subtype: str | None = None
    # Classes outside a plain state dict that a loader must import (pickles only): the file
    # loads with torch.load(weights_only=False), not with weights_only=True.
    pickle_needs: tuple[str, ...] = ()
    # Dangerous globals (pickles only): what would run code on load.
    pickle_dangerous: tuple[str, ...] = ()
    # Globals outside the allowlist that are not known to run code: refused all the same.
    pickle_unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Kind:
    model_type: str
    families: tuple[str, ...]  # what the file allows, most likely first; () = it does not say
    subtype: str | None = None


def probe_model(files: list[FileFacts], display_name: str | None = None) -> ModelProbe:
    """Identify a model from all its files (one file, or every shard of a set in order)."""
    if not files:
        raise ValueError("probe_model needs at least one file")
    first = files[0]
    filename = display_name or Path(first.path).name
    sources: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for facts in files:
        tensors.update(facts.tensors)
    metadata = _merged_metadata(files)

    kind = _gguf_kind(first.details, tensors, metadata) if first.format == "gguf" else (
        _kind_from_keys(tensors, metadata)
    )
    model_type, subtype = kind.model_type, kind.subtype
    if model_type != "unknown":
        sources["model_type"] = "file"
    if subtype:
        sources["subtype"] = "file"
    gguf_name = _gguf_name(first.details) if first.format == "gguf" else ""
    family, sources["family"] = _choose_family(model_type, kind.families, metadata,
                                               gguf_name, filename)
    if first.format != "gguf":
        for from_type, pattern, to_type in NAME_MODEL_TYPE:
            if model_type == from_type and re.search(pattern, filename, re.IGNORECASE):
                model_type, sources["model_type"] = to_type, "filename"
                if not subtype:
                    subtype, sources["subtype"] = "llm_encoder", "filename"

    precision, precision_source = _precision(files, tensors, filename)
    sources["precision"] = precision_source
    variant, variant_source = _variant(tensors, filename)
    sources["variant"] = variant_source
    name, name_source = _name(first, filename)
    sources["name"] = name_source
    sources["cleaned_name"] = name_source  # the metadata.json spelling of the same field
    sources.setdefault("model_type", "unknown")

    scans = [f.details.get("pickle_scan") for f in files if f.details.get("pickle_scan")]
    pickle_scan = _merged_scan(scans)
    params = sum(int(f.details.get("parameter_count") or 0) for f in files)
    file_says = _file_says(files, params, metadata, pickle_scan)
    return ModelProbe(
        model_type=model_type,
        family=family,
        precision=precision,
        variant=variant,
        name=name,
        file_says=file_says,
        embedded_repos=embedded_repos(first, metadata),
        # Refused unless --allow-unsafe-pickle: what runs code, and what we cannot vouch for.
        unsafe_pickle=bool(pickle_scan and pickle_scan["verdict"] in REFUSED_VERDICTS),
        field_sources=sources,
        parameter_count=params,
        pickle_globals=tuple(pickle_scan["globals"]) if pickle_scan else (),
        subtype=subtype,
        pickle_needs=tuple(pickle_scan["needs_classes"]) if pickle_scan else (),
        pickle_dangerous=tuple(pickle_scan["dangerous"]) if pickle_scan else (),
        pickle_unknown=tuple(pickle_scan.get("unknown", [])) if pickle_scan else (),
    )


def _kind_from_keys(tensors: dict[str, TensorInfo], metadata: dict[str, Any]) -> _Kind:
    keys = [_strip_wrapper(k) for k in tensors]
    text = KeyText.of(keys)
    rule = first_matching_rule(text)
    if rule is None:
        return _Kind("unknown", ())
    if rule.family.startswith("by:"):
        stripped = dict(zip(keys, tensors.values(), strict=True))
        families = FAMILY_RESOLVERS[rule.family[3:]](stripped, metadata)
    else:
        families = (rule.family,)
    return _Kind(rule.model_type, families, rule.subtype_for(text))


def _gguf_kind(details: dict[str, Any], tensors: dict[str, TensorInfo],
               metadata: dict[str, Any]) -> _Kind:
    arch = details.get("architecture")
    if isinstance(arch, str) and arch in GGUF_ARCHITECTURES:
        model_type, family = GGUF_ARCHITECTURES[arch]
        return _Kind(model_type, (family,) if family != "?" else ())
    # Image and video GGUFs (city96's converter) keep PyTorch's tensor names; their dims are
    # stored innermost first, so they are reversed to read like PyTorch shapes.
    torch_order = {k: TensorInfo(t.dtype, tuple(reversed(t.shape))) for k, t in tensors.items()}
    kind = _kind_from_keys(torch_order, metadata)
    return kind if kind.model_type != "unknown" else _Kind("llm", ())


def _choose_family(model_type: str, families: tuple[str, ...], metadata: dict[str, Any],
                   gguf_name: str, filename: str) -> tuple[str, str]:
    """The family and where it came from, given what the shapes allow."""
    named = match_table(NAME_FAMILY, gguf_name or filename)
    name_source = "file" if gguf_name else "filename"
    if len(families) == 1:
        refinable = REFINABLE_FAMILIES.get((model_type, families[0]))
        if refinable and named in refinable and named != families[0]:
            return named, name_source
        return families[0], "file"
    if families:
        for key in ("modelspec.architecture", "ss_base_model_version"):
            said = match_table(METADATA_FAMILY, str(metadata.get(key, "")))
            if said in families:
                return said, "file"
        if named in families:
            return named, name_source
        return families[0], "default"
    if named:
        return named, name_source
    return "unknown", "unknown"


def _gguf_name(details: dict[str, Any]) -> str:
    meta = details.get("metadata") or {}
    for key in ("general.name", "general.basename"):
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _precision(
    files: list[FileFacts], tensors: dict[str, TensorInfo], filename: str
) -> tuple[str, str]:
    first = files[0]
    if first.format == "gguf":
        quant = first.details.get("quantization")
        if quant:
            # Unquantised GGUF types read like every other file's precision (fp16, not F16).
            return GGUF_FLOAT_PRECISION.get(quant, quant), "file"
        counts = Counter()
        for info in tensors.values():
            if len(info.shape) >= 2:
                counts[info.dtype] += info.numel
        if counts:
            return counts.most_common(1)[0][0], "file"
    params: Counter[str] = Counter()
    for facts in files:
        for dtype, count in (facts.details.get("dtype_parameters") or {}).items():
            if dtype in DTYPE_PRECISION:
                params[DTYPE_PRECISION[dtype]] += count
    if params:
        return params.most_common(1)[0][0], "file"
    named = match_table(NAME_PRECISION, filename.lower())
    if named == "gguf":
        token = re.search(NAME_PRECISION[-1][0], filename.lower())
        named = token.group(1).upper() if token else None
    return (named, "filename") if named else ("unknown", "unknown")


def _variant(tensors: dict[str, TensorInfo], filename: str) -> tuple[str, str]:
    named = match_table(NAME_VARIANT, strip_ext(filename).lower())
    if any(k.startswith("model_ema.") for k in tensors):
        # A checkpoint that still carries its EMA copy next to the live weights is the full one.
        return "full", "file"
    if named:
        return named, "filename"
    return "standard", "default"


def strip_ext(filename: str) -> str:
    return Path(filename).stem


def _name(first: FileFacts, filename: str) -> tuple[str, str]:
    """The file's own name, as the person sees it and the model id's slug is made of (a
    GGUF's general.name is often the base model's: "SmolLM2 135M 8k lc100k mix1 ep2" inside
    SmolLM2-135M-Instruct.Q4_1.gguf). Only a name that says nothing (model.gguf) gives way
    to the GGUF's own general.name."""
    if first.format == "gguf" and is_generic_name(filename):
        meta = first.details.get("metadata") or {}
        for key in ("general.name", "general.basename"):
            value = meta.get(key)
            if isinstance(value, str) and value.strip():
                return clean_model_name(value.strip()), "file"
    return clean_model_name(filename), "filename"


def _merged_metadata(files: list[FileFacts]) -> dict[str, Any]:
    """Every file's kept metadata in one dict, the first file's value winning, within the same
    keep limits as one file (a set of 1,000 shards must not multiply them)."""
    merged = KeptMetadata()
    for facts in files:
        for key, value in (facts.details.get("metadata") or {}).items():
            if key not in merged.entries and merged.wants(key):
                merged.keep(key, value)
    return merged.entries


def _metadata_note(files: list[FileFacts]) -> str | None:
    """What the readers left out of the files' metadata, in one sentence per distinct note."""
    notes = dict.fromkeys(f.details["metadata_note"] for f in files
                          if f.details.get("metadata_note"))
    return " ".join(notes) or None


def _merged_scan(scans: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One verdict over every pickle of the model: the worst of theirs."""
    if not scans:
        return None
    verdict = max((s.get("verdict", "unsafe") for s in scans),
                  key=lambda v: PICKLE_VERDICT_ORDER.index(v) if v in PICKLE_VERDICT_ORDER else 3)
    merged: dict[str, Any] = {"verdict": verdict}
    for key in ("globals", "dangerous", "unknown", "needs_classes", "loader_packages"):
        merged[key] = sorted({g for s in scans for g in s.get(key, [])})
    return merged


def _file_says(files: list[FileFacts], params: int, metadata: dict[str, Any],
               pickle_scan: dict[str, Any] | None) -> dict[str, Any]:
    first = files[0]
    dtypes: Counter[str] = Counter()
    for facts in files:
        dtypes.update(facts.details.get("tensor_dtypes") or facts.details.get("tensor_types") or {})
    says: dict[str, Any] = {
        "format": first.format,
        "parameter_count": params,
        "tensor_count": sum(int(f.details.get("tensor_count") or 0) for f in files),
        "tensor_dtypes": dict(dtypes),
    }
    for key in ("architecture", "quantization", "file_type", "context_length", "gguf_version"):
        if first.details.get(key) is not None:
            says[key] = first.details[key]
    if metadata:
        says["embedded_metadata"] = metadata
    note = _metadata_note(files)
    if note:
        says["embedded_metadata_note"] = note
    if pickle_scan:
        says["pickle_scan"] = pickle_scan
    return says


def _strip_wrapper(key: str) -> str:
    # DataParallel saves prefix every key with "module."; it says nothing about the model.
    return key[7:] if key.startswith("module.") else key
