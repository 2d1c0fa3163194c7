"""Sharded sets: grouping the files of one model and checking the set is complete.

Which names are shards is decided by readers.shard_names; the weight map of an index json
(`name.safetensors.index.json` / `name.bin.index.json`) joins its set and names every shard
the set must have.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from modelimport.readers.bundles.detect import Bundle, weights_order
from modelimport.readers.shard_names import INDEX_SUFFIX, ShardName, parse_shard_name

MAX_INDEX_BYTES = 64 * 1024 * 1024


def is_index_file(path: Path) -> bool:
    return path.name.lower().endswith(INDEX_SUFFIX)


@dataclass(frozen=True)
class ModelFiles:
    """The files of one model: a single file (with its sidecars), every shard of a set (in
    order), or a bundle: a folder that is one model, every file at its relative path.

    `files` are the weights the probe reads; `all_paths` is everything staged."""

    files: tuple[Path, ...]
    index_file: Path | None = None
    is_sharded: bool = False
    shard_total: int | None = None
    missing: tuple[str, ...] = ()  # shard file names (or numbers) the set lacks
    problems: tuple[str, ...] = ()  # e.g. inconsistent totals, unreadable index
    shard_numbers: tuple[int | None, ...] = field(default=())
    companions: tuple[Path, ...] = ()  # sidecars of a single file
    bundle: Bundle | None = None
    # (path, shard number, shard total) of every shard inside a bundle
    bundle_shards: tuple[tuple[Path, int | None, int | None], ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing and not self.problems

    @property
    def all_paths(self) -> tuple[Path, ...]:
        if self.bundle is not None:
            return tuple(f.path for f in self.bundle.files)
        head = (*self.files, self.index_file) if self.index_file else self.files
        return (*head, *self.companions)

    @property
    def display_name(self) -> str:
        if self.bundle is not None:
            return self.bundle.display_name
        if self.files:
            return self.files[0].name
        return self.index_file.name if self.index_file else "?"

    @property
    def set_name(self) -> str:
        """What a set is called as a whole: `model.safetensors` for `model-0000N-of-00005.
        safetensors` and `model.safetensors.index.json`; a single file's own name."""
        if not self.is_sharded:
            return self.display_name
        if self.files and (shard := parse_shard_name(self.files[0].name)):
            return f"{shard.base}{shard.ext}"
        if self.index_file is not None:
            return self.index_file.name[: -len(INDEX_SUFFIX)]
        return self.display_name

    def original_name(self, path: Path) -> str:
        """The file's name as found: its path relative to the bundle root, or its name."""
        if self.bundle is not None:
            return path.relative_to(self.bundle.root).as_posix()
        return path.name

    def role_of(self, path: Path) -> str:
        """weights | index | config | tokenizer | companion (metadata.json files[].role)."""
        if self.bundle is not None:
            return next(f.role for f in self.bundle.files if f.path == path)
        if path == self.index_file:
            return "index"
        return "companion" if path in self.companions else "weights"

    def shard_position(self, path: Path) -> tuple[int | None, int | None]:
        """(shard_index, shard_total) of a shard, (None, None) for any other file."""
        if self.bundle is not None:
            return next(((n, t) for p, n, t in self.bundle_shards if p == path), (None, None))
        if not self.is_sharded or path not in self.files:
            return None, None
        number = self.shard_numbers[self.files.index(path)] if self.shard_numbers else None
        return number, self.shard_total

    def describe_incomplete(self) -> str:
        parts = list(self.problems)
        if self.missing:
            shown = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
            parts.append(f"missing {len(self.missing)} shard(s): {shown}")
        return "; ".join(parts)


def _read_weight_map(index_file: Path) -> tuple[set[str], str | None]:
    """Shard file names the index expects, or a problem sentence."""
    try:
        if index_file.stat().st_size > MAX_INDEX_BYTES:
            return set(), f"{index_file.name} is too large to be a shard index"
        data = json.loads(index_file.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
        return {Path(str(v)).name for v in weight_map.values()}, None
    except (OSError, ValueError, KeyError, TypeError):
        return set(), f"{index_file.name} is not a valid shard index (no weight_map)"


def group_files(paths: list[Path]) -> list[ModelFiles]:
    """Group candidate files into models; shards of one set (same folder) become one model."""
    singles: list[Path] = []
    sets: dict[tuple[Path, str, str], list[tuple[ShardName, Path]]] = defaultdict(list)
    indexes: dict[tuple[Path, str], Path] = {}
    for path in paths:
        if is_index_file(path):
            # `model.safetensors.index.json` belongs to shards `model-0000N-of-0000M.safetensors`
            stem = path.name[: -len(INDEX_SUFFIX)]
            base, _, ext = stem.rpartition(".")
            indexes[(path.parent, f"{base}.{ext}".lower())] = path
            continue
        shard = parse_shard_name(path.name)
        if shard is None:
            singles.append(path)
        else:
            sets[(path.parent, shard.base, shard.ext)].append((shard, path))

    groups = [ModelFiles(files=(p,)) for p in singles]
    used_indexes: set[Path] = set()
    for (folder, base, ext), members in sets.items():
        index_file = indexes.get((folder, f"{base}{ext}".lower()))
        if index_file is None:
            # HF names shards `model-0000N` but the index `model.safetensors.index.json`;
            # with a different base the index is still the set's if it is the only one here.
            here = [p for (f, _), p in indexes.items() if f == folder and p not in used_indexes]
            if len(here) == 1 and here[0].name.lower().endswith(f"{ext}{INDEX_SUFFIX}"):
                index_file = here[0]
        if index_file is not None:
            used_indexes.add(index_file)
        groups.append(_build_set(members, index_file))
    for index_file in indexes.values():
        if index_file not in used_indexes:
            expected, problem = _read_weight_map(index_file)
            groups.append(
                ModelFiles(
                    files=(),
                    index_file=index_file,
                    is_sharded=True,
                    missing=tuple(sorted(expected)) or ("every shard",),
                    problems=(problem,) if problem else (),
                )
            )
    return groups


def _build_set(members: list[tuple[ShardName, Path]], index_file: Path | None) -> ModelFiles:
    members.sort(key=lambda m: m[0].number)
    totals = {m[0].total for m in members}
    problems: list[str] = []
    numbers = [m[0].number for m in members]
    if len(totals) > 1:
        problems.append(
            "shards disagree about the total: " + ", ".join(str(t) for t in sorted(totals, key=str))
        )
    total = max((t for t in totals if t is not None), default=None)
    expected_count = total if total is not None else max(numbers)
    present = set(numbers)
    if len(present) != len(numbers):
        problems.append("the same shard number appears twice")
    missing = [
        _shard_filename(members[0], n, total)
        for n in range(1, expected_count + 1)
        if n not in present
    ]
    if index_file is not None:
        expected, problem = _read_weight_map(index_file)
        if problem:
            problems.append(problem)
        names = {p.name for _, p in members}
        missing = sorted(set(missing) | {n for n in expected if n not in names})
        extra = sorted(n for n in names if expected and n not in expected)
        if extra:
            problems.append(f"{index_file.name} does not list {', '.join(extra)}")
    return ModelFiles(
        files=tuple(p for _, p in members),
        index_file=index_file,
        is_sharded=True,
        shard_total=total if total is not None else max(numbers),
        missing=tuple(missing),
        problems=tuple(problems),
        shard_numbers=tuple(numbers),
    )


def _shard_filename(example: tuple[ShardName, Path], number: int, total: int | None) -> str:
    shard, path = example
    if total is None:
        return f"{shard.base}{shard.ext}.part{number}"
    width = len(re.search(r"-(\d+)-of-", path.name)[1])  # type: ignore[index]
    return f"{shard.base}-{number:0{width}d}-of-{total:0{width}d}{shard.ext}"


def bundle_sets(bundle: Bundle) -> list[ModelFiles]:
    """The sharded sets among a bundle's weights (a transformers folder's shards and their
    index json), complete or not."""
    weights = [f.path for f in bundle.files if f.role == "weights"]
    indexes = [f.path for f in bundle.files if f.role == "index"]
    return [g for g in group_files(weights + indexes) if g.is_sharded]


def group_bundle(bundle: Bundle) -> ModelFiles:
    """A bundle as one model: its weights (read by the probe; a GGUF folder's model before its
    projector) and the shard sets among them, so a bundle missing shards is reported."""
    weights = [f.path for f in bundle.files if f.role == "weights"]
    sets = bundle_sets(bundle)
    shards = tuple(
        (path, number, g.shard_total)
        for g in sets
        for path, number in zip(g.files, g.shard_numbers or (None,) * len(g.files), strict=True)
    )
    missing = tuple(m for g in sets for m in g.missing)
    problems = tuple(p for g in sets for p in g.problems) + bundle.problems
    weights.sort(key=weights_order)
    return ModelFiles(
        files=tuple(weights),
        is_sharded=bool(sets),
        missing=missing,
        problems=problems,
        bundle=bundle,
        bundle_shards=shards,
    )
