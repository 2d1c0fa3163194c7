"""Limits on what the safetensors and GGUF readers read and keep: every one here, with why.

Two kinds. A *read* limit bounds the work and memory a header can demand; a file beyond it is
refused in one sentence (no real model comes near these values). A *keep* limit bounds what
goes into metadata.json; a value beyond it is cut or dropped, and the record says so in
`metadata_note`. Budget: refusing or reading any one file costs well under 5 s and 300 MB
(docs/safety.md, "Limits on what a parser reads", has the measurements).
"""

from __future__ import annotations

# --- read limits: beyond them a file is refused -------------------------------------------

# safetensors' own loader refuses headers over 100,000,000 bytes. Parsing JSON in Python
# costs several times its size in objects, so ours is lower: 16 MiB holds the header of a
# file with 130,000 tensors, and real single files have a few thousand (their headers are a
# few hundred KB; kohya's LoRA metadata adds at most a few MB).
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024
# JSON values a safetensors header may hold, counted before parsing as its commas, brackets
# and braces (an upper bound: those inside strings count too). Each value costs up to ~150
# bytes once parsed, so this caps the parse at ~150 MB whatever the header's shape; a tensor
# entry takes about 8, so MAX_TENSORS of them fit with room for metadata.
MAX_SAFETENSORS_JSON_ITEMS = 1_000_000
# Tensors in one file (safetensors or GGUF). The tensor table is held in memory for the probe
# (~1 KB each with its name) and every tensor is checked in Python (~5 us each, more on a busy
# machine). The largest real single files hold a few thousand (a sharded model's shards
# fewer); 65,536 is ten times beyond them.
MAX_TENSORS = 65_536
# Bytes of all tensor names of one file together. The probe searches every name with ~100
# patterns (probe/key_rules.toml), ~0.1 s per MiB of names; real files hold well under 1 MiB
# (3,000 names of 60 bytes), 8 MiB is 65,536 names of 128 bytes.
MAX_TENSOR_NAMES_BYTES = 8 * 1024 * 1024
# GGUF header entries walked one by one: key/value pairs, items of string arrays and nested
# arrays, tensor infos (arrays of numbers are skipped in one step and not counted). The biggest
# real headers (a 262,144-token vocabulary and its merges) walk about 1 million; each costs
# ~0.5 us, so 4 million bound the walk to about 2 s.
MAX_GGUF_HEADER_ITEMS = 4_000_000
# Key/value pairs in a GGUF header. Real files have 20 to 60; each key may be 64 KiB long,
# and a hash of each is held to refuse duplicates, so the count is bounded on its own.
MAX_GGUF_KEYS = 65_536
# Arrays inside arrays. llama.cpp reads no nested array at all and gguf-py's writer makes them
# only from nested lists; depth beyond 4 is an attack on a recursive reader (gguf-py's own
# dies of RecursionError at ~1,000).
MAX_GGUF_ARRAY_DEPTH = 4
# A key's length: the GGUF specification allows at most 65,535 bytes.
MAX_GGUF_KEY_BYTES = 65_535
# A tensor's name is kept for the probe. llama.cpp refuses names of 64 bytes or more; city96's
# image GGUFs keep PyTorch's longer names (~100 bytes); 512 leaves room and caps the table.
MAX_GGUF_TENSOR_NAME_BYTES = 512
# Dimensions of a tensor: GGML_MAX_DIMS in llama.cpp, which refuses more.
MAX_GGUF_DIMS = 4

# --- keep limits: beyond them a value is cut or dropped, with a note in the record ---------

# Metadata entries kept per file, in file order. kohya's LoRA metadata has ~80 keys, modelspec
# ~15, a GGUF ~40; what the probe looks for (general.*, ss_base_model_version, modelspec.*) is
# kept whatever its position.
MAX_KEPT_METADATA_ENTRIES = 256
# A kept value's length in characters: kohya's ss_tag_frequency and a GGUF chat template can
# run to megabytes, and the probe reads only short values (names, architectures, versions).
MAX_KEPT_VALUE_CHARS = 4096
# A kept key's length: longer keys are no key any tool writes or the probe reads.
MAX_KEPT_KEY_CHARS = 256
# Items of a GGUF array kept as a list; a longer array is kept as {"array_of", "count"}.
MAX_KEPT_ARRAY_ITEMS = 16
# Keys that readers of the metadata look for (the probe's family and name, provenance's
# repository names): kept even after MAX_KEPT_METADATA_ENTRIES others, up to as many again.
PRIORITY_METADATA_PREFIXES = ("general.", "modelspec.", "ss_base_model", "ss_sd_model_name",
                              "ss_network", "source", "repo_id", "hf_repo", "base_model",
                              "_name_or_path")


class KeptMetadata:
    """A file's metadata as metadata.json keeps it: entries in file order within the keep
    limits, and a note saying what was cut or dropped."""

    def __init__(self) -> None:
        self.entries: dict[str, object] = {}
        self.total = 0
        self.dropped = 0
        self.cut = 0
        self._priority_kept = 0

    def wants(self, key: str) -> bool:
        """Whether the value of `key` (the next entry of the file) is kept; counts it."""
        self.total += 1
        if len(key) <= MAX_KEPT_KEY_CHARS and key not in self.entries:
            if len(self.entries) - self._priority_kept < MAX_KEPT_METADATA_ENTRIES:
                return True
            if key.startswith(PRIORITY_METADATA_PREFIXES) and (
                self._priority_kept < MAX_KEPT_METADATA_ENTRIES
            ):
                self._priority_kept += 1
                return True
        self.dropped += 1
        return False

    def keep(self, key: str, value: object) -> None:
        if isinstance(value, str) and len(value) > MAX_KEPT_VALUE_CHARS:
            value = value[: MAX_KEPT_VALUE_CHARS - 1] + "…"
            self.cut += 1
        self.entries[key] = value

    @property
    def note(self) -> str | None:
        """One sentence for the record, or None when everything was kept whole."""
        parts = []
        if self.dropped:
            parts.append(f"{self.dropped:,} of {self.total:,} metadata entries dropped "
                         f"(at most {MAX_KEPT_METADATA_ENTRIES} are kept, keys of at most "
                         f"{MAX_KEPT_KEY_CHARS} characters)")
        if self.cut:
            values = "value" if self.cut == 1 else "values"
            parts.append(f"{self.cut:,} {values} cut to {MAX_KEPT_VALUE_CHARS:,} characters")
        if not parts:
            return None
        sentence = "; ".join(parts)
        return sentence[0].upper() + sentence[1:] + "."
