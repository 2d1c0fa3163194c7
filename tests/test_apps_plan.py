"""The link plan (pure) and the functions other commands call: relink_model, check_links."""

from __future__ import annotations

import os
from pathlib import Path

import app_models as models
from app_models import assert_relative_link_to

from modelimport.apps import check_links, link_new_models, relink_model, unlink_model
from modelimport.apps.plan import desired_links, lmstudio_folder
from modelimport.apps.targets import AppTarget, add_target
from modelimport.importer.pipeline import ImportOptions, execute_plan, plan_import
from modelimport.library import index
from modelimport.library.maintenance import open_library


def test_a_diffusers_bundle_is_one_folder_link_in_comfyui_diffusers(tmp_path: Path) -> None:
    comfy = AppTarget("comfy", "comfyui", tmp_path / "ComfyUI")
    record = {
        "model_type": "checkpoint", "family": "sdxl",
        "bundle": {"kind": "diffusers", "root": "sdxl-turbo"},
        "files": [{"name": "sdxl-turbo/model_index.json"},
                  {"name": "sdxl-turbo/unet/diffusion_pytorch_model.safetensors"}],
    }  # fmt: skip
    links = desired_links(comfy, tmp_path / "lib", "checkpoint/sdxl/sdxl-turbo", record)
    assert [(lk.link_path, lk.target, lk.is_dir) for lk in links] == [
        (
            tmp_path / "ComfyUI/models/diffusers/sdxl-turbo",
            tmp_path / "lib/checkpoint/sdxl/sdxl-turbo/sdxl-turbo",
            True,
        )
    ]
    a1111 = AppTarget("forge", "a1111", tmp_path / "webui")
    assert desired_links(a1111, tmp_path / "lib", "checkpoint/sdxl/sdxl-turbo", record) == []


def test_gguf_folder_bundle_links_its_gguf_files_and_mmproj_together(tmp_path: Path) -> None:
    lms = AppTarget("lms", "lmstudio", tmp_path / "lms")
    record = {
        "model_type": "llm", "repo_id": "Qwen/Qwen2-VL-2B-Instruct-GGUF",
        "bundle": {"kind": "gguf-folder", "root": "qwen2-vl"},
        "files": [{"name": "Qwen2-VL-2B-Instruct-Q4_K_M.gguf"},
                  {"name": "mmproj-Qwen2-VL-2B-Instruct-f16.gguf"}, {"name": "README.md"}],
    }  # fmt: skip
    links = desired_links(lms, tmp_path / "lib", "llm/qwen/qwen2-vl", record)
    folder = tmp_path / "lms/Qwen/Qwen2-VL-2B-Instruct-GGUF"
    assert [lk.link_path for lk in links] == [
        folder / "Qwen2-VL-2B-Instruct-Q4_K_M.gguf",
        folder / "mmproj-Qwen2-VL-2B-Instruct-f16.gguf",
    ]


def test_lmstudio_folder_names_are_sanitised(tmp_path: Path) -> None:
    assert lmstudio_folder("llm/x/y", {"repo_id": "../..", "embedded_repos": ["a/b"]}) == (
        "a", "b",
    )  # fmt: skip
    assert lmstudio_folder("llm/x/my-model", {"repo_id": None}) == ("local", "my-model")


def test_a_generic_file_name_is_linked_by_its_model_name(tmp_path: Path) -> None:
    comfy = AppTarget("comfy", "comfyui", tmp_path / "ComfyUI")
    record = {"model_type": "vae", "files": [{"name": "diffusion_pytorch_model.safetensors"}]}
    [link] = desired_links(comfy, tmp_path / "lib", "vae/sdxl/sdxl-vae-fp16-fix", record)
    assert link.link_path.name == "sdxl-vae-fp16-fix.safetensors"


def _import(lib: Path, files: list[Path]) -> list[str]:
    opened = open_library(lib)
    plan = plan_import(files, opened.library, opened.db, ImportOptions())
    results = execute_plan(plan, opened.library, opened.db, ImportOptions())
    return [r.model_id for r in results if r.status == "imported"]


def test_relink_moves_links_to_a_models_new_id_and_check_reports_problems(
    tmp_path: Path,
) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    add_target(AppTarget("comfy", "comfyui", comfy))
    lib = tmp_path / "lib"
    [model_id] = _import(lib, [models.sdxl_lora(tmp_path / "src" / "add-detail-xl.safetensors")])
    opened = open_library(lib)
    link = comfy / "models/loras/add-detail-xl.safetensors"
    assert check_links(opened.library, opened.db) == []

    # What `edit` does when it renames a model: move the folder, re-index, relink.
    new_id = "lora/sdxl/detail-tweaker"
    os.rename(lib / model_id, lib / new_id)
    record = opened.library.read_metadata(new_id)
    index.delete_model(opened.db, model_id)
    index.upsert_model(opened.db, new_id, record)
    problems = check_links(opened.library, opened.db)
    assert problems == [f"Link {link} for {new_id} in comfy is broken."]
    changes = relink_model(opened.library, opened.db, model_id, new_id)
    assert [c.action for c in changes] == ["removed", "created"]
    assert_relative_link_to(link, lib / new_id / "add-detail-xl.safetensors")
    assert [r["model_id"] for r in index.links(opened.db)] == [new_id]
    assert check_links(opened.library, opened.db) == []

    assert [c.action for c in unlink_model(opened.library, opened.db, new_id)] == ["removed"]
    assert not os.path.lexists(link) and index.links(opened.db) == []
    assert link_new_models(opened.library, opened.db, []).changes == []
