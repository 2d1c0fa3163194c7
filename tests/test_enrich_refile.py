"""A late answer files the model where the import would have: CivitAI answers after the commit
(the enrich step of an import, `retry-pending`) with a base model for a LoRA whose family its
shapes could not decide, and the model moves from lora/unknown/ to lora/sdxl/, its index rows
and app links with it; never for a type or family the tensors proved, never for a manual
record, and a kill at any point leaves the model whole at its old or its new id.

Real files (a diffusers/PEFT LoRA: no key tells SD 1.x from SDXL), the real CLI, the fake
CivitAI and fake Hub on 127.0.0.1, a ComfyUI folder registered with `apps add`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from app_models import assert_relative_link_to
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from cli import start_cli
from factories import make_safetensors
from fakecivitai import FakeCivitai
from fakehub import FakeHub

# A PEFT LoRA for a UNet: the family is not in its keys, nor in shapes SD 1.x and SDXL share.
OPEN_FAMILY_LORA = {
    "unet.down_blocks.1.attentions.0.proj_in.lora_A.weight": ("F16", [8, 640]),
    "unet.down_blocks.1.attentions.0.proj_in.lora_B.weight": ("F16", [640, 8]),
}
# A kohya LoRA whose text-encoder width (768) proves SD 1.x.
SD15_LORA = {
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [8, 320]),
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [320, 8]),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": ("F16", [8, 768]),
}
OLD_ID = "lora/unknown/pixel-style"
NEW_ID = "lora/sdxl/pixel-style"


def mi(lib: Path, *args: str | Path, env: dict[str, str] | None = None, codes=(0,)):
    run = run_cli("--library", lib, *args, env=env)
    assert run.code in codes, (args, run.code, run.stdout, run.stderr)
    return run


def pixel_style(tmp_path: Path, civitai: FakeCivitai, base_model: str = "SDXL 1.0") -> Path:
    path = make_safetensors(tmp_path / "dl" / "pixel_style.safetensors", OPEN_FAMILY_LORA)
    civitai.add_version(
        path.read_bytes(),
        model_name="Pixel Style",
        model_type="LORA",
        base_model=base_model,
        trained_words=["pixel art"],
        file_name=path.name,
    )
    return path


def comfy_app(tmp_path: Path, lib: Path) -> Path:
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui", "--subfolders", "family")
    return comfy


def meta(lib: Path, model_id: str) -> dict:
    return json.loads((lib / model_id / "metadata.json").read_text())


def indexed_ids(lib: Path) -> list[str]:
    with sqlite3.connect(lib / ".modelimport" / "index.sqlite") as db:
        return [r[0] for r in db.execute("SELECT model_id FROM models ORDER BY model_id")]


def link_rows(lib: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(lib / ".modelimport" / "index.sqlite") as db:
        return db.execute("SELECT link_path, model_id FROM links ORDER BY link_path").fetchall()


def assert_whole_at(lib: Path, model_id: str, source: Path) -> None:
    """The model is at `model_id` with its file byte for byte, and nowhere else."""
    assert (lib / model_id / source.name).read_bytes() == source.read_bytes()
    records = [p.parent.relative_to(lib).as_posix() for p in lib.rglob("metadata.json")]
    assert records == [model_id]


def test_an_import_files_the_lora_where_civitais_base_model_says(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    lib = tmp_path / "lib"
    comfy = comfy_app(tmp_path, lib)
    source = pixel_style(tmp_path, fake_civitai)
    run = mi(lib, "import", source, "--yes", "--json", env=fake_civitai_env)
    [result] = run.json["results"]
    # Committed under lora/unknown/, then CivitAI said SDXL: the import ends at lora/sdxl/.
    assert result["model_id"] == NEW_ID
    assert (result["model_type"], result["family"]) == ("lora", "sdxl")
    assert result["trust_level"] == "verified" and result["identity_source"] == "civitai"
    assert_whole_at(lib, NEW_ID, source)
    assert not (lib / "lora" / "unknown").exists()  # the emptied family folder goes
    record = meta(lib, NEW_ID)
    assert record["model_id"] == NEW_ID
    assert record["field_sources"]["family"] == "civitai"
    assert record["field_sources"]["model_type"] == "file"
    assert indexed_ids(lib) == [NEW_ID]
    # The batch is linked once, at the id it ends at.
    assert [c["action"] for c in result["links"]] == ["created"]
    assert_relative_link_to(
        comfy / "models/loras/sdxl/pixel_style.safetensors", lib / NEW_ID / source.name
    )
    assert link_rows(lib) == [(str(comfy / "models/loras/sdxl/pixel_style.safetensors"), NEW_ID)]
    check = mi(lib, "check", "--json")
    assert check.json["problems"] == []


def test_retry_pending_moves_the_model_and_its_app_link(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    lib = tmp_path / "lib"
    comfy = comfy_app(tmp_path, lib)
    source = pixel_style(tmp_path, fake_civitai)
    fake_civitai.fail(503)
    [result] = mi(lib, "import", source, "--yes", "--json", env=fake_civitai_env).json["results"]
    assert result["model_id"] == OLD_ID and result["pending_online_lookup"] is True
    old_link = comfy / "models/loras/pixel_style.safetensors"  # no family: no family folder
    assert_relative_link_to(old_link, lib / OLD_ID / source.name)

    fake_civitai.heal()
    run = mi(lib, "retry-pending", "--json", env=fake_civitai_env)
    [retried] = run.json["results"]
    assert (retried["model_id"], retried["status"], retried["trust_level"]) == (
        NEW_ID, "enriched", "verified",
    )
    assert_whole_at(lib, NEW_ID, source)
    assert indexed_ids(lib) == [NEW_ID]
    assert meta(lib, NEW_ID)["trigger_words"] == ["pixel art"]
    # The link followed the model: the old one is gone, the new one resolves into the library.
    new_link = comfy / "models/loras/sdxl/pixel_style.safetensors"
    assert not old_link.exists() and not old_link.is_symlink()
    assert_relative_link_to(new_link, lib / NEW_ID / source.name)
    assert link_rows(lib) == [(str(new_link), NEW_ID)]
    assert mi(lib, "check", "--json").json["problems"] == []
    # Nothing owed any more: a second retry changes nothing.
    assert mi(lib, "retry-pending", "--json", env=fake_civitai_env).json["results"] == []


def test_a_family_the_tensors_proved_is_never_moved(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    lib = tmp_path / "lib"
    source = make_safetensors(tmp_path / "dl" / "detail.safetensors", SD15_LORA)
    # CivitAI files it as an SDXL checkpoint: the tensors prove an SD 1.x LoRA.
    fake_civitai.add_version(source.read_bytes(), model_type="Checkpoint", base_model="SDXL 1.0")
    [result] = mi(lib, "import", source, "--yes", "--json", env=fake_civitai_env).json["results"]
    assert result["model_id"] == "lora/sd15/detail" and result["trust_level"] == "verified"
    record = meta(lib, "lora/sd15/detail")
    assert (record["model_type"], record["family"]) == ("lora", "sd15")
    assert record["field_sources"]["family"] == record["field_sources"]["model_type"] == "file"
    assert record["base_model"] == "SDXL 1.0"  # what CivitAI says is still recorded
    assert indexed_ids(lib) == ["lora/sd15/detail"]


def test_a_manual_record_is_never_moved(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    lib = tmp_path / "lib"
    source = pixel_style(tmp_path, fake_civitai)
    mi(lib, "import", source, "--yes", "--offline", env=fake_civitai_env)
    mi(lib, "mark-manual", OLD_ID)
    before = (lib / OLD_ID / "metadata.json").read_bytes()
    run = mi(lib, "retry-pending", "--json", env=fake_civitai_env)
    assert [r["status"] for r in run.json["results"]] in ([], ["manual"])  # not looked up
    assert (lib / OLD_ID / "metadata.json").read_bytes() == before
    assert_whole_at(lib, OLD_ID, source)
    assert fake_civitai.total == 0


def test_a_taken_id_is_never_landed_on(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
) -> None:
    lib = tmp_path / "lib"
    other = make_safetensors(tmp_path / "mine" / "pixel_style.safetensors", OPEN_FAMILY_LORA,
                             fill=b"\x09")
    mi(lib, "import", other, "--yes", "--offline")
    mi(lib, "edit", OLD_ID, "--family", "sdxl")  # now at lora/sdxl/pixel-style, manual
    source = pixel_style(tmp_path, fake_civitai)
    [result] = mi(lib, "import", source, "--yes", "--json", env=fake_civitai_env).json["results"]
    assert result["model_id"] == NEW_ID + "-2"
    assert (lib / NEW_ID / "pixel_style.safetensors").read_bytes() == other.read_bytes()
    assert (lib / result["model_id"] / "pixel_style.safetensors").read_bytes() == (
        source.read_bytes()
    )
    assert indexed_ids(lib) == [NEW_ID, NEW_ID + "-2"]


def _kill_at(fault: str, marker: Path, env: dict[str, str], *args: str | Path) -> None:
    """Run the CLI until it reaches `fault` (it writes `marker` there), then SIGKILL it."""
    proc = start_cli(
        *args,
        env={**env, "MODELIMPORT_FAULTS": f"{fault}:hang", "MODELIMPORT_FAULT_MARKER": str(marker)},
    )
    deadline = time.monotonic() + 90
    try:
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"ended before {fault}: exit {proc.returncode}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{fault} never reached")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.communicate()


@pytest.mark.parametrize("fault", ["refile.after_rename", "refile.record_written"])
def test_a_kill_during_the_move_leaves_the_model_whole_and_the_next_run_completes_it(
    tmp_path: Path,
    fake_hub: FakeHub,
    fake_civitai: FakeCivitai,
    fake_civitai_env: dict[str, str],
    fault: str,
) -> None:
    lib = tmp_path / "lib"
    source = pixel_style(tmp_path, fake_civitai)
    mi(lib, "import", source, "--yes", "--offline", env=fake_civitai_env)
    _kill_at(fault, tmp_path / "marker", fake_civitai_env, "--library", lib, "retry-pending")
    assert_whole_at(lib, NEW_ID, source)
    # The index still names the old id, but the library's folders are the truth: the next
    # command that opens it indexes the model where it is (library/reconcile.py), and a
    # retry finishes what the kill cut short, in place. `rescan` changes nothing more.
    run = mi(lib, "retry-pending", "--json", env=fake_civitai_env, codes=(0, 1))
    assert all(r["model_id"] != OLD_ID for r in run.json["results"])
    mi(lib, "rescan")
    assert indexed_ids(lib) == [NEW_ID]
    mi(lib, "retry-pending", env=fake_civitai_env)
    assert_whole_at(lib, NEW_ID, source)
    record = meta(lib, NEW_ID)
    assert record["model_id"] == NEW_ID and record["pending_online_lookup"] is False
    assert record["trust_level"] == "verified" and record["field_sources"]["family"] == "civitai"
    assert mi(lib, "check", "--json").json["problems"] == []


def test_a_record_marked_manual_while_the_sources_answer_is_left_alone(
    tmp_path: Path, fake_civitai: FakeCivitai
) -> None:
    from modelimport.identify.civitai import CivitaiSession
    from modelimport.identify.enrich import retry_pending
    from modelimport.library.edits import set_manual
    from modelimport.library.maintenance import open_library

    lib = tmp_path / "lib"
    source = pixel_style(tmp_path, fake_civitai)
    mi(lib, "import", source, "--yes", "--offline")
    opened = open_library(lib)
    civitai = CivitaiSession(cache_dir=tmp_path / "cache")

    class MarkedMeanwhile:
        """CivitAI, while a person runs `mark-manual` on the model it is asked about."""

        name, needs_sha256 = civitai.name, civitai.needs_sha256

        def identify(self, request):
            return self.identify_many([request])[0]

        def identify_many(self, requests):
            set_manual(open_library(lib), [OLD_ID], True)
            return civitai.identify_many(requests)

    before = meta(lib, OLD_ID)
    [result] = retry_pending(opened, [MarkedMeanwhile()])
    assert result["status"] == "manual" and fake_civitai.total == 1
    assert_whole_at(lib, OLD_ID, source)
    after = meta(lib, OLD_ID)
    assert after["match_source"] == "manual"
    assert {k: v for k, v in after.items() if k not in ("match_source", "updated_at")} == {
        k: v for k, v in before.items() if k not in ("match_source", "updated_at")
    }
