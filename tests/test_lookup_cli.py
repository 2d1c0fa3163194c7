"""`modelimport lookup` end to end: a real subprocess against the fake Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cli import run_cli
from factories import make_safetensors
from fakehub import FakeHub


def model_file(tmp_path: Path, name: str, folder: str = "dl") -> tuple[Path, bytes]:
    path = make_safetensors(tmp_path / folder / name, tensors={"w": ("F16", [8, 8])})
    return path, path.read_bytes()


def test_lookup_pending_then_verified_with_verify(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    path, data = model_file(tmp_path, "Qwen2-7B-Instruct.safetensors")
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: data}, downloads=5, tags=["qwen2"])
    run = run_cli("lookup", path, "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    report = run.json["results"][0]
    assert report["trust"] == "high_confidence" and report["status"] == "pending verification"
    assert report["file"]["format"] == "safetensors" and report["file"]["sha256"] is None
    assert report["expected_sha256"] == {path.name: hashlib.sha256(data).hexdigest()}
    assert report["candidates"][0]["repo_id"] == "Qwen/Qwen2-7B-Instruct"

    run = run_cli("lookup", path, "--json", "--verify", env=fake_hub_env)
    report = run.json["results"][0]
    assert (report["trust"], report["match_method"], report["confidence"]) == (
        "verified", "hash", 1.0,
    )
    # Reading a whole file is shown as progress (JSON lines on stderr with --json).
    stages = [json.loads(line)["stage"] for line in run.stderr.splitlines()]
    assert stages[0] == "hashing" and stages[-1] == "complete"


def test_lookup_human_table(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    path, data = model_file(tmp_path, "model.safetensors", folder="phi-2")
    fake_hub.add_repo("microsoft/phi-2", {"model.safetensors": data}, license="mit")
    run = run_cli("lookup", path, env=fake_hub_env)
    assert run.code == 0, run.stderr
    for text in ("microsoft/phi-2", "filename_exact", "High confidence", "pending verification"):
        assert text in run.stdout


def test_lookup_offline_still_says_what_the_file_is(tmp_path: Path) -> None:
    path, _ = model_file(tmp_path, "Qwen2-7B-Instruct.safetensors")
    run = run_cli("lookup", path, "--json")  # run_cli sets HF_HUB_OFFLINE=1
    assert run.code == 0, run.stderr
    report = run.json["results"][0]
    assert report["hub_error"] == "offline" and report["file"]["format"] == "safetensors"
    run = run_cli("lookup", path, "--offline")
    assert "offline" in run.stdout


def test_lookup_hub_down_is_one_line_not_a_failure(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    fake_hub.fail(500)
    path, _ = model_file(tmp_path, "Qwen2-7B-Instruct.safetensors")
    run = run_cli("lookup", path, "--json", env=fake_hub_env, timeout=20)
    assert run.code == 0
    [report] = run.json["results"]
    assert "500" in report["hub_error"]
    assert report["trust"] is None  # not "no_match": the Hub never answered


def test_lookup_bad_path_is_one_sentence(tmp_path: Path) -> None:
    # A file that cannot be looked up is that file's failure (exit 1), not bad usage.
    run = run_cli("lookup", tmp_path / "missing.safetensors")
    assert run.code == 1
    assert run.stdout.strip().endswith("does not exist.") and "Traceback" not in run.stderr
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    run = run_cli("lookup", junk)
    assert run.code == 1 and "Traceback" not in run.stderr and run.stdout.count("\n") == 1


def test_lookup_verify_prints_the_sha256_it_computed(tmp_path: Path) -> None:
    path, data = model_file(tmp_path, "Qwen2-7B-Instruct.safetensors")
    run = run_cli("lookup", path, "--verify", "--offline")
    assert run.code == 0, run.stderr
    assert f"SHA256: {hashlib.sha256(data).hexdigest()}" in run.stdout
    assert "SHA256:" not in run_cli("lookup", path, "--offline").stdout  # not computed: not shown


def test_lookup_of_a_config_or_text_file_says_what_it_is(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    notes = tmp_path / "notes.txt"
    notes.write_text("trigger words: foo, bar\n")
    run = run_cli("lookup", config, notes, "--json")
    assert run.code == 1
    errors = [r["error"] for r in run.json["results"]]
    assert errors == ["config.json is a model config file (JSON), not a model file.",
                      "notes.txt is a text file, not a model file."]
    run = run_cli("lookup", config)
    assert "not a valid safetensors" not in run.stdout + run.stderr
    assert "config.json is a model config file (JSON), not a model file." in run.stdout


def test_lookup_in_a_pipe_prints_one_line_per_candidate(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    # The issue: "tables only on a terminal, one line per item in a pipe".
    name = "Qwen2-7B-Instruct.safetensors"
    path, data = model_file(tmp_path, name)
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {name: data}, downloads=50)
    fake_hub.add_repo("an-uploader-with-a-long-name/Qwen2-7B-Instruct", {name: data + b"x"})
    run = run_cli("lookup", path, env=fake_hub_env)  # stdout is a pipe
    assert run.code == 0, run.stderr
    assert not set("│┃━─┏┗┡└") & set(run.stdout), run.stdout
    lines = run.stdout.splitlines()
    assert lines[0] == f"{path}  {len(data)} B"
    header = lines.index(next(line for line in lines if line.split()[:2] == ["repo", "matched"]))
    assert lines[header].startswith("  repo ")
    assert lines[header + 1].split() == [
        "Qwen/Qwen2-7B-Instruct", name, f"{len(data)}", "B", "filename_exact", "0.95", "High",
        "confidence",
    ], run.stdout
    assert lines[header + 2].split() == [
        "an-uploader-with-a-long-name/Qwen2-7B-Instruct", name, f"{len(data) + 1}", "B",
        "hash_mismatch", "0.70", "Modified",
    ], run.stdout
    assert lines[header + 3].startswith("  Match: Qwen/Qwen2-7B-Instruct: High confidence")


def test_lookup_on_a_terminal_shows_the_candidates_as_a_table(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    from test_review import _run_on_terminal

    path, data = model_file(tmp_path, "Qwen2-7B-Instruct.safetensors")
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: data}, downloads=50)
    code, text = _run_on_terminal(["lookup", str(path)], {}, env=fake_hub_env)
    assert code == 0, text
    header = next(line for line in text.splitlines() if "Matched file" in line)
    assert "Repo" in header and "┃" in header, text
    assert "━" in text and "High confidence" in text
