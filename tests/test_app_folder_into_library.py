"""An app's type folder that is a link into the library (ComfyUI/models/loras -> the
library): sync used to make its links there, inside the library, where `check` then found
files no model lists. modelimport never makes a link inside its library."""

from __future__ import annotations

from pathlib import Path

import app_models as models
from cli import run_cli


def mi(lib: Path, *args: str | Path, **kw):
    return run_cli("--library", lib, *args, **kw)


def test_no_link_is_made_through_an_app_folder_that_leads_into_the_library(tmp_path: Path):
    lib, comfy = tmp_path / "lib", tmp_path / "ComfyUI"
    lora = models.sdxl_lora(tmp_path / "dl" / "add-detail-xl.safetensors")
    assert mi(lib, "import", lora, "--yes", "--offline").code == 0
    (comfy / "models").mkdir(parents=True)
    (comfy / "models" / "loras").symlink_to(lib)
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0

    sync = mi(lib, "sync")

    assert sync.code != 0 and "leads into the library" in sync.stdout + sync.stderr
    assert "Traceback" not in sync.stderr
    assert [p.name for p in lib.iterdir() if p.is_symlink()] == []
    check = mi(lib, "check")
    assert "no model lists" not in check.stdout + check.stderr
