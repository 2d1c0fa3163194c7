"""Shard file names: which file names are members of a sharded set, and which set.

Recognised patterns (knowledge as data):
- `name-00001-of-00005.ext`: Hugging Face shards and llama.cpp GGUF splits;
- `name.ext.part1`, `name.ext.part2`, ...: split files with no declared total;
- `name.safetensors.index.json` / `name.bin.index.json`: the weight map of a set.

Only names, never file contents: bundle detection and the grouping of sets (readers.shards)
both read these, so this module imports nothing of modelimport.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INDEX_SUFFIX = ".index.json"

# pattern -> how to read (base, number, total) from a file name
_NUMBERED = re.compile(r"^(?P<base>.+?)-(?P<num>\d{1,5})-of-(?P<total>\d{1,5})(?P<ext>\.[^.]+)$")
_PART = re.compile(r"^(?P<base>.+?)(?P<ext>\.[A-Za-z0-9]+)\.part(?P<num>\d{1,5})$", re.IGNORECASE)


@dataclass(frozen=True)
class ShardName:
    base: str
    ext: str
    number: int
    total: int | None  # None for `.partN`, which declares no total


def parse_shard_name(filename: str) -> ShardName | None:
    if m := _NUMBERED.match(filename):
        return ShardName(m["base"], m["ext"].lower(), int(m["num"]), int(m["total"]))
    if m := _PART.match(filename):
        return ShardName(m["base"], m["ext"].lower(), int(m["num"]), None)
    return None
