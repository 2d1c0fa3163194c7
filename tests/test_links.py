"""Making one link where symlinks are refused, as Windows refuses them without Developer
Mode (WinError 1314) and exFAT always: the fallbacks and the sentences, on real files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

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
