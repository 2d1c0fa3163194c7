"""Linking the library into app folders: real symlinks into real app-shaped folders, real
model files, the real CLI (issue 10, Must show 1-3)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import app_models as models
import pytest
from app_models import assert_relative_link_to, tree
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf

COMFY_FOLDERS = ("checkpoints", "loras", "vae", "text_encoders", "upscale_models")


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    return tmp_path / "lib"


@pytest.fixture
def comfy(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    for folder in COMFY_FOLDERS:
        (root / "models" / folder).mkdir(parents=True)
    return root


def mi(lib: Path, *args: str | Path, **kw):
    return run_cli("--library", lib, *args, **kw)


def sd_models(src: Path) -> dict[str, Path]:
    """The five image models of Must show 1, each named as people name them."""
    return {
        "checkpoint": models.sdxl_checkpoint(src / "juggernautXL_v9.safetensors"),
        "lora": models.sdxl_lora(src / "add-detail-xl.safetensors"),
        "vae": models.sdxl_vae(src / "sdxl_vae.safetensors"),
        "text_encoder": models.clip_l_text_encoder(src / "clip_l.safetensors"),
        "upscaler": models.esrgan_upscaler(src / "4x-UltraSharp.safetensors"),
    }


def imported(run) -> dict[str, dict]:
    """model_type -> import result, from `import --json`."""
    assert run.code == 0, run.stderr
    return {r["model_type"]: r for r in run.json["results"] if r["status"] == "imported"}


def link_rows(lib: Path) -> list[tuple]:
    with sqlite3.connect(lib / ".modelimport" / "index.sqlite") as db:
        return db.execute(
            "SELECT app, link_path, model_id, target, kind FROM links ORDER BY link_path"
        ).fetchall()


# --- Must show 1: every type in its folder, relative symlinks resolving to the library.

COMFY_EXPECTED = {
    "checkpoint": "models/checkpoints/juggernautXL_v9.safetensors",
    "lora": "models/loras/add-detail-xl.safetensors",
    "vae": "models/vae/sdxl_vae.safetensors",
    "text_encoder": "models/text_encoders/clip_l.safetensors",
    "upscaler": "models/upscale_models/4x-UltraSharp.safetensors",
}


def test_comfyui_gets_each_model_in_its_folder(tmp_path: Path, lib: Path, comfy: Path) -> None:
    sd_models(tmp_path / "src")
    assert mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui").code == 0
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert set(results) == set(COMFY_EXPECTED)
    for model_type, rel in COMFY_EXPECTED.items():
        result = results[model_type]
        library_file = lib / result["model_id"] / result["files"][0]["name"]
        assert_relative_link_to(comfy / rel, library_file)
        assert [c["action"] for c in result["links"]] == ["created"]
    rows = link_rows(lib)
    assert len(rows) == 5 and {r[0] for r in rows} == {"comfy"} and {r[4] for r in rows} == {
        "symlink"
    }


def test_comfyui_subfolders_family_puts_the_lora_in_loras_sdxl(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    models.sdxl_checkpoint(tmp_path / "src" / "juggernautXL_v9.safetensors")
    add = mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui", "--subfolders", "family")
    assert add.code == 0, add.stderr
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    lora = results["lora"]
    assert_relative_link_to(
        comfy / "models/loras/sdxl/add-detail-xl.safetensors",
        lib / lora["model_id"] / "add-detail-xl.safetensors",
    )
    assert (comfy / "models/checkpoints/sdxl/juggernautXL_v9.safetensors").is_symlink()
    assert not (comfy / "models/loras/add-detail-xl.safetensors").exists()


def test_comfyui_install_with_only_the_legacy_folder_gets_the_legacy_name(
    tmp_path: Path, lib: Path
) -> None:
    comfy = tmp_path / "OldComfy"
    (comfy / "models" / "clip").mkdir(parents=True)  # before text_encoders existed
    models.clip_l_text_encoder(tmp_path / "src" / "clip_l.safetensors")
    mi(lib, "apps", "add", "old", comfy, "--kind", "comfyui")
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert (comfy / "models/clip/clip_l.safetensors").is_symlink()
    assert not (comfy / "models/text_encoders").exists()


A1111_EXPECTED = {
    "checkpoint": "models/Stable-diffusion/juggernautXL_v9.safetensors",
    "lora": "models/Lora/add-detail-xl.safetensors",
    "vae": "models/VAE/sdxl_vae.safetensors",
    "text_encoder": "models/text_encoder/clip_l.safetensors",
    "upscaler": "models/ESRGAN/4x-UltraSharp.safetensors",
}


def test_a1111_gets_the_same_models_in_its_folder_names(tmp_path: Path, lib: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    for rel in A1111_EXPECTED.values():
        Path(webui / rel).parent.mkdir(parents=True, exist_ok=True)
    sd_models(tmp_path / "src")
    assert mi(lib, "apps", "add", "forge", webui, "--kind", "a1111").code == 0
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    for model_type, rel in A1111_EXPECTED.items():
        result = results[model_type]
        assert_relative_link_to(webui / rel, lib / result["model_id"] / result["files"][0]["name"])


def test_lmstudio_gets_publisher_repo_folders_and_a_split_set_in_one(
    tmp_path: Path, lib: Path
) -> None:
    lms = tmp_path / "lmstudio-models"
    lms.mkdir()
    src = tmp_path / "src"
    models.gguf_with_source(src / "tinyllama-Q4_K_M.gguf", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    shards = models.gguf_split_set(src / "split")
    assert mi(lib, "apps", "add", "lms", lms, "--kind", "lmstudio").code == 0
    run = mi(lib, "import", src, "--yes", "--json")
    assert run.code == 0, run.stderr
    by_source = {Path(r["sources"][0]).name: r for r in run.json["results"]}
    tiny = by_source["tinyllama-Q4_K_M.gguf"]
    assert_relative_link_to(
        lms / "TinyLlama/TinyLlama-1.1B-Chat-v1.0/tinyllama-Q4_K_M.gguf",
        lib / tiny["model_id"] / "tinyllama-Q4_K_M.gguf",
    )
    split = by_source[shards[0].name]
    links = [Path(c["link_path"]) for c in split["links"]]
    assert len(links) == 3 and len({p.parent for p in links}) == 1
    assert links[0].parent.parent == lms / "local"  # no repo known: local/<model>
    for shard in shards:
        assert_relative_link_to(links[0].parent / shard.name, lib / split["model_id"] / shard.name)


def test_folder_kind_uses_the_users_mapping_only(tmp_path: Path, lib: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    models.sdxl_vae(tmp_path / "src" / "sdxl_vae.safetensors")
    assert mi(lib, "apps", "add", "mine", target, "--kind", "folder").code == 2  # needs a map
    add = mi(lib, "apps", "add", "mine", target, "--kind", "folder", "--map", "lora=my/loras")
    assert add.code == 0, add.stderr
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert (target / "my/loras/add-detail-xl.safetensors").is_symlink()
    assert [p.name for p in target.rglob("*") if p.is_symlink()] == ["add-detail-xl.safetensors"]


def test_apps_list_prints_the_config_path_and_remove_unlinks(
    tmp_path: Path, lib: Path, comfy: Path, _isolated_config: Path
) -> None:
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    listed = mi(lib, "apps", "list")
    assert str(_isolated_config / "apps.toml") in listed.stdout
    assert f"comfy: comfyui at {comfy}" in listed.stdout
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    link = comfy / "models/loras/add-detail-xl.safetensors"
    assert link.is_symlink()
    gone = mi(lib, "apps", "remove", "comfy", "--unlink")
    assert gone.code == 0, gone.stderr
    assert not os.path.lexists(link) and link_rows(lib) == []
    assert mi(lib, "apps", "list", "--json").json["apps"] == []
    assert (comfy / "models/loras").is_dir()  # the app's own folder stays


def test_apps_add_refuses_bad_input_in_one_sentence(tmp_path: Path, lib: Path) -> None:
    for args in (
        ("apps", "add", "x", tmp_path / "missing", "--kind", "comfyui"),
        ("apps", "add", "x", tmp_path, "--kind", "invokeai"),
        ("apps", "add", "x", tmp_path, "--kind", "folder", "--map", "lora=../outside"),
        ("apps", "add", "../x", tmp_path, "--kind", "comfyui"),
    ):
        run = mi(lib, *args)
        assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "apps.toml").write_text("[apps.x\n")
    run = mi(lib, "apps", "list")
    assert run.code == 1 and "not valid TOML" in run.stderr and "Traceback" not in run.stderr


def test_apps_add_refuses_a_map_type_it_does_not_know(tmp_path: Path, lib: Path) -> None:
    bad = mi(lib, "apps", "add", "mine", tmp_path, "--kind", "folder", "--map", "bogus=zz")
    assert bad.code == 2 and "Traceback" not in bad.stderr
    said = " ".join(bad.stderr.split())
    assert "--map 'bogus=zz': 'bogus' is not a model type; use one of checkpoint," in said
    assert mi(lib, "apps", "list", "--json").json["apps"] == []  # nothing was registered
    ok = mi(lib, "apps", "add", "mine", tmp_path, "--kind", "folder", "--map", "LoRA=loras",
            "--map", "diffusers=pipelines")  # fmt: skip
    assert ok.code == 0, ok.stderr
    assert mi(lib, "apps", "list", "--json").json["apps"][0]["map"] == {
        "lora": "loras", "diffusers": "pipelines"
    }  # fmt: skip


def test_apps_add_refuses_a_folder_registered_twice_and_never_replaces_an_app(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    other = tmp_path / "Other"
    (other / "models" / "loras").mkdir(parents=True)
    mi(lib, "apps", "add", "c", comfy, "--kind", "comfyui")
    imported(mi(lib, "import", models.sdxl_lora(tmp_path / "a.safetensors"), "--yes", "--json"))
    link = comfy / "models/loras/a.safetensors"
    assert link.is_symlink()
    # The same folder under a second name (spelt differently: resolved before comparing).
    twice = mi(lib, "apps", "add", "c2", comfy / "models" / "..", "--kind", "comfyui")
    assert twice.code == 2 and "Traceback" not in twice.stderr
    said = " ".join(twice.stderr.split())
    assert f"The folder {comfy} is already registered as the app 'c'" in said
    # An existing name with another folder: refused, saying how to change it.
    moved = mi(lib, "apps", "add", "c", other, "--kind", "comfyui")
    assert moved.code == 2
    said = " ".join(moved.stderr.split())
    assert "An app named 'c' is already registered (comfyui at" in said
    assert "modelimport apps remove c --unlink" in said
    assert [a["name"] for a in mi(lib, "apps", "list", "--json").json["apps"]] == ["c"]
    assert mi(lib, "apps", "list", "--json").json["apps"][0]["path"] == str(comfy)
    assert mi(lib, "apps", "remove", "c2", "--unlink").code == 2  # no such app
    assert link.is_symlink()  # c's link was never touched
    again = mi(lib, "apps", "add", "c", comfy, "--kind", "comfyui")  # the same app: a no-op
    assert again.code == 0, again.stderr


def test_apps_remove_unlink_leaves_links_another_app_at_that_folder_has(
    tmp_path: Path, lib: Path, comfy: Path, _isolated_config: Path
) -> None:
    mi(lib, "apps", "add", "c", comfy, "--kind", "comfyui")
    imported(mi(lib, "import", models.sdxl_lora(tmp_path / "a.safetensors"), "--yes", "--json"))
    link = comfy / "models/loras/a.safetensors"
    config = _isolated_config / "apps.toml"  # a second name for the folder, added by hand
    config.write_text(config.read_text() + f'\n[apps.c2]\nkind = "comfyui"\npath = "{comfy}"\n')
    assert mi(lib, "sync").code == 0
    assert {r[0] for r in link_rows(lib)} == {"c", "c2"}
    run = mi(lib, "apps", "remove", "c2", "--unlink")
    assert run.code == 0, run.stderr
    assert "also another app's link; left in place" in run.stdout
    assert link.is_symlink() and [r[0] for r in link_rows(lib)] == ["c"]
    assert mi(lib, "sync", "--json").json["changes"] == []


# --- Must show 2: a second import links only the new model; a user's file is left alone.


def test_second_import_links_only_the_new_model(tmp_path: Path, lib: Path, comfy: Path) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_checkpoint(tmp_path / "one" / "juggernautXL_v9.safetensors")
    models.sdxl_lora(tmp_path / "one" / "add-detail-xl.safetensors")
    first = mi(lib, "import", tmp_path / "one", "--yes", "--json")
    assert first.json["links"]["summary"]["created"] == 2
    before = tree(comfy)
    models.sdxl_vae(tmp_path / "two" / "sdxl_vae.safetensors")
    second = mi(lib, "import", tmp_path / "two", "--yes", "--json")
    assert second.code == 0, second.stderr
    changes = second.json["links"]["changes"]
    # One link operation in the whole batch: the new VAE's. The earlier links are not
    # visited again (same inode, same text: not re-created, not replaced).
    assert [(c["action"], Path(c["link_path"]).name) for c in changes] == [
        ("created", "sdxl_vae.safetensors")
    ]
    after = tree(comfy)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"models/vae/sdxl_vae.safetensors"}
    assert len(link_rows(lib)) == 3


@pytest.mark.parametrize("what", ["file", "broken link", "link elsewhere"])
def test_a_users_file_with_the_same_name_is_untouched_and_reported(
    tmp_path: Path, lib: Path, comfy: Path, what: str
) -> None:
    mine = comfy / "models/loras/add-detail-xl.safetensors"
    if what == "file":
        mine.write_bytes(b"the user's own lora")
    elif what == "broken link":
        mine.symlink_to(tmp_path / "deleted-long-ago.safetensors")
    else:
        (tmp_path / "elsewhere.safetensors").write_bytes(b"the user's own lora")
        mine.symlink_to(tmp_path / "elsewhere.safetensors")
    before = tree(comfy)
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    run = mi(lib, "import", tmp_path / "src", "--yes")
    assert run.code == 0, run.stderr
    assert tree(comfy) == before
    assert f"comfy: skipped {mine}" in run.stdout
    assert "did not create" in run.stdout
    assert link_rows(lib) == []
    again = mi(lib, "sync", "--json")  # sync leaves it alone too, and says so
    assert [c["action"] for c in again.json["changes"]] == ["skipped"]
    assert tree(comfy) == before


# --- Must show 3: sync repairs what was broken and touches nothing it did not create.


def test_sync_repairs_deleted_broken_and_stale_links_and_nothing_else(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    sd_models(tmp_path / "src")
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    users_file = comfy / "models/checkpoints/my-own.safetensors"
    users_file.write_bytes(b"not a library file")
    users_link = comfy / "models/loras/elsewhere.safetensors"
    users_link.symlink_to(users_file)
    users_broken = comfy / "models/vae/old.safetensors"
    users_broken.symlink_to(tmp_path / "gone.safetensors")

    deleted = comfy / COMFY_EXPECTED["lora"]
    deleted.unlink()  # a link deleted by hand
    replaced = comfy / COMFY_EXPECTED["vae"]
    replaced.unlink()
    replaced.symlink_to(tmp_path / "nowhere" / "sdxl_vae.safetensors")  # now a broken link
    stale = comfy / COMFY_EXPECTED["upscaler"]
    upscaler_dir = lib / results["upscaler"]["model_id"]
    for f in upscaler_dir.iterdir():  # a model removed by hand, then the index rebuilt
        f.unlink()
    upscaler_dir.rmdir()
    assert mi(lib, "rescan").code == 0
    status = mi(lib, "status", "--json").json["apps"]
    # broken: the replaced VAE link, and the upscaler's (its model gone, the link dangles)
    assert status == [
        {"app": "comfy", "kind": "comfyui", "path": str(comfy), "ok": 2, "broken": 2,
         "missing": 1, "conflicts": 0, "clashes": 0, "no_links": 0, "via": "links",
         "served_by": "symlinks 5"}
    ]  # fmt: skip

    before, rows_before = tree(comfy), link_rows(lib)
    dry = mi(lib, "sync", "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert sorted((c["action"], c["link_path"]) for c in dry.json["changes"]) == sorted(
        [("created", str(deleted)), ("repaired", str(replaced)), ("removed", str(stale))]
    )
    assert tree(comfy) == before and link_rows(lib) == rows_before  # --dry-run changed nothing

    run = mi(lib, "sync")
    assert run.code == 0, run.stderr
    assert f"comfy: created {deleted}" in run.stdout
    assert f"comfy: repaired {replaced}" in run.stdout
    assert f"comfy: removed {stale}" in run.stdout
    for model_type in ("lora", "vae"):
        r = results[model_type]
        assert_relative_link_to(comfy / COMFY_EXPECTED[model_type],
                                lib / r["model_id"] / r["files"][0]["name"])  # fmt: skip
    assert not os.path.lexists(stale)
    after = tree(comfy)
    for untouched in (users_file, users_link, users_broken):
        key = str(untouched.relative_to(comfy))
        assert after[key] == before[key]
    for model_type in ("checkpoint", "text_encoder"):  # links that were fine: not replaced
        key = COMFY_EXPECTED[model_type]
        assert after[key] == before[key]
    assert len(link_rows(lib)) == 4
    assert mi(lib, "sync", "--json").json["changes"] == []  # all in order now
    assert mi(lib, "status", "--json").json["apps"][0]["ok"] == 4


def test_a_link_whose_model_folder_was_deleted_is_broken_reported_and_removed(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    models.sdxl_vae(tmp_path / "src" / "sdxl_vae.safetensors")
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    dangling = comfy / COMFY_EXPECTED["lora"]
    shutil.rmtree(lib / results["lora"]["model_id"])  # the model's folder, deleted by hand
    assert dangling.is_symlink() and not dangling.exists()

    [status] = mi(lib, "status", "--json").json["apps"]
    assert (status["ok"], status["broken"]) == (1, 1)
    assert "links 1 ok, 1 broken" in mi(lib, "status").stdout
    check = mi(lib, "check")
    assert check.code == 1 and str(dangling) in " ".join(check.stdout.split())
    # --repair drops the gone model's index row; the link is still known and still reported.
    mi(lib, "check", "--repair")
    assert str(dangling) in " ".join(mi(lib, "check").stdout.split())
    run = mi(lib, "sync")
    assert run.code == 0, run.stderr
    assert f"comfy: removed {dangling}" in run.stdout
    assert not os.path.lexists(dangling) and (comfy / COMFY_EXPECTED["vae"]).exists()
    assert mi(lib, "check").code == 0
    [status] = mi(lib, "status", "--json").json["apps"]
    assert (status["ok"], status["broken"]) == (1, 0)


def test_a_dangling_link_into_the_library_is_ours_though_the_registry_forgot_it(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    models.sdxl_vae(tmp_path / "src" / "sdxl_vae.safetensors")
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    gone_model = comfy / COMFY_EXPECTED["lora"]
    shutil.rmtree(lib / results["lora"]["model_id"])
    moved = comfy / COMFY_EXPECTED["vae"]  # points where the VAE was before a move
    moved.unlink()
    moved.symlink_to(Path("../../../lib/vae/sdxl/old-name/sdxl_vae.safetensors"))
    users_broken = comfy / "models/loras/old.safetensors"
    users_broken.symlink_to(tmp_path / "gone.safetensors")  # outside the library: not ours
    # Unregistered and registered again: the registry forgot the links, they stay on disk.
    assert mi(lib, "apps", "remove", "comfy").code == 0
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    assert link_rows(lib) == []

    [status] = mi(lib, "status", "--json").json["apps"]
    assert status["broken"] == 2 and status["conflicts"] == 0
    check = " ".join(mi(lib, "check").stdout.split())
    assert str(gone_model) in check and str(moved) in check and str(users_broken) not in check
    run = mi(lib, "sync")
    assert run.code == 0, run.stderr
    assert f"comfy: removed {gone_model}" in run.stdout
    assert f"comfy: repaired {moved}" in run.stdout
    assert not os.path.lexists(gone_model)
    vae = results["vae"]
    assert_relative_link_to(moved, lib / vae["model_id"] / vae["files"][0]["name"])
    assert os.readlink(users_broken) == str(tmp_path / "gone.safetensors")
    assert mi(lib, "sync", "--json").json["changes"] == []


def test_the_scan_for_dangling_links_never_enters_a_library_inside_the_app_folder(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    lib = mine / "lib"  # the library inside a folder app mapped to its top folder
    mine.mkdir()
    mi(lib, "apps", "add", "mine", mine, "--kind", "folder", "--map", "lora=.")
    [result] = [
        r for r in mi(lib, "import", models.sdxl_lora(tmp_path / "a.safetensors"), "--yes",
                      "--json").json["results"] if r["status"] == "imported"
    ]  # fmt: skip
    inside = lib / result["model_id"] / "old.safetensors"  # dangling, inside the library
    inside.symlink_to("a-gone-file.safetensors")
    run = mi(lib, "sync", "--json")
    assert run.code == 0, run.stderr
    assert run.json["changes"] == [] and inside.is_symlink()


def test_sync_app_filter_and_unknown_app(tmp_path: Path, lib: Path, comfy: Path) -> None:
    other = tmp_path / "Other"
    (other / "models" / "loras").mkdir(parents=True)
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))  # no apps yet
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    mi(lib, "apps", "add", "other", other, "--kind", "comfyui")
    run = mi(lib, "sync", "--app", "other", "--json")
    assert [c["app"] for c in run.json["changes"]] == ["other"]
    assert not os.path.lexists(comfy / "models/loras/add-detail-xl.safetensors")
    bad = mi(lib, "sync", "--app", "nope")
    assert bad.code == 2 and "No app named 'nope'" in bad.stderr


# --- Where symlinks cannot be made.


def test_hard_link_fallback_is_recorded_as_such(tmp_path: Path, lib: Path, comfy: Path) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    run = mi(
        lib, "import", tmp_path / "src", "--yes", "--json",
        env={"MODELIMPORT_FAULTS": "apps.symlink:eperm"},
    )  # fmt: skip
    result = imported(run)["lora"]
    link = comfy / "models/loras/add-detail-xl.safetensors"
    library_file = lib / result["model_id"] / "add-detail-xl.safetensors"
    assert not link.is_symlink() and os.path.samefile(link, library_file)
    assert result["links"][0]["kind"] == "hardlink"
    assert "hard link instead" in result["links"][0]["reason"]
    assert [r[4] for r in link_rows(lib)] == ["hardlink"]
    shown = mi(lib, "show", result["model_id"], "--json").json
    assert [(lk["kind"], lk["state"]) for lk in shown["links"]] == [("hardlink", "ok")]
    assert mi(lib, "sync", "--json").json["changes"] == []  # a hard link is a link in order


def test_across_filesystems_without_symlinks_it_says_so(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    run = mi(
        lib, "import", tmp_path / "src", "--yes",
        env={"MODELIMPORT_FAULTS": "apps.symlink:eperm,apps.hardlink:exdev"},
    )  # fmt: skip
    assert run.code == 0, run.stderr  # the import itself succeeded
    [sentence] = [line for line in run.stdout.splitlines() if "no links possible" in line]
    assert sentence.startswith("comfy: no links possible for lora models in ")
    assert "same filesystem" in sentence and "1 not linked" in sentence
    assert "--via config" in sentence  # what ComfyUI can have instead
    assert not os.path.lexists(comfy / "models/loras/add-detail-xl.safetensors")


def test_two_models_with_one_file_name_the_second_is_linked_under_its_own_name(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    first = imported(
        mi(lib, "import", models.sdxl_lora(tmp_path / "v1" / "detail.safetensors"), "--yes",
           "--json")
    )["lora"]  # fmt: skip
    second_file = models.sdxl_lora(tmp_path / "v2" / "detail.safetensors", fill=b"\x09")
    run = mi(lib, "import", second_file, "--yes", "--json")
    second = imported(run)["lora"]
    assert second["model_id"] != first["model_id"]
    link = comfy / "models/loras/detail.safetensors"
    assert_relative_link_to(link, lib / first["model_id"] / "detail.safetensors")  # kept
    [change] = second["links"]
    renamed = comfy / "models/loras" / (second["model_id"].rsplit("/", 1)[-1] + ".safetensors")
    assert (change["action"], change["link_path"]) == ("created", str(renamed))
    assert_relative_link_to(renamed, lib / second["model_id"] / "detail.safetensors")
    assert mi(lib, "sync", "--json").json["changes"] == []  # stable: nothing to change
    assert mi(lib, "check").code == 0
    # The first model goes: the second's link keeps the name workflows know it by.
    assert mi(lib, "remove", first["model_id"], "--yes").code == 0
    assert not os.path.lexists(link)
    assert mi(lib, "sync", "--json").json["changes"] == []
    assert_relative_link_to(renamed, lib / second["model_id"] / "detail.safetensors")


def test_two_loras_named_alike_in_one_batch_are_both_linked_and_in_order(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "a" / "detail_tweaker.safetensors")
    models.sdxl_lora(tmp_path / "src" / "b" / "detail_tweaker.safetensors", fill=b"\x09")
    run = mi(lib, "import", tmp_path / "src", "--yes", "--json")
    assert run.code == 0, run.stderr
    results = [r for r in run.json["results"] if r["status"] == "imported"]
    assert len(results) == 2
    linked = {}
    for r in results:
        [change] = r["links"]
        assert change["action"] == "created", change
        linked[r["model_id"]] = Path(change["link_path"])
        library_file = lib / r["model_id"] / "detail_tweaker.safetensors"
        assert_relative_link_to(linked[r["model_id"]], library_file)
    names = sorted(p.name for p in linked.values())
    assert "detail_tweaker.safetensors" in names and len(set(names)) == 2
    assert len(link_rows(lib)) == 2
    sync = mi(lib, "sync")
    assert sync.code == 0 and "Nothing to change: 2 link(s) in order." in sync.stdout
    assert mi(lib, "check").code == 0
    status = mi(lib, "status")
    assert "links 2 ok, 0 broken, 0 missing" in status.stdout
    assert "not ours" not in status.stdout


def test_a_split_set_whose_names_another_sets_links_have_is_reported_as_ours(
    tmp_path: Path, lib: Path
) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    mi(lib, "apps", "add", "mine", target, "--kind", "folder", "--map", "llm=llm")
    models.gguf_split_set(tmp_path / "one", total=2)
    for i in (1, 2):  # the same file names, other bytes: its parts cannot be renamed
        make_gguf(
            tmp_path / "two" / f"bigmodel-Q4_K_M-{i:05d}-of-00002.gguf", "llama", "Other Model",
            kv={"split.no": i - 1, "split.count": 2}, tensors={f"blk.{i}.ffn.weight": [4, 8]},
        )  # fmt: skip
    assert mi(lib, "import", tmp_path / "one", "--yes").code == 0
    run = mi(lib, "import", tmp_path / "two", "--yes", "--json")
    assert run.code == 0, run.stderr
    [second] = [r for r in run.json["results"] if r["status"] == "imported"]
    assert {c["action"] for c in second["links"]} == {"skipped"}
    assert all(c["reason"].startswith("the link of llm/") for c in second["links"])
    status = mi(lib, "status")
    assert "2 not linked (another model's link has the name)" in status.stdout
    assert "not ours" not in status.stdout
    assert mi(lib, "status", "--json").json["apps"][0]["conflicts"] == 0


def test_a_hugging_face_cache_snapshot_is_linked_under_the_models_name(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    """models--org--name/snapshots/<commit>/ is one model named after the repo: its link
    is named so too, not after the commit hash of the folder it came from."""
    from test_bundles import hf_cache_snapshot

    hf_cache_snapshot(tmp_path / "hub")
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    run = mi(lib, "import", tmp_path / "hub", "--yes", "--json")
    assert run.code == 0, run.stderr
    [result] = [r for r in run.json["results"] if r["status"] == "imported"]
    assert result["model_id"] == "text_encoder/bert/all-minilm-l6-v2"
    [change] = result["links"]
    link = comfy / "models/text_encoders/all-minilm-l6-v2"
    assert (change["action"], change["link_path"]) == ("created", str(link))
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (lib / result["model_id"]).resolve()
    assert (link / "config.json").is_file()
    assert [p.name for p in (comfy / "models/text_encoders").iterdir()] == [link.name]
    assert mi(lib, "sync", "--json").json["changes"] == []


def test_apps_add_wants_the_folder_holding_models(tmp_path: Path, lib: Path, comfy: Path) -> None:
    run = mi(lib, "apps", "add", "comfy", comfy / "models", "--kind", "comfyui")
    assert run.code == 2
    assert f"give {comfy}, the folder that holds it" in " ".join(run.stderr.split())


def test_a_broken_apps_config_never_fails_an_import_or_status(
    tmp_path: Path, lib: Path, _isolated_config: Path
) -> None:
    _isolated_config.mkdir()
    (_isolated_config / "apps.toml").write_text("[apps.comfy]\nkind = 'comfyui'\n")  # no path
    run = mi(lib, "import", models.sdxl_lora(tmp_path / "a.safetensors"), "--yes", "--json")
    assert run.code == 0, run.stderr
    assert "has no path" in run.json["links"]["problems"][0]
    status = mi(lib, "status", "--json")
    assert status.code == 0 and "has no path" in status.json["apps_problem"]
    assert "has no path" in mi(lib, "status").stdout


def test_links_of_an_app_dropped_from_the_config_by_hand_are_pruned_by_a_full_sync(
    tmp_path: Path, lib: Path, comfy: Path, _isolated_config: Path
) -> None:
    import tomlkit

    other = tmp_path / "Other"
    (other / "models" / "loras").mkdir(parents=True)
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    mi(lib, "apps", "add", "other", other, "--kind", "comfyui")
    imported(mi(lib, "import", models.sdxl_lora(tmp_path / "a.safetensors"), "--yes", "--json"))
    dropped = other / "models/loras/a.safetensors"
    assert dropped.is_symlink()
    config = _isolated_config / "apps.toml"
    doc = tomlkit.parse(config.read_text())
    del doc["apps"]["other"]
    config.write_text(tomlkit.dumps(doc))
    assert mi(lib, "sync", "--app", "comfy", "--json").json["changes"] == []  # only comfy
    assert dropped.is_symlink()
    run = mi(lib, "sync", "--json")
    assert [(c["action"], c["link_path"]) for c in run.json["changes"]] == [
        ("removed", str(dropped))
    ]
    assert not os.path.lexists(dropped) and (other / "models/loras").is_dir()


def test_two_loras_named_alike_with_sidecars_are_linked_with_their_sidecars(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    """The second twin.safetensors is linked under its model's name, and its sidecars under
    the same new stem, so the app still pairs its preview and info with it."""
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    for folder, fill in (("a", b"\x01"), ("b", b"\x09")):
        models.sdxl_lora(tmp_path / "src" / folder / "twin.safetensors", fill=fill)
        (tmp_path / "src" / folder / "twin.civitai.info").write_text(f'{{"from": "{folder}"}}')
        (tmp_path / "src" / folder / "twin.preview.png").write_bytes(b"\x89PNG" + fill)
    run = mi(lib, "import", tmp_path / "src", "--yes", "--json")
    results = [r for r in run.json["results"] if r["status"] == "imported"]
    assert len(results) == 2
    for r in results:
        assert {c["action"] for c in r["links"]} == {"created"}, r["links"]
        stems = {Path(c["link_path"]).name.split(".")[0] for c in r["links"]}
        assert len(stems) == 1, r["links"]  # the file and its sidecars share one stem
        for change in r["links"]:
            name = Path(change["link_path"]).name
            ending = name[len(name.split(".")[0]):]  # .safetensors, .civitai.info, ...
            assert_relative_link_to(Path(change["link_path"]),
                                    lib / r["model_id"] / ("twin" + ending))
    assert mi(lib, "sync").code == 0 and mi(lib, "check").code == 0
    assert "not linked" not in mi(lib, "status").stdout


def test_an_app_folder_inside_the_library_is_refused(tmp_path: Path, lib: Path) -> None:
    inside = lib / "my-app"
    inside.mkdir(parents=True)
    run = mi(lib, "apps", "add", "inlib", inside, "--kind", "folder", "--map", "lora=l")
    assert run.code == 2, run.stderr
    assert "is inside the library" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "inlib" not in mi(lib, "apps", "list").stdout


def test_two_link_names_differing_only_in_case_never_share_a_path(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    # One name on NTFS, APFS and exFAT: the second is linked under its model's name on every
    # system, so a workflow's model name is the same wherever the library is.
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "a" / "Detail.safetensors")
    models.sdxl_lora(tmp_path / "b" / "detail.safetensors", fill=b"\x09")
    run = mi(lib, "import", tmp_path / "a", tmp_path / "b", "--yes", "--json")
    names = sorted(c["link_path"].rsplit("/", 1)[-1] for r in run.json["results"]
                   for c in r["links"])  # fmt: skip
    assert len(names) == 2 and len({n.casefold() for n in names}) == 2, names
    assert mi(lib, "sync", "--json").json["changes"] == []


def test_an_a1111_without_links_is_told_its_own_folder_option(tmp_path: Path, lib: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    (webui / "models" / "Lora").mkdir(parents=True)
    mi(lib, "apps", "add", "forge", webui, "--kind", "a1111")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    run = mi(
        lib, "import", tmp_path / "src", "--yes",
        env={"MODELIMPORT_FAULTS": "apps.symlink:eperm,apps.hardlink:exdev"},
    )  # fmt: skip
    [sentence] = [line for line in run.stdout.splitlines() if "no links possible" in line]
    assert sentence.endswith(f"start it with --lora-dir {lib}/lora.")


def _foo_in_two_runs(tmp_path: Path, lib: Path) -> tuple[Path, dict, dict]:
    """a/foo.safetensors imported, then another b/foo.safetensors with its foo.civitai.info,
    into a folder app; returns the app folder and the two import results."""
    app = tmp_path / "app"
    (app / "loras").mkdir(parents=True)
    assert mi(lib, "apps", "add", "mine", app, "--kind", "folder", "--map", "lora=loras").code == 0
    models.sdxl_lora(tmp_path / "src" / "a" / "foo.safetensors", fill=b"\x01")
    first = mi(lib, "import", tmp_path / "src" / "a", "--yes", "--json")
    models.sdxl_lora(tmp_path / "src" / "b" / "foo.safetensors", fill=b"\x09")
    (tmp_path / "src" / "b" / "foo.civitai.info").write_text('{"from": "b"}')
    second = mi(lib, "import", tmp_path / "src" / "b", "--yes", "--json")
    [a] = [r for r in first.json["results"] if r["status"] == "imported"]
    [b] = [r for r in second.json["results"] if r["status"] == "imported"]
    return app, a, b


def test_a_same_named_lora_of_a_later_run_is_linked_under_its_name_with_its_sidecar(
    tmp_path: Path, lib: Path
) -> None:
    """Issue 20, point 4: the second foo got no link and its foo.civitai.info was linked
    beside the first foo's weights, so the app paired the wrong metadata."""
    app, a, b = _foo_in_two_runs(tmp_path, lib)
    loras = app / "loras"
    assert_relative_link_to(loras / "foo.safetensors", lib / a["model_id"] / "foo.safetensors")
    assert_relative_link_to(loras / "foo-2.safetensors", lib / b["model_id"] / "foo.safetensors")
    assert_relative_link_to(loras / "foo-2.civitai.info", lib / b["model_id"] / "foo.civitai.info")
    assert not os.path.lexists(loras / "foo.civitai.info")
    assert {c["action"] for c in b["links"]} == {"created"}, b["links"]
    assert mi(lib, "sync").code == 0 and mi(lib, "check").code == 0


def test_sync_mends_a_sidecar_linked_beside_another_models_weights(
    tmp_path: Path, lib: Path
) -> None:
    """The state the earlier runs left (the second foo unlinked, its sidecar beside the
    first foo's weights) is put right by `sync`."""
    from modelimport.library import index

    app, a, b = _foo_in_two_runs(tmp_path, lib)
    loras = app / "loras"
    for name in ("foo-2.safetensors", "foo-2.civitai.info"):
        (loras / name).unlink()
    wrong = loras / "foo.civitai.info"
    target = lib / b["model_id"] / "foo.civitai.info"
    wrong.symlink_to(os.path.relpath(target, loras))
    with sqlite3.connect(lib / ".modelimport" / "index.sqlite") as db:
        db.execute("DELETE FROM links WHERE model_id = ?", (b["model_id"],))
        index.add_link(db, "mine", str(wrong), b["model_id"], str(target), "symlink")
    run = mi(lib, "sync")
    assert run.code == 0, run.stderr
    assert not os.path.lexists(wrong)
    assert_relative_link_to(loras / "foo-2.safetensors", lib / b["model_id"] / "foo.safetensors")
    assert_relative_link_to(loras / "foo-2.civitai.info", target)
    assert mi(lib, "check").code == 0


def test_a_users_file_where_a_link_would_go_is_a_warning_for_check_not_a_fault(
    tmp_path: Path, lib: Path, comfy: Path
) -> None:
    """Issue 20, point 3: `check` exited 1 for ever (and --repair changed nothing) while
    `sync` exited 0 for the same state, which the tool chose: leave the person's file."""
    mine = comfy / "models/loras/add-detail-xl.safetensors"
    mine.write_bytes(b"the user's own lora")
    mi(lib, "apps", "add", "comfy", comfy, "--kind", "comfyui")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    assert mi(lib, "import", tmp_path / "src", "--yes").code == 0
    assert mi(lib, "sync").code == 0
    run = mi(lib, "check")
    assert run.code == 0, run.stdout + run.stderr
    assert f"warning: Link {mine}" in run.stdout
    assert "move or rename what is at that path, then run `modelimport sync`" in run.stdout
    data = mi(lib, "check", "--json").json
    assert data["ok"] is True and data["remaining"] == 0
    assert [p["warning"] for p in data["problems"]] == [True]
    assert mine.read_bytes() == b"the user's own lora"
    mine.unlink()  # as the warning says: then sync links it, and nothing is left to say
    assert mi(lib, "sync").code == 0
    assert mi(lib, "check", "--json").json["problems"] == []


def test_apps_add_lmstudio_at_its_home_folder_names_the_models_folder(
    tmp_path: Path, lib: Path
) -> None:
    """Issue 20, point 8: `apps add lms ~/.lmstudio --kind lmstudio` was accepted and the
    links went where LM Studio never looks."""
    home = tmp_path / ".lmstudio"
    (home / "models").mkdir(parents=True)
    run = mi(lib, "apps", "add", "lms", home, "--kind", "lmstudio")
    assert run.code == 2, run.stderr
    said = " ".join(run.stderr.split())
    assert f"give {home / 'models'}, the folder LM Studio reads models from" in said
    assert mi(lib, "apps", "list", "--json").json["apps"] == []
    assert mi(lib, "apps", "add", "lms", home / "models", "--kind", "lmstudio").code == 0
