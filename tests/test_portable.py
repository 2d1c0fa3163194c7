"""The portable core: locks through filelock (free once their process is dead), every
system-specific fast path behind a check with the plain path as its fallback, and the usual
app folders of each system that `apps add` offers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli import run_cli

from modelimport import fastpaths, hashing
from modelimport.apps.locations import default_folders
from modelimport.locks import try_lock, unlock_and_close


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def test_a_held_lock_is_busy_and_free_once_released(tmp_path: Path):
    path = tmp_path / "x.lock"
    first, second = _open(path), _open(path)
    try:
        assert try_lock(first, path, blocking=False)
        assert not try_lock(second, path, blocking=False)
        unlock_and_close(first)
        assert try_lock(second, path, blocking=False)
    finally:
        unlock_and_close(second)


def test_the_lock_of_a_killed_process_is_free(tmp_path: Path):
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time\n"
         "from modelimport.locks import try_lock\n"
         f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
         "try_lock(fd, 'x')\nprint('held', flush=True)\ntime.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        fd = _open(path)
        assert not try_lock(fd, path, blocking=False)
        holder.kill()
        holder.wait(timeout=30)
        assert try_lock(fd, path, blocking=False)
        unlock_and_close(fd)
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.fixture
def no_fcntl(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as on Windows, for the fast paths: `import fcntl` fails, no O_DIRECT."""
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.delattr(os, "O_DIRECT", raising=False)


def test_without_fcntl_no_fast_path_is_taken_and_the_copy_is_exact(
    tmp_path: Path, no_fcntl: None
):
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "src").write_bytes(data)
    assert fastpaths.set_uncached(os.open(tmp_path / "src", os.O_RDONLY), True) is False
    assert fastpaths.clone_new_file(tmp_path / "src", tmp_path / "clone") is False
    assert not (tmp_path / "clone").exists()
    assert fastpaths.can_clone(tmp_path) is False
    digests = hashing.copy_and_hash(tmp_path / "src", tmp_path / "dst")
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "dst").read_bytes() == data


def test_a_refused_clone_leaves_nothing_behind(tmp_path: Path):
    """tmpfs/ext4/overlay refuse FICLONE: False, and no empty destination left over."""
    if fastpaths.can_clone(tmp_path):
        pytest.skip("this temporary folder can clone")
    (tmp_path / "src").write_bytes(b"abc")
    assert fastpaths.clone_new_file(tmp_path / "src", tmp_path / "dst") is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_clone_where_the_filesystem_can(reflink_dir: Path):
    folder = reflink_dir / "portable"
    folder.mkdir(exist_ok=True)
    (folder / "src").write_bytes(b"x" * 100_000)
    assert fastpaths.can_clone(folder)
    (folder / "dst").unlink(missing_ok=True)
    assert fastpaths.clone_new_file(folder / "src", folder / "dst")
    assert (folder / "dst").read_bytes() == b"x" * 100_000
    assert not [p for p in folder.iterdir() if p.name.startswith(".clone-probe-")]


def test_folders_are_fsynced_where_the_system_can_and_skipped_where_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from modelimport.library.layout import fsync_dir, write_json_atomic

    fsync_dir(tmp_path)
    monkeypatch.delattr(os, "O_DIRECTORY")  # Windows cannot open a folder as a file
    monkeypatch.delattr(os, "fchmod")  # nor, before Python 3.13, change a mode by descriptor
    fsync_dir(tmp_path)
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}


@pytest.mark.parametrize(
    ("system", "desktop_settings", "matrix_home", "matrix_settings"),
    [
        ("win32", "AppData/Roaming/ComfyUI", "AppData/Roaming/StabilityMatrix",
         "AppData/Roaming/StabilityMatrix"),
        ("darwin", "Library/Application Support/ComfyUI", ".config/StabilityMatrix",
         ".config/StabilityMatrix"),
        # Its first start proposes ~/StabilityMatrix on Linux; library.json stays in ~/.config.
        ("linux", ".config/ComfyUI", "StabilityMatrix", ".config/StabilityMatrix"),
    ],
)
def test_usual_app_folders_per_system(
    tmp_path: Path, system: str, desktop_settings: str, matrix_home: str, matrix_settings: str
):
    home = tmp_path
    assert default_folders("lmstudio", system, home, {}) == [
        ("LM Studio", home / ".lmstudio" / "models")
    ]
    assert default_folders("comfyui", system, home, {}) == [
        ("ComfyUI Desktop", home / "Documents" / "ComfyUI"),
        ("Stability Matrix", home / matrix_home / "Packages" / "ComfyUI"),
    ]
    # What each app recorded wins: ComfyUI Desktop's basePath, Stability Matrix's library.
    chosen, library = tmp_path / "D" / "Comfy", tmp_path / "E" / "SM"
    (home / desktop_settings).mkdir(parents=True)
    (home / desktop_settings / "config.json").write_text(json.dumps({"basePath": str(chosen)}))
    assert default_folders("stabilitymatrix", system, home, {}) == [
        ("Stability Matrix", home / matrix_home)
    ]
    (home / matrix_settings).mkdir(parents=True, exist_ok=True)
    (home / matrix_settings / "library.json").write_text(
        json.dumps({"LibraryPath": str(library)})
    )
    found = default_folders("comfyui", system, home, {})
    assert found[0] == ("ComfyUI Desktop", chosen)
    assert found[-1] == ("Stability Matrix", library / "Packages" / "ComfyUI")
    assert default_folders("stabilitymatrix", system, home, {}) == [("Stability Matrix", library)]


def test_what_another_app_wrote_is_used_only_if_it_is_an_absolute_path(tmp_path: Path):
    settings = tmp_path / ".config" / "ComfyUI"
    settings.mkdir(parents=True)
    for bad in ("relative/path", 42, ["x"], "/ok\x00bad"):
        (settings / "config.json").write_text(json.dumps({"basePath": bad}))
        assert default_folders("comfyui", "linux", tmp_path, {})[0][1] == (
            tmp_path / "Documents" / "ComfyUI"
        )
    (settings / "config.json").write_text("{not json")
    assert default_folders("comfyui", "linux", tmp_path, {})[0][1].name == "ComfyUI"
    assert default_folders("a1111", "linux", tmp_path, {}) == []


def test_apps_add_with_only_a_kind_uses_the_usual_folder(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "USERPROFILE": str(home)}
    missing = run_cli("apps", "add", "lms", "--kind", "lmstudio", env=env)
    assert missing.code == 2
    assert missing.stderr.strip() == (
        f"Error: Give the app's FOLDER: for --kind lmstudio none of its usual folders exists "
        f"({home / '.lmstudio' / 'models'})."
    )
    (home / ".lmstudio" / "models").mkdir(parents=True)
    added = run_cli("apps", "add", "lms", "--kind", "lmstudio", "--json", env=env)
    assert added.code == 0, added.stderr
    assert added.json["app"]["path"] == str(home / ".lmstudio" / "models")
    listed = run_cli("apps", "list", env=env)
    assert f"lms: lmstudio at {home / '.lmstudio' / 'models'}" in listed.stdout


def test_a_path_past_windows_limit_is_named_as_the_cause(monkeypatch: pytest.MonkeyPatch):
    """Without long paths turned on, Windows answers "not found" for a path over 260
    characters; the import says what it is and how to lift it, not "a file disappeared"."""
    import errno

    from modelimport.importer.pipeline import _describe_error

    long_path = "C:\\Users\\me\\lib\\" + "a" * 250 + ".safetensors"
    exc = FileNotFoundError(errno.ENOENT, "The system cannot find the path specified", long_path)
    assert "disappeared" in _describe_error(exc, "x.safetensors")
    monkeypatch.setattr(sys, "platform", "win32")
    message = _describe_error(exc, "x.safetensors")
    assert message.startswith("The path of x.safetensors in the library is longer than the 260")
    assert "LongPathsEnabled" in message
    short = FileNotFoundError(errno.ENOENT, "gone", "C:\\lib\\x.safetensors")
    assert "disappeared" in _describe_error(short, "x.safetensors")
