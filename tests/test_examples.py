"""Every example command line in `--help` and in README.md's usage block runs as written:
in a folder holding the files they name (~/Downloads, ./dl, ./llama-3-70b/, ...), each one
ends with exit 0 (or the exit and sentence NOT_ZERO expects), without a usage error or a
traceback, and the ids they name are the ids an import of those files gives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from app_models import sdxl_lora
from cli import cli_env, run_cli_here
from factories import make_gguf, make_safetensors, make_sharded_safetensors, make_torch_zip

from modelimport.cli.app import _register, app

ROOT = Path(__file__).resolve().parents[1]


# Every example ends with exit 0 in the sandbox but these, each with the one sentence that
# says why (anything else, a changed exit code or a new example that fails, fails the test).
NOT_ZERO = {
    # Completing a set from the Hub needs a repo that holds it: the fake Hub here is empty
    # (tests/test_downloads.py runs these against repos that do).
    "modelimport shards --download-missing --with-related ./llama-3-70b/": (
        1, "has nothing to download from: no Hub repo was matched to it."),
    "modelimport shards --download-missing llm/llama/llama-3-70b-instruct": (
        1, "is neither a model id in the library"),
    # Run after `remove lora/sdxl/add-detail-xl`, which removed that model already.
    "modelimport remove lora/sdxl/add-detail-xl --keep-files": (
        1, "No model lora/sdxl/add-detail-xl in the library"),
}  # fmt: skip


def _help_examples() -> list[str]:
    import typer

    _register()
    examples = []
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        text = run_cli_here(name, "--help").stdout
        examples += [ln.strip() for ln in text.split("Examples:")[-1].splitlines()
                     if ln.strip().startswith("modelimport ")]
    return examples


def _readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    usage = text.split("## Usage", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [ln.split("  #")[0].strip() for ln in usage.splitlines()
            if ln.strip().startswith("modelimport ")]


def _sandbox(home: Path) -> None:
    """The files and folders the examples name, each one a model of the kind its name says
    (so the ids the examples use are the ids their import gives)."""
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4])}
    make_safetensors(home / "Downloads" / "detail-tweaker.safetensors", lora, fill=b"\x01")
    sdxl_lora(home / "Downloads" / "add-detail-xl.safetensors")
    for folder in (home, home / "dl"):
        make_gguf(folder / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf",
                  name="Meta Llama 3 8B Instruct", kv={"general.file_type": 15})
    make_gguf(home / "dl" / "Llama-3-8B-Instruct-Q4_K_M.gguf", name="Llama 3 8B Instruct",
              kv={"general.file_type": 15})
    make_gguf(home / "dl" / "Llama-3-70B-Q4_K_M.gguf", name="Llama 3 70B",
              kv={"general.file_type": 15})
    make_safetensors(home / "dl" / "other.safetensors", fill=b"\x02")
    make_sharded_safetensors(home / "llama-3-70b", total=2)
    make_safetensors(home / "sd_xl_base_1.0.safetensors", fill=b"\x03")
    make_safetensors(home / "model.safetensors", fill=b"\x04")
    make_safetensors(home / "models" / "bert" / "model.safetensors", fill=b"\x05")
    make_torch_zip(home / "sd-v1-4.ckpt", {
        "model.diffusion_model.input_blocks.0.0.weight": ("F16", [320, 4, 3, 3]),
        "first_stage_model.decoder.conv_in.weight": ("F16", [4, 4]),
    })  # fmt: skip
    llama = home / "Llama-3.2-1B-Instruct"
    make_safetensors(llama / "model.safetensors", {
        "model.embed_tokens.weight": ("F16", [64, 16]),
        "model.layers.0.self_attn.q_proj.weight": ("F16", [16, 16]),
        "lm_head.weight": ("F16", [64, 16]),
    })  # fmt: skip
    (llama / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16}
    ))  # fmt: skip
    (llama / "tokenizer.json").write_text("{}")
    (home / "ComfyUI" / "models").mkdir(parents=True)  # an app folder for `apps add`


def _order(line: str) -> tuple[int, str]:
    # Imports first (later examples name what they import); renames late; the import that
    # deletes the originals last (earlier examples name those files).
    words = line.split()
    rank = {"apps": 0, "import": 0, "edit": 3, "mark-manual": 2, "remove": 4}.get(words[1], 1)
    return (rank + ("--name" in words) + 5 * ("--delete-originals" in words), line)


def _run(line: str, home: Path, env: dict[str, str]) -> tuple[int, str]:
    if line.startswith("modelimport remove") and "--yes" not in line:
        import pexpect  # asks before removing: answer yes, as a person would

        child = pexpect.spawn("bash", ["-c", line], cwd=home, env=env, encoding="utf-8",
                              dimensions=(50, 200), timeout=120)
        if child.expect([r"\?", pexpect.EOF]) == 0:
            child.sendline("y")
            child.expect(pexpect.EOF)
        child.close()
        return child.exitstatus or 0, child.before or ""
    if line.startswith("modelimport import") and "--yes" not in line:
        import pexpect  # the review needs a terminal: answer it as a person would (Enter)

        child = pexpect.spawn("bash", ["-c", line], cwd=home, env=env, encoding="utf-8",
                              dimensions=(50, 200), timeout=120)
        if child.expect([r"model\(s\)\?", pexpect.EOF]) == 1:
            child.close()
            return child.exitstatus or 2, child.before  # it ended without asking: say why
        child.sendline("")
        child.expect(pexpect.EOF)
        child.close()
        return child.exitstatus, child.before
    proc = subprocess.run(["bash", "-c", line], cwd=home, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    return proc.returncode, proc.stderr + proc.stdout


def test_every_example_in_help_and_readme_runs_as_written(
    tmp_path: Path, fake_hub_env: dict[str, str]
):
    home = tmp_path / "home"
    _sandbox(home)
    env = cli_env({"HOME": str(home), "MODELIMPORT_LIBRARY": str(home / "lib"),
                   "PATH": str(Path(__import__("sys").executable).parent) + ":/usr/bin:/bin",
                   **fake_hub_env})
    examples = sorted(set(_help_examples() + _readme_examples()), key=_order)
    assert len(examples) >= 20, examples
    failures = []
    for line in examples:
        code, out = _run(line, home, env)
        want_code, want_text = NOT_ZERO.get(line, (0, ""))
        if code != want_code or want_text not in out or "Traceback" in out or "Usage:" in out:
            failures.append(f"{line}\n  exit {code}, expected {want_code}: {out.strip()[-300:]}")
    assert not failures, "\n".join(failures)
    assert set(NOT_ZERO) <= set(examples), "NOT_ZERO names an example that is gone"
