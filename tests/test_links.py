"""Links on disk (apps/links.py): a link made is a link that works, wherever its folder
really is."""

from __future__ import annotations

import os
from pathlib import Path

from app_models import sdxl_lora
from cli import run_cli


def test_a_link_in_a_type_folder_that_is_itself_a_link_resolves(tmp_path: Path):
    """ComfyUI's models/loras is often a link to a bigger disk: the relative link must be
    computed from where it really lands, and a second sync has nothing to do."""
    lib = tmp_path / "lib"
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    real_loras = tmp_path / "big-disk" / "loras"  # not as deep as models/loras
    real_loras.mkdir(parents=True)
    (comfy / "models" / "loras").symlink_to(real_loras, target_is_directory=True)
    assert run_cli("--library", lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    run = run_cli(
        "--library", lib, "import", sdxl_lora(tmp_path / "src" / "lora.safetensors"), "--yes",
        "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    result = run.json["results"][0]
    library_file = lib / result["model_id"] / "lora.safetensors"
    link = real_loras / "lora.safetensors"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert os.path.samefile(link, library_file)  # it used to dangle
    assert os.path.samefile(comfy / "models" / "loras" / "lora.safetensors", library_file)

    for _ in range(2):  # sync used to "repair" (and break) it on every run
        synced = run_cli("--library", lib, "sync", "--json")
        assert synced.code == 0, synced.stderr
        assert synced.json["changes"] == []
        assert synced.json["apps"]["comfy"]["ok"] == 1
    check = run_cli("--library", lib, "check", "--json")
    assert [p for p in check.json["problems"] if p["kind"] == "app_link"] == []
