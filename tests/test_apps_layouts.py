"""Stability Matrix and SwarmUI as app kinds of their own (issue 23): real app-shaped folders
(the `Models/` folders each app makes), real model files, real symlinks, the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import app_models as models
import pytest
from app_models import assert_relative_link_to
from cli import run_cli
from factories import make_safetensors

# The folders a Stability Matrix data folder has once it has set up its shared models
# (SharedFolders.SetupSharedModelFolders makes one per SharedFolderType), a few of them.
MATRIX_FOLDERS = ("StableDiffusion", "Lora", "LyCORIS", "VAE", "ControlNet", "ESRGAN",
                  "RealESRGAN", "TextEncoders", "DiffusionModels", "Embeddings", "ClipVision")
# What a started SwarmUI has made in its Models/ (Program.cs, ComfyUISelfStartBackend.cs).
SWARM_FOLDERS = ("Stable-Diffusion", "diffusion_models", "tensorrt", "clip", "text_encoders",
                 "clip_vision", "upscale_models", "Lora", "VAE")

EXPECTED = {
    "stabilitymatrix": {
        "checkpoint": "Models/StableDiffusion/juggernautXL_v9.safetensors",
        "lora": "Models/Lora/add-detail-xl.safetensors",
        "vae": "Models/VAE/sdxl_vae.safetensors",
        "controlnet": "Models/ControlNet/control_v11p_sd15_canny.safetensors",
        "upscaler": "Models/ESRGAN/4x-UltraSharp.safetensors",
        "text_encoder": "Models/TextEncoders/clip_l.safetensors",
    },
    "swarmui": {
        "checkpoint": "Models/Stable-Diffusion/juggernautXL_v9.safetensors",
        "lora": "Models/Lora/add-detail-xl.safetensors",
        "vae": "Models/VAE/sdxl_vae.safetensors",
        "controlnet": "Models/controlnet/control_v11p_sd15_canny.safetensors",
        "upscaler": "Models/upscale_models/4x-UltraSharp.safetensors",
        "text_encoder": "Models/text_encoders/clip_l.safetensors",
    },
}


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    return tmp_path / "lib"


def app_folder(tmp_path: Path, kind: str) -> Path:
    """A Stability Matrix data folder or a SwarmUI install folder, as the app leaves it."""
    if kind == "stabilitymatrix":
        root = tmp_path / "StabilityMatrix"
        (root / "Packages" / "ComfyUI").mkdir(parents=True)
        folders = MATRIX_FOLDERS
    else:
        root = tmp_path / "SwarmUI"
        (root / "Data").mkdir(parents=True)
        folders = SWARM_FOLDERS
    for folder in folders:
        (root / "Models" / folder).mkdir(parents=True)
    return root


def controlnet(path: Path, fill: bytes = b"\x06") -> Path:
    """lllyasviel's ControlNet v1.1 layout (control_model.*), SD 1.5's 768-wide context."""
    return make_safetensors(
        path,
        {
            "control_model.input_hint_block.0.weight": ("F16", [16, 3, 3, 3]),
            "control_model.input_blocks.0.0.weight": ("F16", [8, 4, 3, 3]),
            "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
                ("F16", [8, 768]),
            "control_model.zero_convs.0.0.weight": ("F16", [8, 8, 1, 1]),
            "control_model.middle_block_out.0.weight": ("F16", [8, 8, 1, 1]),
        },
        fill=fill,
    )  # fmt: skip


def six_models(src: Path) -> None:
    models.sdxl_checkpoint(src / "juggernautXL_v9.safetensors")
    models.sdxl_lora(src / "add-detail-xl.safetensors")
    models.sdxl_vae(src / "sdxl_vae.safetensors")
    controlnet(src / "control_v11p_sd15_canny.safetensors")
    models.esrgan_upscaler(src / "4x-UltraSharp.safetensors")
    models.clip_l_text_encoder(src / "clip_l.safetensors")


def mi(lib: Path, *args: str | Path, **kw):
    return run_cli("--library", lib, *args, **kw)


def imported(run) -> dict[str, dict]:
    assert run.code == 0, run.stderr
    return {r["model_type"]: r for r in run.json["results"] if r["status"] == "imported"}


@pytest.mark.parametrize("kind", ["stabilitymatrix", "swarmui"])
def test_each_model_lands_in_the_apps_own_folder(tmp_path: Path, lib: Path, kind: str) -> None:
    app = app_folder(tmp_path, kind)
    six_models(tmp_path / "src")
    added = mi(lib, "apps", "add", "app", app, "--kind", kind)
    assert added.code == 0, added.stderr
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert set(results) == set(EXPECTED[kind])
    for model_type, rel in EXPECTED[kind].items():
        result = results[model_type]
        assert_relative_link_to(app / rel, lib / result["model_id"] / result["files"][0]["name"])
    [status] = mi(lib, "status", "--json").json["apps"]
    assert (status["kind"], status["ok"], status["broken"], status["missing"]) == (kind, 6, 0, 0)


@pytest.mark.parametrize("kind", ["stabilitymatrix", "swarmui"])
def test_sync_repairs_and_remove_unlinks(tmp_path: Path, lib: Path, kind: str) -> None:
    app = app_folder(tmp_path, kind)
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    models.esrgan_upscaler(tmp_path / "src" / "4x-UltraSharp.safetensors")
    # Imported before the app is added: `sync` links what the library already holds.
    results = imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert mi(lib, "apps", "add", "app", app, "--kind", kind).code == 0
    lora, upscaler = app / EXPECTED[kind]["lora"], app / EXPECTED[kind]["upscaler"]
    first = mi(lib, "sync", "--json")
    assert first.code == 0, first.stderr
    assert sorted((c["action"], c["link_path"]) for c in first.json["changes"]) == sorted(
        [("created", str(lora)), ("created", str(upscaler))])  # fmt: skip

    lora.unlink()  # deleted by hand: status says so, sync puts it back
    [status] = mi(lib, "status", "--json").json["apps"]
    assert (status["ok"], status["missing"]) == (1, 1)
    again = mi(lib, "sync")
    assert again.code == 0, again.stderr
    assert f"app: created {lora}" in again.stdout
    assert_relative_link_to(lora, lib / results["lora"]["model_id"] / "add-detail-xl.safetensors")

    removed = mi(lib, "remove", results["lora"]["model_id"], "--yes")
    assert removed.code == 0, removed.stderr
    assert not os.path.lexists(lora) and upscaler.is_symlink()
    assert (app / EXPECTED[kind]["lora"]).parent.is_dir()  # the app's own folder stays
    gone = mi(lib, "apps", "remove", "app", "--unlink")
    assert gone.code == 0, gone.stderr
    assert not os.path.lexists(upscaler) and (app / "Models").is_dir()


def test_a_cm_info_sidecar_imported_with_a_lora_is_linked_beside_it(
    tmp_path: Path, lib: Path
) -> None:
    """Stability Matrix reads `<stem>.cm-info.json` beside the weights for its CivitAI card."""
    app = app_folder(tmp_path, "stabilitymatrix")
    src = tmp_path / "src"
    models.sdxl_lora(src / "add-detail-xl.safetensors")
    info = {"ModelId": 122359, "VersionId": 135867, "ModelName": "Detail Tweaker XL",
            "ModelType": "LORA", "FileMetadata": {"Format": "SafeTensor"}}
    (src / "add-detail-xl.cm-info.json").write_text(json.dumps(info))
    assert mi(lib, "apps", "add", "sm", app, "--kind", "stabilitymatrix").code == 0
    [lora] = imported(mi(lib, "import", src, "--yes", "--json")).values()
    folder = app / "Models" / "Lora"
    assert_relative_link_to(folder / "add-detail-xl.safetensors",
                            lib / lora["model_id"] / "add-detail-xl.safetensors")  # fmt: skip
    sidecar = folder / "add-detail-xl.cm-info.json"
    assert_relative_link_to(sidecar, lib / lora["model_id"] / "add-detail-xl.cm-info.json")
    assert json.loads(sidecar.read_text()) == info


def test_a_lora_without_a_cm_info_gets_none_invented(tmp_path: Path, lib: Path) -> None:
    app = app_folder(tmp_path, "stabilitymatrix")
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    assert mi(lib, "apps", "add", "sm", app, "--kind", "stabilitymatrix").code == 0
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert sorted(p.name for p in (app / "Models" / "Lora").iterdir()) == [
        "add-detail-xl.safetensors"
    ]


def test_swarmui_without_text_encoders_gets_its_clip_folder(tmp_path: Path, lib: Path) -> None:
    """A SwarmUI whose ComfyUI backend never started has only Models/clip, which it reads."""
    app = tmp_path / "SwarmUI"
    for folder in ("Stable-Diffusion", "clip", "upscale_models"):
        (app / "Models" / folder).mkdir(parents=True)
    models.clip_l_text_encoder(tmp_path / "src" / "clip_l.safetensors")
    assert mi(lib, "apps", "add", "swarm", app, "--kind", "swarmui").code == 0
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert (app / "Models/clip/clip_l.safetensors").is_symlink()
    assert not (app / "Models/text_encoders").exists()


@pytest.mark.parametrize("kind", ["stabilitymatrix", "swarmui"])
def test_a_folder_without_models_is_refused_in_one_sentence(
    tmp_path: Path, lib: Path, kind: str
) -> None:
    app = app_folder(tmp_path, kind)
    run = mi(lib, "apps", "add", "app", app / "Models", "--kind", kind)
    assert run.code == 2
    which = "data folder" if kind == "stabilitymatrix" else "install folder"
    assert run.stderr.strip() == (
        f"Error: {app / 'Models'} has no Models/ folder; a {kind} app is its {which}, the "
        f"one holding Models/ (give {app}, the folder that holds it)."
    )


def test_stability_matrix_with_its_models_moved_elsewhere_is_refused_naming_them(
    tmp_path: Path, lib: Path
) -> None:
    """Its settings.json's ModelDirectoryOverride: links in <data>/Models would never show."""
    data = app_folder(tmp_path, "stabilitymatrix")
    moved = app_folder(tmp_path / "big-disk", "stabilitymatrix") / "Models"
    settings = data / "settings.json"
    settings.write_text(json.dumps({"ModelDirectoryOverride": str(moved), "Theme": "Dark"}))
    run = mi(lib, "apps", "add", "sm", data, "--kind", "stabilitymatrix")
    assert run.code == 2
    assert run.stderr.strip() == (
        f"Error: Stability Matrix reads its models from {moved} (ModelDirectoryOverride in "
        f"{settings}), not {data / 'Models'}; give {moved.parent}, the folder that holds it."
    )
    assert mi(lib, "apps", "list", "--json").json["apps"] == []
    models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")
    assert mi(lib, "apps", "add", "sm", moved.parent, "--kind", "stabilitymatrix").code == 0
    imported(mi(lib, "import", tmp_path / "src", "--yes", "--json"))
    assert (moved / "Lora" / "add-detail-xl.safetensors").is_symlink()
    # A setting that names no absolute folder is not one Stability Matrix would use either.
    settings.write_text(json.dumps({"ModelDirectoryOverride": None}))
    assert mi(lib, "apps", "add", "sm2", data, "--kind", "stabilitymatrix").code == 0


def test_apps_add_stabilitymatrix_without_a_folder_finds_its_data_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "USERPROFILE": str(home), "XDG_CONFIG_HOME": ""}
    missing = run_cli("apps", "add", "sm", "--kind", "stabilitymatrix", env=env)
    assert missing.code == 2 and "none of its usual folders exists" in missing.stderr
    # The data folder the person chose at its first start, recorded in library.json.
    data = app_folder(tmp_path / "D", "stabilitymatrix")
    settings = home / ".config" / "StabilityMatrix"
    if os.name == "nt":
        settings = home / "AppData" / "Roaming" / "StabilityMatrix"
        env["APPDATA"] = str(settings.parent)
    settings.mkdir(parents=True)
    (settings / "library.json").write_text(json.dumps({"LibraryPath": str(data)}))
    added = run_cli("apps", "add", "sm", "--kind", "stabilitymatrix", "--json", env=env)
    assert added.code == 0, added.stderr
    assert added.json["app"]["path"] == str(data.resolve())
    assert added.json["app"]["kind"] == "stabilitymatrix"


def test_help_lists_the_kinds() -> None:
    run = run_cli("apps", "add", "--help")
    assert run.code == 0
    assert "stabilitymatrix, swarmui" in " ".join(run.stdout.split())
