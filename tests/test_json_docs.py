"""docs/json.md documents the `--json` output of every command; this test runs each command
for real and checks that its output has exactly the documented shape (the same keys at
every level, the same JSON types; `null` in either stands for "may be null").

When a command's JSON changes on purpose, regenerate the examples from real output:

    MODELIMPORT_WRITE_JSON_DOCS=1 python -m pytest -q tests/test_json_docs.py

A new command needs a section in docs/json.md and a run in `_real_outputs` below.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf, make_safetensors, make_sharded_safetensors
from fakehub import FakeHub

from modelimport.cli.app import _register, app

DOCS = Path(__file__).resolve().parents[1] / "docs" / "json.md"
SECTION = re.compile(r"^### `(modelimport [^`]+)`\n(?:(?!^###).)*?```json\n(.*?)\n```", re.M | re.S)
# Objects whose keys are data (model types, folders, file names), not part of the contract.
FREE_KEYS = {"by_type", "destinations", "expected_sha256", "matched_files", "metadata",
             "file_says", "hub", "field_sources", "map"}


def _shape_problems(doc: Any, real: Any, path: str = "$") -> list[str]:
    if doc is None or real is None:
        return []
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{path}: the docs show an object, the output has {type(real).__name__}"]
        if path.rsplit(".", 1)[-1] in FREE_KEYS:
            return []
        problems = []
        if set(doc) != set(real):
            problems.append(
                f"{path}: only in the docs {sorted(set(doc) - set(real))}, "
                f"only in the output {sorted(set(real) - set(doc))}"
            )
        for key in set(doc) & set(real):
            problems += _shape_problems(doc[key], real[key], f"{path}.{key}")
        return problems
    if isinstance(doc, list):
        if not isinstance(real, list):
            return [f"{path}: the docs show a list, the output has {type(real).__name__}"]
        if not doc:
            return []
        # Every element of the output has the shape of one of the documented elements (a
        # list may mix shapes: results that were imported, rejected, duplicates...).
        problems = []
        for index, item in enumerate(real):
            tries = [_shape_problems(d, item, f"{path}[{index}]") for d in doc]
            problems += min(tries, key=len)
        return problems
    kinds = (bool, (int, float), str)
    for kind in kinds:
        if isinstance(doc, kind) != isinstance(real, kind):
            return [f"{path}: the docs show {doc!r}, the output has {real!r}"]
    return []


def _documented() -> dict[str, tuple[str, Any]]:
    """command name (`status`, `apps add`) -> (documented command line, documented JSON)."""
    commands = _command_names()
    found = {}
    for line, body in SECTION.findall(DOCS.read_text()):
        words = line.split()
        name = " ".join(words[1:3]) if " ".join(words[1:3]) in commands else words[1]
        found[name] = (line, json.loads(body))
    return found


def _json(*args: str | Path, env: dict[str, str] | None = None, codes=(0,)) -> Any:
    run = run_cli(*args, env=env)
    assert run.code in codes, (args, run.stderr)
    return run.json


def _real_outputs(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> dict[str, Any]:
    """Run every command once, on a small library, as the docs' examples show."""
    lib = tmp_path / "lib"
    dl = tmp_path / "Downloads"
    make_gguf(dl / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", name="Meta Llama 3 8B Instruct",
              kv={"general.file_type": 15})
    make_safetensors(dl / "detail-tweaker.safetensors", tensors={
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4]),
    })
    (dl / "notes.txt").write_text("not a model")
    sets = tmp_path / "llama-3-70b"
    make_sharded_safetensors(sets, total=3)
    outputs: dict[str, Any] = {}
    outputs["import"] = _json("--library", lib, "import", dl, "--yes", "--json")
    llm_id = next(r["model_id"] for r in outputs["import"]["results"]
                  if r["status"] == "imported" and r["model_id"].startswith("llm/"))
    lora_id = next(r["model_id"] for r in outputs["import"]["results"]
                   if r["status"] == "imported" and not r["model_id"].startswith("llm/"))
    outputs["status"] = _json("--library", lib, "status", "--json")
    outputs["list"] = _json("--library", lib, "list", "--json")
    outputs["retry-pending"] = _json("--library", lib, "retry-pending", "--json",
                                     env=fake_hub_env, codes=(0, 1))
    outputs["lookup"] = _json("lookup", dl / "detail-tweaker.safetensors", "--offline", "--json")
    outputs["shards"] = _json("shards", sets, "--json")
    outputs["rescan"] = _json("--library", lib, "rescan", "--json")
    outputs["check"] = _json("--library", lib, "check", "--json")
    outputs["verify"] = _json("--library", lib, "verify", "--json")
    outputs["mark-manual"] = _json("--library", lib, "mark-manual", llm_id, "--json")
    outputs["edit"] = _json("--library", lib, "edit", lora_id, "--family", "sdxl",
                            "--tag", "detail", "--json")
    lora_id = outputs["edit"]["model_id"]
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    outputs["apps add"] = _json("--library", lib, "apps", "add", "comfy", comfy,
                                "--kind", "comfyui", "--json")
    outputs["apps list"] = _json("--library", lib, "apps", "list", "--json")
    outputs["sync"] = _json("--library", lib, "sync", "--json")
    outputs["show"] = _json("--library", lib, "show", lora_id, "--json")
    # A second LoRA, linked as it is imported, so that `apps remove --unlink` has a link
    # left to remove once `remove` has taken the first one with its link.
    more = tmp_path / "more"
    make_safetensors(more / "add-detail-xl.safetensors", tensors={
        "lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
        "lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4]),
    })
    assert run_cli("--library", lib, "import", more, "--yes").code == 0
    outputs["remove"] = _json("--library", lib, "remove", lora_id, "--yes", "--json")
    outputs["apps remove"] = _json("--library", lib, "apps", "remove", "comfy", "--unlink",
                                   "--json")
    fake_hub.add_repo("Comfy-Org/flux_text_encoders",
                      {"t5xxl_fp16.safetensors": b"t5" * 64, "clip_l.safetensors": b"c" * 96})
    indexed = {**fake_hub_env, "MODELIMPORT_PUBLISHERS": "Comfy-Org"}
    outputs["index update"] = _json("index", "update", "--json", env=indexed)
    outputs["index status"] = _json("index", "status", "--json", env=indexed)
    return outputs


def test_every_command_json_matches_docs_json_md(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    outputs = _real_outputs(tmp_path, fake_hub, fake_hub_env)
    if os.environ.get("MODELIMPORT_WRITE_JSON_DOCS"):
        _rewrite_examples(outputs)
    documented = _documented()
    commands = set(_command_names())
    assert commands <= set(documented), (
        f"commands without a JSON example in docs/json.md: {sorted(commands - set(documented))}"
    )
    assert set(outputs) == set(documented), "each documented command must be run above"
    problems = []
    for name, real in outputs.items():
        problems += [f"{name}: {p}" for p in _shape_problems(documented[name][1], real)]
    assert not problems, "\n".join(problems)


def test_the_shape_check_catches_a_renamed_key():
    assert _shape_problems({"a": 1, "b": [{"c": "x"}]}, {"a": 2, "b": [{"c": "y"}]}) == []
    assert _shape_problems({"a": 1}, {"a": 1, "extra": 2})
    assert _shape_problems({"b": [{"c": "x"}]}, {"b": [{"d": "x"}]})
    assert _shape_problems({"a": True}, {"a": 1})


def _command_names() -> list[str]:
    """Every command that runs, a group's as `group sub` (`apps add`); groups themselves
    (`apps`) print only help."""
    import typer

    _register()
    names = []
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        subs = getattr(command, "commands", None)
        names += [f"{name} {sub}" for sub in subs] if subs else [name]
    return names


def _rewrite_examples(outputs: dict[str, Any]) -> None:
    """Put each command's real output (trimmed to two items per list) into docs/json.md."""

    def trim(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: trim(v) for k, v in value.items()}
        if isinstance(value, list):
            return [trim(v) for v in value[:2]]
        if isinstance(value, str) and "/tmp/" in value:
            value = re.sub(r"/tmp/\S*?/config/", "/home/me/.config/modelimport/", value)
            value = re.sub(r"/tmp/\S*?/hub-cache/", "/home/me/.cache/modelimport/hub/", value)
            return re.sub(r"/tmp/\S*?/(lib|Downloads|llama-3-70b|ComfyUI|more)", r"/home/me/\1",
                          value)
        return value

    text = DOCS.read_text()
    for name, real in outputs.items():
        pattern = re.compile(
            r"(^### `modelimport " + re.escape(name) + r" [^`]*`\n(?:(?!^###).)*?```json\n)(.*?)"
            r"(\n```)",
            re.M | re.S,
        )
        body = json.dumps(trim(real), indent=2, ensure_ascii=False)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    DOCS.write_text(text)
