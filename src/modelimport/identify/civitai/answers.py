"""CivitAI answers -> records: a model version object read field by field, as untrusted input.

The same rules as the Hub's answers (`identify.hub.answers`): any field may be missing, null,
of another type, out of range or hostile. A field we cannot use is dropped; only an answer
that is not the right kind of JSON value at all raises `MalformedAnswer` (the session treats
it as CivitAI failing, so the model stays pending).

Invariants:
- A version counts as the file's only when one of its files lists a SHA256 equal to the one
  asked for: CivitAI's own matching is never taken on trust.
- Every string is plain (no control characters) and bounded; URLs are http(s) or dropped;
  trigger words are a bounded list of bounded strings. Nothing here ever becomes a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelimport.identify.hub.answers import MalformedAnswer, sha256_hex, text

MAX_TEXT = 200
MAX_URL = 2048
MAX_TRIGGER_WORDS = 64
MAX_FILES = 100  # files of one version; real versions have one to a handful
_URL = re.compile(r"^https?://[^\s]+$")

__all__ = ["CivitaiVersion", "MalformedAnswer", "version_record", "versions_list"]


@dataclass(frozen=True)
class CivitaiVersion:
    """What one model version says about itself, sanitised."""

    version_id: int
    model_id: int | None
    model_name: str | None
    version_name: str | None
    model_type: str | None  # CivitAI's type: Checkpoint, LORA, TextualInversion, VAE, ...
    base_model: str | None  # "SD 1.5", "SDXL 1.0", "Flux.1 D", "Pony", ...
    trained_words: tuple[str, ...]
    download_url: str | None
    sha256s: frozenset[str]  # lower-case SHA256 of each file of the version
    file_names: dict[str, str]  # sha256 -> the file's name on CivitAI (display only)

    def to_json(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "version_name": self.version_name,
            "model_type": self.model_type,
            "base_model": self.base_model,
            "trained_words": list(self.trained_words),
            "download_url": self.download_url,
            "sha256s": sorted(self.sha256s),
            "file_names": dict(self.file_names),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CivitaiVersion:
        """From our own cache (written by `to_json`); raises KeyError/TypeError/ValueError."""
        return cls(
            version_id=int(data["version_id"]),
            model_id=int(data["model_id"]) if data.get("model_id") is not None else None,
            model_name=data.get("model_name"),
            version_name=data.get("version_name"),
            model_type=data.get("model_type"),
            base_model=data.get("base_model"),
            trained_words=tuple(str(w) for w in data.get("trained_words") or ()),
            download_url=data.get("download_url"),
            sha256s=frozenset(str(s) for s in data.get("sha256s") or ()),
            file_names={str(k): str(v) for k, v in (data.get("file_names") or {}).items()},
        )


def _id(value: Any) -> int | None:
    return value if type(value) is int and 0 < value < 2**63 else None


def _short(value: Any, limit: int = MAX_TEXT) -> str | None:
    plain = text(value)
    if plain is None:
        return None
    plain = " ".join(plain.split())  # newlines and tabs too: these are one-line labels
    return plain[:limit] or None


def _url(value: Any) -> str | None:
    plain = text(value)
    if plain and len(plain) <= MAX_URL and _URL.match(plain):
        return plain
    return None


def _trained_words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    words: list[str] = []
    for item in value:
        word = _short(item)
        if word and word not in words:
            words.append(word)
        if len(words) >= MAX_TRIGGER_WORDS:
            break
    return tuple(words)


def version_record(data: Any) -> CivitaiVersion | None:
    """One model version object; None when it has no usable id (the answer is still valid)."""
    if not isinstance(data, dict):
        return None
    version_id = _id(data.get("id"))
    if version_id is None:
        return None
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    sha256s: set[str] = set()
    names: dict[str, str] = {}
    files = data.get("files") if isinstance(data.get("files"), list) else []
    for entry in files[:MAX_FILES]:
        if not isinstance(entry, dict) or not isinstance(entry.get("hashes"), dict):
            continue
        hashes = entry["hashes"]
        sha = sha256_hex(hashes.get("SHA256") or hashes.get("sha256"))
        if sha is None:
            continue
        sha256s.add(sha)
        name = _short(entry.get("name"), 255)
        if name:
            names[sha] = name
    return CivitaiVersion(
        version_id=version_id,
        model_id=_id(data.get("modelId")),
        model_name=_short(model.get("name")),
        version_name=_short(data.get("name")),
        model_type=_short(model.get("type"), 40),
        base_model=_short(data.get("baseModel"), 60),
        trained_words=_trained_words(data.get("trainedWords")),
        download_url=_url(data.get("downloadUrl")),
        sha256s=frozenset(sha256s),
        file_names=names,
    )


def versions_list(data: Any) -> list[CivitaiVersion]:
    """The usable versions of a batch answer (`POST /api/v1/model-versions/by-hash`)."""
    if not isinstance(data, list):
        kind = "an object" if isinstance(data, dict) else "not an array"
        raise MalformedAnswer(f"a batch answer that is {kind}")
    return [v for item in data if (v := version_record(item)) is not None]


def single_version(data: Any) -> CivitaiVersion | None:
    """The answer of `GET /api/v1/model-versions/by-hash/<sha256>`."""
    if not isinstance(data, dict):
        raise MalformedAnswer("a by-hash answer that is not an object")
    return version_record(data)
