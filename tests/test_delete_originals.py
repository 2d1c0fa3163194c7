"""`import --delete-originals`: sources go only when the library provably holds their bytes;
each refusal keeps every source and says why, per file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from cli import start_cli
from conftest import OtherUser
from factories import make_safetensors


def _model(path: Path, seed: int, size: int = 256 << 10) -> Path:
    make_safetensors(path, {f"w{seed}": ("U8", [size])}, fill=os.urandom(size))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _batch(folder: Path, count: int = 2) -> list[Path]:
    return [_model(folder / f"m{n}.safetensors", n) for n in range(count)]


def _originals(run) -> dict[str, dict]:
    return {Path(f["path"]).name: f for f in run.json["originals"]["files"]}


def test_successful_delete_frees_the_reported_bytes(small_fs: Path, tmp_path: Path):
    sources = [_model(small_fs / "dl" / f"m{n}.safetensors", n, size=4 << 20) for n in range(3)]
    digests = [_sha(p) for p in sources]
    allocated = sum(p.stat().st_blocks * 512 for p in sources)
    os.sync()
    free_before = shutil.disk_usage(small_fs).free
    lib = tmp_path / "lib"

    run = run_cli("--library", lib, "import", small_fs / "dl", "--yes", "--json",
                  "--delete-originals")  # fmt: skip

    assert run.code == 0, run.stderr
    originals = run.json["originals"]
    assert (originals["deleted"], originals["kept"]) == (3, 0)
    assert originals["freed_bytes"] == allocated
    assert not any(p.exists() for p in sources)
    os.sync()
    assert shutil.disk_usage(small_fs).free - free_before >= allocated
    copies = sorted(_sha(lib / r["model_id"] / r["files"][0]["name"]) for r in run.json["results"])
    assert copies == sorted(digests)
    assert run_cli("--library", lib, "check").code == 0
    human = run_cli("--library", lib, "import", _model(tmp_path / "x.safetensors", 9), "--yes",
                    "--delete-originals")  # fmt: skip
    assert "Originals: 1 deleted, 0 kept;" in human.stdout


def test_a_failed_item_keeps_every_original(tmp_path: Path):
    sources = _batch(tmp_path / "dl")
    (tmp_path / "dl" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes", "--json",
                  "--delete-originals")  # fmt: skip
    assert run.code == 1
    assert all(p.exists() for p in sources)
    kept = _originals(run)
    assert set(kept) == {"m0.safetensors", "m1.safetensors"}
    for f in kept.values():
        assert not f["deleted"]
        assert f["reason"] == "1 item(s) of this batch did not succeed, so no original is deleted"
    assert run.json["originals"]["freed_bytes"] == 0


def _flip_library_copy(lib: Path, sources: list[Path]) -> None:
    [copy] = [p for p in lib.rglob("m1.safetensors") if ".modelimport" not in p.parts]
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))


def _touch_source(lib: Path, sources: list[Path]) -> None:
    st = sources[1].stat()
    os.utime(sources[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_flip_library_copy, "the library copy m1.safetensors re-read from disk does not match "
                             "the hashes of the copy"),
        (_touch_source, "it changed since it was read (size or modification time)"),
    ],
    ids=["library-copy-differs", "source-changed"],
)  # fmt: skip
def test_a_failed_safety_check_keeps_every_original(
    tmp_path: Path, change: Callable[[Path, list[Path]], None], reason: str
):
    sources = _batch(tmp_path / "dl")
    digests = [_sha(p) for p in sources]
    lib, marker = tmp_path / "lib", tmp_path / "marker"
    env = {"MODELIMPORT_FAULTS": "originals.reread:pause", "MODELIMPORT_FAULT_MARKER": str(marker)}
    proc = start_cli("--library", lib, "import", tmp_path / "dl", "--yes", "--json",
                     "--delete-originals", env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    change(lib, sources)  # between the commit and the re-read
    marker.unlink()
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 1, err
    kept = {Path(f["path"]).name: f for f in json.loads(out)["originals"]["files"]}
    assert kept["m1.safetensors"]["reason"] == reason
    assert kept["m0.safetensors"]["reason"] == (
        "another original could not be deleted safely (see its reason)"
    )
    assert all(p.exists() for p in sources)
    assert _sha(sources[0]) == digests[0]


def test_a_symlinked_source_is_never_deleted(tmp_path: Path):
    target = _model(tmp_path / "store" / "real.safetensors", 1)
    link = tmp_path / "dl" / "link.safetensors"
    link.parent.mkdir()
    link.symlink_to(target)
    run = run_cli("--library", tmp_path / "lib", "import", link, "--yes", "--json",
                  "--delete-originals")  # fmt: skip
    assert run.code == 1
    [kept] = run.json["originals"]["files"]
    assert kept["reason"] == "it is a symlink (the file behind it belongs to someone else)"
    assert link.is_symlink() and target.exists()


def test_a_source_in_a_read_only_folder_is_kept(other_user: OtherUser):
    folder = other_user.home / "theirs"
    sources = _batch(folder)  # root's folder: the user may read it, not delete from it
    lib = other_user.home / "lib"
    run = other_user.run("--library", lib, "import", folder, "--yes", "--json",
                         "--delete-originals")  # fmt: skip
    assert run.code == 1, run.stderr
    kept = _originals(run)
    assert kept["m0.safetensors"]["reason"] == f"its folder {folder} is not writable"
    assert all(p.exists() for p in sources)


def test_a_hard_linked_source_is_deleted_with_a_warning(tmp_path: Path):
    [source] = _batch(tmp_path / "dl", 1)
    other = tmp_path / "elsewhere.safetensors"
    os.link(source, other)
    run = run_cli("--library", tmp_path / "lib", "import", source, "--yes", "--json",
                  "--delete-originals")  # fmt: skip
    assert run.code == 0, run.stderr
    [f] = run.json["originals"]["files"]
    assert f["deleted"] and f["freed"] == 0
    assert f["warning"] == "it had 2 hard links; the others keep its bytes, so no space was freed"
    assert not source.exists() and other.exists()


def test_a_duplicate_source_is_kept_without_failing(tmp_path: Path):
    [source] = _batch(tmp_path / "dl", 1)
    lib = tmp_path / "lib"
    assert run_cli("--library", lib, "import", source, "--yes").code == 0
    copy = tmp_path / "again" / "m0.safetensors"
    copy.parent.mkdir()
    shutil.copy2(source, copy)
    run = run_cli("--library", lib, "import", copy, "--yes", "--json", "--delete-originals")
    assert run.code == 0, run.stderr
    [f] = run.json["originals"]["files"]
    assert not f["deleted"] and not f["refused"]
    assert f["reason"].startswith("already in the library as ")
    assert copy.exists()


def test_delete_originals_with_move_is_bad_usage(tmp_path: Path):
    [source] = _batch(tmp_path / "dl", 1)
    run = run_cli("--library", tmp_path / "lib", "import", source, "--yes", "--move",
                  "--delete-originals")  # fmt: skip
    assert run.code == 2
    assert run.stderr.strip() == (
        "Error: --move already removes the originals; --delete-originals is for a copy."
    )
    assert source.exists()


def test_a_bundle_s_emptied_folders_go_and_what_was_left_out_stays(tmp_path: Path):
    """A diffusers pipeline folder imported with --delete-originals: its files and the
    component folders they emptied are removed; the pipeline's own folder stays only while it
    holds something the import left out (hf download's .cache/), which is kept."""
    from factories import make_diffusers_sdxl

    whole = tmp_path / "dl" / "sdxl-base" / "sdxl-base"  # the user's folder of the same name
    make_diffusers_sdxl(whole)
    kept = tmp_path / "dl" / "sdxl-cached"
    make_diffusers_sdxl(kept)
    other = bytearray((whole / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
    other[-1] ^= 1  # another file (no duplicate), still valid: the tensor data changed
    (kept / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(bytes(other))
    (kept / ".cache" / "huggingface").mkdir(parents=True)
    (kept / ".cache" / "huggingface" / ".gitignore").write_text("*\n")
    beside = tmp_path / "dl" / "notes"  # an empty folder of the user's, outside any bundle
    beside.mkdir()

    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes", "--json",
                  "--offline", "--delete-originals")  # fmt: skip

    assert run.code == 0, run.stderr + run.stdout
    assert sorted(r["bundle"]["kind"] for r in run.json["results"]) == [
        "diffusers", "diffusers"]
    assert run.json["originals"]["kept"] == 0
    assert not whole.exists() and whole.parent.is_dir()
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")) == [
        ".cache", ".cache/huggingface", ".cache/huggingface/.gitignore"]
    assert beside.is_dir() and (tmp_path / "dl").is_dir()


def test_a_file_that_is_not_a_model_does_not_keep_the_originals(tmp_path: Path):
    """A Downloads folder holds other files too: notes.txt is skipped (not a model), which is
    nothing the batch failed to do, so the models' originals are deleted and it stays."""
    sources = _batch(tmp_path / "dl")
    notes = tmp_path / "dl" / "notes.txt"
    notes.write_text("not a model")
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes", "--json",
                  "--delete-originals")  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.json["originals"]["deleted"] == 2
    assert not any(p.exists() for p in sources) and notes.read_text() == "not a model"


def test_a_library_file_named_is_never_offered_for_deletion(tmp_path: Path):
    [source] = _batch(tmp_path / "dl", 1)
    lib = tmp_path / "lib"
    [result] = run_cli("--library", lib, "import", source, "--yes", "--json").json["results"]
    inside = lib / result["model_id"] / source.name
    run = run_cli("--library", lib, "import", inside, "--yes", "--json", "--delete-originals")
    [kept] = run.json["originals"]["files"]
    assert not kept["deleted"] and inside.exists()
    assert kept["reason"] == f"it is the library's own file (of {result['model_id']})"


def test_originals_in_a_linked_apps_own_folder_are_replaced_by_its_links(tmp_path: Path):
    """Issue 20, point 2: importing ComfyUI's own models folder with --delete-originals
    skipped every link (the original was there), then deleted every original: the app was
    left empty. Each original the app reads is now replaced by the app's link in one rename."""
    import app_models as models

    comfy = tmp_path / "ComfyUI"
    lora = models.sdxl_lora(comfy / "models" / "loras" / "add-detail-xl.safetensors")
    vae = models.sdxl_vae(comfy / "models" / "vae" / "sdxl_vae.safetensors")
    (comfy / "models" / "checkpoints").mkdir()
    lib = tmp_path / "lib"
    assert run_cli("--library", lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    run = run_cli("--library", lib, "import", comfy / "models", "--yes", "--json",
                  "--delete-originals")
    assert run.code == 0, run.stderr
    originals = run.json["originals"]
    assert originals["deleted"] == 2 and originals["refused"] == 0, originals
    for path in (lora, vae):
        assert path.is_symlink(), f"{path} is not the app's link"
        assert lib.resolve() in path.resolve().parents
        assert path.read_bytes()[:8] == next(
            p for p in lib.rglob(path.name) if ".modelimport" not in p.parts
        ).read_bytes()[:8]
    human = run_cli("--library", lib, "check")
    assert human.code == 0, human.stdout
    status = run_cli("--library", lib, "status", "--json")
    assert status.code == 0, status.stdout
    again = run_cli("--library", lib, "sync", "--json")  # nothing left to do
    assert [c for c in again.json["changes"] if c["action"] != "adopted"] == []
