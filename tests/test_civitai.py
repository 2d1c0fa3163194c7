"""CivitAI by hash, end to end: the real CLI against the fake CivitAI (tests/fakecivitai.py)
and the fake Hub, and the session itself against hostile answers.

A hit is Verified with its trigger words; a miss costs one call and changes nothing else;
CivitAI down leaves the model pending until `retry-pending`; a batch costs one request.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors
from fakecivitai import FakeCivitai
from fakehub import FakeHub

from modelimport.identify.civitai import CivitaiSession
from modelimport.identify.hub import LocalFile, LookupRequest

LORA_TENSORS = {
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [8, 320]),
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [320, 8]),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("F16", [8, 768]),
}


def _lora(folder: Path, name: str, fill: bytes = b"\x01") -> tuple[Path, bytes]:
    path = make_safetensors(folder / name, LORA_TENSORS, fill=fill)
    return path, path.read_bytes()


def _import(lib: Path, *paths: Path, env: dict[str, str], extra: tuple[str, ...] = ()) -> list:
    run = run_cli("--library", lib, "import", *paths, "--yes", "--json", *extra, env=env)
    assert run.code == 0, run.stderr
    return run.json["results"]


def _meta(lib: Path, result: dict) -> dict:
    return json.loads((lib / result["model_id"] / "metadata.json").read_text())


def test_a_civitai_hit_is_verified_with_trigger_words(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    path, data = _lora(tmp_path / "dl", "add_detail.safetensors")
    # CivitAI calls it a Checkpoint: the tensors prove a LoRA, and the file's structure wins.
    fake_civitai.add_version(
        data,
        model_name="Detail Tweaker LoRA",
        version_name="v1.0",
        model_type="Checkpoint",
        base_model="SD 1.5",
        trained_words=["detailed", "intricate\x1b[2J"],
        file_name="add_detail.safetensors",
    )
    lib = tmp_path / "lib"
    [result] = _import(lib, path, env=fake_civitai_env)
    assert result["trust_level"] == "verified"
    assert result["identity_source"] == "civitai"
    assert result["pending_online_lookup"] is False
    meta = _meta(lib, result)
    assert (meta["trust_level"], meta["match_method"], meta["match_confidence"]) == (
        "verified",
        "hash",
        1.0,
    )
    assert meta["identity_source"] == "civitai" and meta["repo_id"] is None
    assert meta["trigger_words"] == ["detailed", "intricate[2J"]  # no escape sequence
    assert meta["base_model"] == "SD 1.5"
    assert meta["official_name"] == "Detail Tweaker LoRA v1.0"
    civitai = meta["civitai"]
    assert civitai["model_name"] == "Detail Tweaker LoRA"
    assert civitai["version_name"] == "v1.0"
    assert civitai["model_type"] == "Checkpoint"
    assert civitai["trained_words"] == ["detailed", "intricate[2J"]
    version = fake_civitai.versions[0]
    assert civitai["page_url"] == (
        f"{fake_civitai.url}/models/{version['modelId']}?modelVersionId={version['id']}"
    )
    assert civitai["download_url"] == version["downloadUrl"] == meta["download_url"]
    assert meta["model_type"] == "lora" and meta["field_sources"]["model_type"] == "file"
    assert meta["model_id"].startswith("lora/")
    assert fake_civitai.counts == {"by_hash": 1}  # one model, one call


def test_a_miss_costs_one_call_and_keeps_the_hub_verdict(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    path, data = _lora(tmp_path / "dl", "my-own-lora.safetensors")
    fake_hub.add_repo("someone/my-own-lora", {path.name: data}, downloads=3)
    lib = tmp_path / "lib"
    [result] = _import(lib, path, env=fake_civitai_env)
    meta = _meta(lib, result)
    assert meta["trust_level"] == "verified" and meta["repo_id"] == "someone/my-own-lora"
    assert fake_civitai.total == 0  # the Hub verified it: nothing left for CivitAI to prove

    other, _ = _lora(tmp_path / "dl", "unknown-lora.safetensors", fill=b"\x07")
    [result] = _import(lib, other, env=fake_civitai_env)
    meta = _meta(lib, result)
    assert meta["trust_level"] == "no_match" and meta["identity_source"] is None
    assert meta["pending_online_lookup"] is False and meta["pending_sources"] == []
    assert meta["civitai"]["found"] is False
    assert fake_civitai.counts == {"by_hash": 1}

    # The miss is cached: the same bytes again (another copy) cost no call.
    again = tmp_path / "dl2" / "unknown-lora.safetensors"
    again.parent.mkdir()
    again.write_bytes(other.read_bytes())
    _import(tmp_path / "lib2", again, env=fake_civitai_env)
    assert fake_civitai.counts == {"by_hash": 1}


def test_civitai_down_leaves_it_pending_then_retry_pending_fills_it(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    path, data = _lora(tmp_path / "dl", "epi_noiseoffset.safetensors")
    fake_civitai.add_version(
        data, model_name="epi_noiseoffset", model_type="LORA", trained_words=["dark studio"]
    )
    fake_civitai.fail(503)
    lib = tmp_path / "lib"
    [result] = _import(lib, path, env=fake_civitai_env)  # never a failed import
    assert result["status"] == "imported" and result["pending_online_lookup"] is True
    meta = _meta(lib, result)
    assert meta["pending_sources"] == ["civitai"]
    assert "503" in meta["civitai_error"]
    assert meta["trust_level"] == "no_match"  # what the Hub said stays recorded
    assert fake_civitai.total == 2  # one retry, then the breaker
    # In a pipe the run says the model waits for a lookup; nothing is marked as failed.
    again = run_cli("--library", tmp_path / "lib2", "import", path, "--yes",
                    env=fake_civitai_env)  # fmt: skip
    assert again.code == 0 and "✗" not in again.stderr, again.stderr
    assert "… lora/sd15/epi-noiseoffset: lookup still pending" in again.stderr, again.stderr
    hub_calls = fake_hub.total

    # Still down: the table says the model still waits, not what the Hub alone said.
    still = run_cli("--library", lib, "retry-pending", env=fake_civitai_env)
    [row] = [line for line in still.stdout.splitlines() if "epi-noiseoffset" in line]
    assert row.rstrip().endswith("Lookup pending  -") and "No match" not in row, still.stdout
    fake_civitai.heal()
    run = run_cli("--library", lib, "retry-pending", "--json", env=fake_civitai_env)
    assert run.code == 0, run.stderr
    [retried] = run.json["results"]
    assert retried["status"] == "enriched" and retried["identity_source"] == "civitai"
    meta = _meta(lib, result)
    assert meta["trust_level"] == "verified" and meta["pending_online_lookup"] is False
    assert meta["trigger_words"] == ["dark studio"] and "civitai_error" not in meta
    assert fake_hub.total == hub_calls  # the Hub had answered: not asked again
    status = run_cli("--library", lib, "status", "--json", env=fake_civitai_env)
    assert status.json["pending_lookups"] == 0


def test_a_batch_is_one_request(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    paths = []
    for n, fill in enumerate((b"\x02", b"\x03", b"\x04")):
        path, data = _lora(tmp_path / "dl", f"lora-{n}.safetensors", fill=fill)
        paths.append(path)
        if n != 1:
            fake_civitai.add_version(data, model_name=f"LoRA {n}", model_type="LORA")
    lib = tmp_path / "lib"
    results = _import(lib, *paths, env=fake_civitai_env)
    trust = {Path(r["sources"][0]).name: r["trust_level"] for r in results}
    assert trust == {
        "lora-0.safetensors": "verified",
        "lora-1.safetensors": "no_match",
        "lora-2.safetensors": "verified",
    }
    assert fake_civitai.counts == {"by_hash_batch": 1} and fake_civitai.batch_sizes == [3]


def test_no_civitai_flag_and_config_switch_make_no_call(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    path, data = _lora(tmp_path / "dl", "style.safetensors")
    fake_civitai.add_version(data, model_type="LORA")
    [result] = _import(tmp_path / "lib", path, env=fake_civitai_env, extra=("--no-civitai",))
    assert result["trust_level"] == "no_match" and result["pending_online_lookup"] is False

    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text("[sources]\ncivitai = false\n")
    env = {**fake_civitai_env, "MODELIMPORT_CONFIG_DIR": str(config)}
    del env["MODELIMPORT_CIVITAI"]
    [result] = _import(tmp_path / "lib2", path, env=env)
    assert result["trust_level"] == "no_match"
    assert fake_civitai.total == 0


def test_offline_asks_nobody_and_stays_pending(
    tmp_path: Path, fake_civitai: FakeCivitai, fake_civitai_env: dict[str, str]
):
    path, data = _lora(tmp_path / "dl", "offline.safetensors")
    fake_civitai.add_version(data, model_type="LORA")
    [result] = _import(tmp_path / "lib", path, env=fake_civitai_env, extra=("--offline",))
    assert result["pending_online_lookup"] is True
    assert fake_civitai.total == 0


# -- the session against what a server may send ----------------------------------------


def _request(sha: str, name: str = "x.safetensors") -> LookupRequest:
    return LookupRequest.for_files((LocalFile(name, 10, None, sha),), None)


def test_a_version_that_does_not_list_the_hash_is_no_match(
    tmp_path: Path, fake_civitai: FakeCivitai
):
    asked = "ab" * 32
    fake_civitai.add_version("cd" * 32, model_type="LORA")
    version = dict(fake_civitai.versions[0])
    fake_civitai.answer_raw(version)  # answers every hash with a version of other bytes
    session = CivitaiSession(cache_dir=tmp_path / "c")
    [result] = session.identify_many([_request(asked)])
    assert str(result.trust) == "no_match" and result.hub_error is None


def test_broken_answers_leave_it_pending_and_trip_the_breaker(
    tmp_path: Path, fake_civitai: FakeCivitai
):
    fake_civitai.answer_raw(b"<html>busy</html>")
    session = CivitaiSession(cache_dir=tmp_path / "c")
    first = session.identify(_request("ab" * 32))
    assert first.hub_error and "not JSON" in first.hub_error
    second = session.identify(_request("cd" * 32))
    assert second.hub_error and fake_civitai.total == 1  # not asked again


def test_hostile_fields_are_dropped_or_made_plain(tmp_path: Path, fake_civitai: FakeCivitai):
    sha = "ef" * 32
    fake_civitai.add_version(
        sha,
        model_name="Name\x07\nwith\tbreaks",
        trained_words=["ok", 7, None, {"x": 1}, "x" * 5000],
        downloadUrl="javascript:alert(1)",
        baseModel=["not", "a", "string"],
    )
    [result] = CivitaiSession(cache_dir=tmp_path / "c").identify_many([_request(sha)])
    assert str(result.trust) == "verified"
    meta = result.metadata
    assert meta["civitai"]["model_name"] == "Name with breaks"
    assert meta["trigger_words"] == ["ok", "x" * 200]
    assert meta["download_url"] is None and meta["base_model"] is None


def test_token_is_sent_as_bearer_and_large_batches_are_split(
    tmp_path: Path, fake_civitai: FakeCivitai, monkeypatch
):
    monkeypatch.setenv("CIVITAI_API_TOKEN", "tok-123")
    requests = [_request(f"{n:064x}") for n in range(150)]
    fake_civitai.add_version(f"{7:064x}", model_type="LORA")
    results = CivitaiSession(cache_dir=tmp_path / "c").identify_many(requests)
    assert [str(r.trust) for r in results].count("verified") == 1
    assert str(results[7].trust) == "verified"
    assert fake_civitai.batch_sizes == [100, 50]
    assert set(fake_civitai.authorizations) == {"Bearer tok-123"}


def test_json_of_the_wrong_shape_leaves_it_pending(tmp_path: Path, fake_civitai: FakeCivitai):
    fake_civitai.answer_raw([{"id": 1}])  # an array where one version object belongs
    [result] = CivitaiSession(cache_dir=tmp_path / "c").identify_many([_request("ab" * 32)])
    assert result.hub_error and "not an object" in result.hub_error
    fake_civitai.answer_raw({"items": []})  # an object where the batch's array belongs
    session = CivitaiSession(cache_dir=tmp_path / "d")
    results = session.identify_many([_request("ab" * 32), _request("cd" * 32)])
    assert all(r.hub_error and "batch answer" in r.hub_error for r in results)


def test_asking_civitai_after_the_copies_does_not_count_the_models_twice(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    """The plain progress lines count each model of the batch once ([n/2]), although the
    CivitAI step after the copies reports on the same models again; the batch's bytes are
    every byte copied, sidecars included."""
    paths = [_lora(tmp_path / "dl", f"lora-{n}.safetensors", fill=bytes([n + 5]))[0]
             for n in range(2)]
    (tmp_path / "dl" / "lora-0.civitai.info").write_text("{}")
    run = run_cli("--library", tmp_path / "lib", "import", *paths, "--yes", env=fake_civitai_env)
    assert run.code == 0, run.stderr
    counters = [line.split("]")[0] + "]" for line in run.stderr.splitlines()
                if line.startswith("[")]
    assert counters == ["[1/2]", "[2/2]"]
    assert fake_civitai.counts == {"by_hash_batch": 1}
    events = run_cli("--library", tmp_path / "lib2", "import", tmp_path / "dl", "--yes",
                     "--json", env=fake_civitai_env)  # fmt: skip
    lines = [json.loads(line) for line in events.stderr.splitlines() if line.startswith("{")]
    [batch] = [e for e in lines if e["stage"] == "batch"]
    copied = sum(p.stat().st_size for p in (tmp_path / "dl").iterdir())
    assert batch["bytes_total"] == copied


def test_a_sharded_set_is_not_asked_nor_recorded_as_a_civitai_miss(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
):
    """CivitAI answers one file's hash: a set is never sent, so its record says nothing of
    CivitAI (no `found: false` for a question never asked) and it is not left pending."""
    from factories import make_sharded_safetensors

    make_sharded_safetensors(tmp_path / "dl", total=2, stem="big")
    [result] = _import(tmp_path / "lib", tmp_path / "dl", env=fake_civitai_env)
    record = _meta(tmp_path / "lib", result)
    assert "civitai" not in record and "civitai" not in (record.get("pending_sources") or [])
    assert record["pending_online_lookup"] is False
    assert fake_civitai.total == 0
    run = run_cli("--library", tmp_path / "lib", "retry-pending", "--json", env=fake_civitai_env)
    assert run.code == 0 and fake_civitai.total == 0, run.stderr
