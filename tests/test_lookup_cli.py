"""`modelimport lookup` end to end: a real subprocess against the fake Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors
from fakecivitai import FakeCivitai
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

# -- CivitAI by SHA256, as an import asks it -----------------------------------------------

LORA_TENSORS = {
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [8, 320]),
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [320, 8]),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("F16", [8, 768]),
}


def lora_file(tmp_path: Path, name: str, fill: bytes = b"\x01") -> tuple[Path, bytes]:
    path = make_safetensors(tmp_path / "dl" / name, LORA_TENSORS, fill=fill)
    return path, path.read_bytes()


def test_lookup_verify_asks_civitai_and_shows_its_answer(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    path, data = lora_file(tmp_path, "add_detail.safetensors")
    version = fake_civitai.add_version(
        data,
        model_name="Detail Tweaker LoRA",
        version_name="v1.0",
        model_type="LORA",
        base_model="SD 1.5",
        trained_words=["detailed", "intricate\x1b[2J"],
        file_name="add_detail.safetensors",
    )
    run = run_cli("lookup", path, "--verify", "--json", env=fake_civitai_env)
    assert run.code == 0, run.stderr
    [report] = run.json["results"]
    assert (report["status"], report["source"], report["trust"], report["match_method"]) == (
        "verified", "civitai", "verified", "hash",
    )
    assert report["repo_id"] is None and report["hub_error"] is None
    page = f"{fake_civitai.url}/models/{version['modelId']}?modelVersionId={version['id']}"
    assert report["civitai"] == {
        "status": "verified",
        "reason": None,
        "model_name": "Detail Tweaker LoRA",
        "version_name": "v1.0",
        "model_type": "LORA",
        "base_model": "SD 1.5",
        "trigger_words": ["detailed", "intricate[2J"],  # no escape sequence
        "page_url": page,
        "download_url": version["downloadUrl"],
    }
    assert report["file"]["model_type"] == "lora"  # what the tensors prove, as before
    assert run.json["civitai_calls"] == {"by_hash": 1} == dict(fake_civitai.counts)

    # A person reads the same; the answer is cached on disk: no second call.
    run = run_cli("lookup", path, "--verify", env=fake_civitai_env)
    assert run.code == 0, run.stderr
    for text in (
        "Detail Tweaker LoRA v1.0 on CivitAI: Verified, hash",
        "Type: LORA",
        "Base model: SD 1.5",
        "Trigger words: detailed, intricate[2J",
        f"Page: {page}",
    ):
        assert text in run.stdout, (text, run.stdout)
    assert "\x1b" not in run.stdout
    assert fake_civitai.total == 1


def test_lookup_asks_civitai_only_with_a_known_sha256(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    path, data = lora_file(tmp_path, "epi_noiseoffset.safetensors")
    fake_civitai.add_version(data, model_name="epi_noiseoffset", model_type="LORA")
    run = run_cli("lookup", path, "--json", env=fake_civitai_env)
    [report] = run.json["results"]
    assert report["civitai"]["status"] == "not asked"
    assert "--verify" in report["civitai"]["reason"]
    assert report["source"] == "hub" and report["trust"] == "no_match"
    assert fake_civitai.total == 0  # the file was not read whole: nothing to ask by
    assert "CivitAI: not asked (the SHA256 is not known yet: pass --verify)" in run_cli(
        "lookup", path, env=fake_civitai_env
    ).stdout

    run_cli("lookup", path, "--verify", env=fake_civitai_env)
    assert fake_civitai.total == 1
    # The SHA256 read by --verify is remembered for this very file unchanged: a plain lookup
    # asks CivitAI with it (from the disk cache here, so no call).
    [report] = run_cli("lookup", path, "--json", env=fake_civitai_env).json["results"]
    assert report["civitai"]["status"] == "verified" and report["trust"] == "verified"
    assert fake_civitai.total == 1


def test_lookup_a_civitai_miss_and_a_hub_verified_file(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    path, _ = lora_file(tmp_path, "my-own-lora.safetensors", fill=b"\x07")
    [report] = run_cli(
        "lookup", path, "--verify", "--json", env=fake_civitai_env
    ).json["results"]
    assert report["civitai"]["status"] == "no match" and report["civitai"]["reason"] is None
    assert report["trust"] == "no_match" and fake_civitai.counts == {"by_hash": 1}
    assert "CivitAI: no match" in run_cli("lookup", path, "--verify", env=fake_civitai_env).stdout

    # The Hub verified it: as in an import, CivitAI has nothing left to prove.
    hubbed, data = lora_file(tmp_path, "hub-lora.safetensors", fill=b"\x08")
    fake_hub.add_repo("someone/hub-lora", {hubbed.name: data})
    fake_civitai.add_version(data, model_type="LORA")
    [report] = run_cli(
        "lookup", hubbed, "--verify", "--json", env=fake_civitai_env
    ).json["results"]
    assert (report["source"], report["trust"], report["repo_id"]) == (
        "hub", "verified", "someone/hub-lora",
    )
    assert report["civitai"]["status"] == "not asked"
    assert fake_civitai.counts == {"by_hash": 1}


def test_lookup_honours_offline_and_the_civitai_switches(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    path, data = lora_file(tmp_path, "style.safetensors")
    fake_civitai.add_version(data, model_type="LORA")
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text("[sources]\ncivitai = false\n")
    by_config = {**fake_civitai_env, "MODELIMPORT_CONFIG_DIR": str(config)}
    del by_config["MODELIMPORT_CIVITAI"]
    for extra, env, reason in (
        (("--offline",), fake_civitai_env, "offline"),
        ((), {**fake_civitai_env, "HF_HUB_OFFLINE": "1"}, "offline"),
        (("--no-civitai",), fake_civitai_env, "switched off"),
        ((), {**fake_civitai_env, "MODELIMPORT_CIVITAI": "0"}, "switched off"),
        ((), by_config, "switched off"),
    ):
        run = run_cli("lookup", path, "--verify", "--json", *extra, env=env)
        assert run.code == 0, run.stderr
        [report] = run.json["results"]
        assert report["civitai"]["status"] == "not asked", extra
        assert report["civitai"]["reason"] == reason, extra
        assert run.json["civitai_calls"] == {}
    assert fake_civitai.total == 0
    # Switched off by the person: the human output says nothing about CivitAI at all.
    assert "CivitAI" not in run_cli("lookup", path, "--verify", "--no-civitai",
                                    env=fake_civitai_env).stdout


def test_lookup_with_civitai_down_is_one_line_and_the_breaker_holds(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    first, _ = lora_file(tmp_path, "one.safetensors", fill=b"\x02")
    second, _ = lora_file(tmp_path, "two.safetensors", fill=b"\x03")
    fake_civitai.fail(503)
    run = run_cli("lookup", first, second, "--verify", "--json", env=fake_civitai_env)
    assert run.code == 0, run.stderr  # CivitAI down is no failure of the lookup
    for report in run.json["results"]:
        assert report["civitai"]["status"] == "not looked up"
        assert "503" in report["civitai"]["reason"]
        assert report["trust"] == "no_match"  # what the Hub said stands
    assert fake_civitai.total == 2  # one retry, then the breaker: the second file costs none
    run = run_cli("lookup", first, "--verify", env=fake_civitai_env)
    assert "CivitAI: not looked up (CivitAI answered HTTP 503.)" in run.stdout
    assert "Traceback" not in run.stderr
