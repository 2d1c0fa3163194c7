"""The library and the apps on the filesystems people keep models on, mounted for real:
exFAT (external disks: case-insensitive, no symlinks, no hard links) and NTFS (ntfs-3g).
Each test skips with the reason where its filesystem cannot be mounted here."""

from __future__ import annotations

import os
from pathlib import Path

import app_models as models
import yaml
from cli import kill_at_fault, library_files, run_cli
from factories import make_safetensors

MIB = 1 << 20


def mi(lib: Path, *args: str | Path, **kw):
    return run_cli("--library", lib, *args, **kw)


def fifty_models(src: Path) -> list[Path]:
    """48 LoRAs with their own bytes, and two whose names differ only in case."""
    files = [models.sdxl_lora(src / f"lora_{i:02d}.safetensors", fill=bytes([i, 7])) for i in
             range(48)]  # fmt: skip
    files.append(models.sdxl_lora(src / "DetailTweaker.safetensors", fill=b"\xa1"))
    files.append(models.sdxl_lora(src / "detailtweaker.safetensors", fill=b"\xa2"))
    return files


def test_a_library_on_exfat_imports_dedups_survives_a_kill_and_verifies(
    tmp_path: Path, exfat_dir: Path
) -> None:
    lib = exfat_dir / "models"
    src = tmp_path / "src"
    fifty_models(src)

    run = mi(lib, "import", src, "--yes", "--json")
    assert run.code == 0, run.stderr
    results = run.json["results"]
    assert [r["status"] for r in results].count("imported") == 50
    by_name = {Path(r["sources"][0]).name: r["model_id"] for r in results}
    upper, lower = by_name["DetailTweaker.safetensors"], by_name["detailtweaker.safetensors"]
    assert upper.casefold() != lower.casefold()  # two folders even where case does not count
    assert (lib / upper / "DetailTweaker.safetensors").is_file()
    assert (lib / lower / "detailtweaker.safetensors").is_file()

    again = mi(lib, "import", src, "--yes", "--json")
    assert again.code == 0, again.stderr
    assert {r["status"] for r in again.json["results"]} == {"duplicate"}

    # Killed in the middle of copying a bigger file: nothing of it stays, the rest is whole.
    big = make_safetensors(src.parent / "big" / "big.safetensors", {"w": ("U8", [12 * MIB])},
                           fill=os.urandom(4096))  # fmt: skip
    kill_at_fault("--library", lib, "import", big, "--yes",
                  fault=f"copy.bytes>={4 * MIB}:hang", marker=tmp_path / "marker")  # fmt: skip

    check = mi(lib, "check")
    assert check.code == 0, check.stdout + check.stderr
    assert mi(lib, "status", "--json").json["models"] == 50
    assert not [p for p in library_files(lib) if p.name == "big.safetensors"]
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    verify = mi(lib, "verify", "--json")
    assert verify.code == 0, verify.stdout + verify.stderr


USER_YAML = """\
# my own model folders: modelimport must leave this alone
a111:
    base_path: /data/stable-diffusion-webui/   # the old install
    checkpoints: models/Stable-diffusion
    loras: |
        models/Lora
        models/LyCORIS
"""


def comfyui_finds(config: Path, folder_name: str) -> list[Path]:
    """What ComfyUI lists for `folder_name` from its extra_model_paths.yaml, read as its
    utils/extra_config.py reads it (base_path joined to each line, folders walked)."""
    found: list[Path] = []
    for section in yaml.safe_load(config.read_text(encoding="utf-8")).values():
        base = Path(section.get("base_path", ""))
        for line in str(section.get(folder_name) or "").split("\n"):
            if line and (base / line).is_dir():
                found += [p for p in (base / line).rglob("*.safetensors") if p.is_file()]
    return sorted(found)


def test_an_app_on_exfat_gets_no_links_and_comfyui_is_served_by_its_config(
    tmp_path: Path, exfat_dir: Path
) -> None:
    lib, comfy, src = tmp_path / "lib", exfat_dir / "ComfyUI", tmp_path / "src"
    for folder in ("checkpoints", "loras", "vae"):
        (comfy / "models" / folder).mkdir(parents=True)
    models.sdxl_lora(src / "add-detail-xl.safetensors")
    models.sdxl_lora(src / "DetailTweaker.safetensors", fill=b"\x31")
    models.sdxl_checkpoint(src / "juggernautXL_v9.safetensors")
    models.sdxl_vae(src / "sdxl_vae.safetensors")
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0

    run = mi(lib, "import", src, "--yes", "--json")
    assert run.code == 0, run.stderr
    no_links = {n["model_type"]: n for n in run.json["links"]["no_links"]}
    assert set(no_links) == {"lora", "checkpoint", "vae"}
    assert len(no_links["lora"]["models"]) == 2
    human = mi(lib, "sync")
    sentences = [s for s in human.stdout.splitlines() if "no links possible" in s]
    assert len(sentences) == 3  # one per model type, not one per model
    [lora] = [s for s in sentences if " lora models " in s]
    assert "2 not linked" in lora and "--via config" in lora
    assert not [p for p in comfy.rglob("*") if p.is_file()]

    config = comfy / "extra_model_paths.yaml"
    config.write_text(USER_YAML, encoding="utf-8")
    assert mi(lib, "apps", "remove", "comfy").code == 0
    add = mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui", "--via", "config")
    assert add.code == 0, add.stderr
    text = config.read_text(encoding="utf-8")
    assert text.startswith(USER_YAML)  # the user's lines, comments and all, as they were
    assert yaml.safe_load(text)["a111"] == yaml.safe_load(USER_YAML)["a111"]
    assert yaml.safe_load(text)["modelimport"]["base_path"] == str(lib)
    results = {Path(r["sources"][0]).name: r for r in run.json["results"]}
    for name, folder_name in (("add-detail-xl.safetensors", "loras"),
                              ("DetailTweaker.safetensors", "loras"),
                              ("juggernautXL_v9.safetensors", "checkpoints"),
                              ("sdxl_vae.safetensors", "vae")):  # fmt: skip
        assert lib / results[name]["model_id"] / name in comfyui_finds(config, folder_name)
    assert not [p for p in comfy.rglob("*") if p.is_file() and p != config]

    [app] = mi(lib, "status", "--json").json["apps"]
    assert (app["via"], app["served_by"]) == ("config", f"config file {config}")
    assert f"served by config file {config}" in mi(lib, "status").stdout
    assert "via config (no links)" in mi(lib, "apps", "list").stdout
    synced = mi(lib, "sync", "--json")
    assert synced.code == 0, synced.stdout
    assert synced.json["configs"][0]["result"] == "unchanged"
    assert mi(lib, "check").code == 0

    other = tmp_path / "other-lib"  # another library linked: the section follows it
    other_run = mi(other, "import", models.sdxl_vae(tmp_path / "vae2.safetensors", b"\x77"),
                   "--yes", "--json")  # fmt: skip
    assert other_run.json["links"]["configs"][0]["result"] == "updated"
    assert yaml.safe_load(config.read_text())["modelimport"]["base_path"] == str(other)
    assert config.read_text(encoding="utf-8").startswith(USER_YAML)

    assert mi(lib, "apps", "remove", "comfy", "--unlink").code == 0
    assert config.read_text(encoding="utf-8") == USER_YAML


def test_a_section_named_like_ours_but_not_ours_is_refused(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    mine = "modelimport:\n    base_path: /somewhere/else\n"
    (comfy / "extra_model_paths.yaml").write_text(mine, encoding="utf-8")
    add = mi(tmp_path / "lib", "apps", "add", "c", comfy, "--kind", "comfyui", "--via", "config")
    assert add.code != 0 and "did not write" in add.stderr
    assert (comfy / "extra_model_paths.yaml").read_text(encoding="utf-8") == mine
    assert mi(tmp_path / "lib", "apps", "list", "--json").json["apps"] == []


def test_a_library_on_ntfs_imports_verifies_and_links_with_hard_links_when_refused_symlinks(
    tmp_path: Path, ntfs_dir: Path
) -> None:
    lib, comfy, src = ntfs_dir / "models", ntfs_dir / "ComfyUI", tmp_path / "src"
    (comfy / "models" / "loras").mkdir(parents=True)
    models.sdxl_lora(src / "add-detail-xl.safetensors")
    models.sdxl_lora(src / "other.safetensors", fill=b"\x44")
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    # As on Windows without Developer Mode: symlinks refused, the library on the same volume.
    run = mi(lib, "import", src, "--yes", "--json",
             env={"MODELIMPORT_FAULTS": "apps.symlink:eperm"})  # fmt: skip
    assert run.code == 0, run.stderr
    by_name = {Path(r["sources"][0]).name: r for r in run.json["results"]}
    for name, result in by_name.items():
        [link] = result["links"]
        assert link["kind"] == "hardlink"
        assert os.path.samefile(link["link_path"], lib / result["model_id"] / name)
    assert mi(lib, "verify").code == 0
    assert mi(lib, "check").code == 0  # hard links are links in order, not stray copies
    [app] = mi(lib, "status", "--json").json["apps"]
    assert app["served_by"] == "hard links 2"

    # A hard link is ours only while it is the library's file: one replaced by the user's
    # own file of that name is left alone when its model goes.
    mine = comfy / "models/loras/other.safetensors"
    mine.unlink()
    mine.write_bytes(b"the user's own file")
    removed = mi(lib, "remove", by_name["other.safetensors"]["model_id"], "--yes")
    assert removed.code == 0, removed.stdout + removed.stderr
    assert mine.read_bytes() == b"the user's own file"
    assert mi(lib, "remove", by_name["add-detail-xl.safetensors"]["model_id"], "--yes").code == 0
    assert not (comfy / "models/loras/add-detail-xl.safetensors").exists()
    assert mi(lib, "check").code == 0


def test_a_config_file_modelimport_made_goes_with_its_section(tmp_path: Path) -> None:
    comfy, lib = tmp_path / "ComfyUI", tmp_path / "lib"
    (comfy / "models").mkdir(parents=True)
    assert mi(lib, "apps", "add", "c", comfy, "--kind", "comfyui", "--via", "config").code == 0
    config = comfy / "extra_model_paths.yaml"
    assert set(yaml.safe_load(config.read_text(encoding="utf-8"))) == {"modelimport"}
    assert mi(lib, "apps", "remove", "c", "--unlink").code == 0
    # Empty, it would stop ComfyUI from starting (it reads the file as a mapping).
    assert not config.exists()


def test_a_config_file_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    """A planted (or the person's own) extra_model_paths.yaml link: writing our section used
    to replace the link with a copy of what it pointed at (a token file) in ComfyUI's folder."""
    comfy, lib = tmp_path / "ComfyUI", tmp_path / "lib"
    (comfy / "models").mkdir(parents=True)
    private = tmp_path / "dot" / "hosts.yml"
    private.parent.mkdir()
    private.write_text("github.com:\n    oauth_token: gho_not_for_comfyui\n", encoding="utf-8")
    config = comfy / "extra_model_paths.yaml"
    config.symlink_to(private)

    add = mi(lib, "apps", "add", "c", comfy, "--kind", "comfyui", "--via", "config")

    assert add.code != 0 and "is a link" in add.stderr and "Traceback" not in add.stderr
    assert config.is_symlink() and config.readlink() == private
    assert private.read_text(encoding="utf-8").endswith("gho_not_for_comfyui\n")
    assert mi(lib, "apps", "list", "--json").json["apps"] == []
