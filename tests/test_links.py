"""Links on disk (apps/links.py): making one link where symlinks are refused, as Windows
refuses them without Developer Mode (WinError 1314) and exFAT always (the fallbacks and the
sentences, on real files); and a link made is a link that works, wherever its folder really
is."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from app_models import sdxl_lora
from cli import run_cli

from modelimport.apps import links


class PrivilegeNotHeld(OSError):
    """What os.symlink raises on Windows without the privilege: errno EINVAL, winerror 1314."""

    winerror = links.ERROR_PRIVILEGE_NOT_HELD


def refuse_symlinks(monkeypatch: pytest.MonkeyPatch) -> None:
    def symlink(*args: object, **kwargs: object) -> None:
        raise PrivilegeNotHeld(errno.EINVAL, "A required privilege is not held by the client")

    monkeypatch.setattr(os, "symlink", symlink)


def test_a_refused_symlink_becomes_a_hard_link_that_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "lib" / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"weights")
    link = tmp_path / "app" / "loras" / "model.safetensors"
    refuse_symlinks(monkeypatch)
    made = links.make_link(link, target, is_dir=False)
    assert made.kind == "hardlink" and "Developer Mode" in made.note
    assert os.path.samefile(link, target) and not link.is_symlink()
    assert links.link_state(link, target) == links.LinkState.OK
    assert links.link_kind(link) == "hardlink"


def test_a_folder_without_symlinks_says_no_links_possible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "lib" / "pipeline"
    target.mkdir(parents=True)
    refuse_symlinks(monkeypatch)
    with pytest.raises(links.NoLinksPossible) as caught:
        links.make_link(tmp_path / "app" / "diffusers" / "pipeline", target, is_dir=True)
    if os.name != "nt":  # Windows makes a junction instead
        assert "a folder cannot be hard-linked" in caught.value.reason
    assert str(caught.value).startswith("No links possible at ")


def test_a_file_whose_hard_link_is_refused_too_says_no_links_possible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "lib" / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"weights")
    refuse_symlinks(monkeypatch)

    def link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # exFAT's answer

    monkeypatch.setattr(os, "link", link)
    with pytest.raises(links.NoLinksPossible) as caught:
        links.make_link(tmp_path / "app" / "model.safetensors", target, is_dir=False)
    assert "so are hard links" in caught.value.reason
    assert "Developer Mode" in caught.value.reason


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
