"""`list --search` and its path column, `edit`, `mark-manual --undo`, `retry-pending
--offline`, and model ids completing in the shell: real imports into a real library."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cli import CONSOLE_SCRIPT, cli_env, library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf, make_safetensors


def _import(lib: Path, *paths: Path) -> list[dict]:
    run = run_cli("--library", lib, "import", *paths, "--yes", "--json")
    assert run.code == 0, run.stderr
    return run.json["results"]


def test_list_search_matches_name_file_name_repo_and_tag_and_shows_paths(tmp_path: Path):
    lib = tmp_path / "lib"
    llama = make_gguf(tmp_path / "dl" / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf",
                      name="Meta Llama 3 8B Instruct", kv={"general.file_type": 15})
    other = make_safetensors(tmp_path / "dl" / "StyleThing_v2.safetensors", fill=b"\x09")
    [first, second] = _import(lib, llama, other)
    assert run_cli("--library", lib, "edit", second["model_id"], "--tag", "Anime").code == 0

    def ids(text: str) -> list[str]:
        run = run_cli("--library", lib, "list", "--search", text, "--json")
        assert run.code == 0, run.stderr
        return [m["model_id"] for m in run.json["models"]]

    assert ids("LLAMA-3") == [first["model_id"]]  # name, ignoring case
    assert ids("q4_k_m.gguf") == [first["model_id"]]  # file name
    assert ids("anime") == [second["model_id"]]  # tag
    assert ids("100%_sure") == []  # % and _ are literal, not wildcards
    listed = run_cli("--library", lib, "list", "--json").json["models"]
    assert {m["path"] for m in listed} == {str(lib.resolve() / m["model_id"]) for m in listed}
    plain = run_cli("--library", lib, "list", "--search", "llama")
    header, row = plain.stdout.splitlines()[1:3]
    assert header.split()[-1] == "path" and row.endswith(str(lib.resolve() / first["model_id"]))


def test_edit_moves_the_model_when_its_id_changes_and_marks_it_manual(tmp_path: Path):
    lib = tmp_path / "lib"
    source = make_safetensors(tmp_path / "dl" / "mystery.safetensors")
    [result] = _import(lib, source)
    old_id = result["model_id"]
    run = run_cli("--library", lib, "edit", old_id, "--type", "LoRA", "--family", "sdxl",
                  "--name", "My Style", "--tag", "style", "--tag", "mine", "--notes", "n", "--json")
    assert run.code == 0, run.stderr
    new_id = run.json["model_id"]
    assert new_id == "lora/sdxl/my-style" and run.json["previous_model_id"] == old_id
    assert not (lib / old_id).exists()
    meta = json.loads((lib / new_id / "metadata.json").read_text())
    assert meta["model_id"] == new_id and meta["match_source"] == "manual"
    names = (meta["model_type"], meta["family"], meta["cleaned_name"])
    assert names == ("lora", "sdxl", "My Style")
    assert meta["tags"] == ["style", "mine"] and meta["notes"] == "n"
    assert meta["field_sources"]["family"] == "user"
    assert (lib / new_id / meta["files"][0]["name"]).stat().st_size == source.stat().st_size
    listed = run_cli("--library", lib, "list", "--json").json["models"]
    assert [m["model_id"] for m in listed] == [new_id]
    # The index was updated in place, not just rebuilt: a rescan finds the same.
    assert run_cli("--library", lib, "rescan").code == 0
    assert [m["model_id"] for m in run_cli("--library", lib, "list", "--json").json["models"]] \
        == [new_id]
    # Re-importing the source is a duplicate of the moved model.
    again = run_cli("--library", lib, "import", source, "--yes", "--json").json["results"][0]
    assert again["status"] == "duplicate" and again["model_id"] == new_id


def test_edit_of_a_gguf_folder_keeps_its_quantisation_in_its_id(tmp_path: Path):
    """A GGUF folder's record lists its README first; its slug still takes the GGUF's
    quantisation, as the import's does (`id_for_record` reads the weights' format)."""
    lib = tmp_path / "lib"
    folder = tmp_path / "dl" / "Foo-VL-7B-GGUF"
    make_gguf(folder / "foo-vl-7b.gguf", arch="foovl", name="Foo VL 7B", quant="Q8_0",
              tensors={"token_embd.weight": [64, 64]})
    make_gguf(folder / "mmproj-foo-vl-7b-f16.gguf", arch="clip", name="projector")
    (folder / "README.md").write_text("# Foo VL 7B\n")
    [result] = _import(lib, folder)
    assert result["model_id"] == "llm/unknown/foo-vl-7b-q8_0"
    run = run_cli("--library", lib, "edit", result["model_id"], "--family", "qwen", "--json")
    assert run.code == 0, run.stderr
    assert run.json["model_id"] == "llm/qwen/foo-vl-7b-q8_0"


def test_edit_never_moves_a_model_over_another(tmp_path: Path):
    lib = tmp_path / "lib"
    a = make_safetensors(tmp_path / "dl" / "alpha.safetensors", fill=b"\x01")
    b = make_safetensors(tmp_path / "dl" / "beta.safetensors", fill=b"\x02")
    [ra, rb] = _import(lib, a, b)
    run = run_cli("--library", lib, "edit", rb["model_id"], "--name", "alpha", "--json")
    assert run.code == 0, run.stderr
    assert run.json["model_id"] == ra["model_id"] + "-2"
    assert len([p for p in library_files(lib) if p.name == "metadata.json"]) == 2


def test_edit_of_an_unknown_model_or_with_nothing_to_change_is_one_sentence(tmp_path: Path):
    lib = tmp_path / "lib"
    [r] = _import(lib, make_safetensors(tmp_path / "dl" / "m.safetensors"))
    nothing = run_cli("--library", lib, "edit", r["model_id"])
    assert nothing.code == 2 and "Nothing to change" in nothing.stderr
    missing = run_cli("--library", lib, "edit", "lora/sdxl/nope", "--notes", "x")
    assert missing.code != 0 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_family = run_cli("--library", lib, "edit", r["model_id"], "--family", " ")
    assert bad_family.code == 2 and "cannot be empty" in bad_family.stderr


def test_mark_manual_and_undo(tmp_path: Path):
    lib = tmp_path / "lib"
    [r] = _import(lib, make_safetensors(tmp_path / "dl" / "m.safetensors"))
    meta_path = lib / r["model_id"] / "metadata.json"
    assert run_cli("--library", lib, "mark-manual", r["model_id"]).code == 0
    assert json.loads(meta_path.read_text())["match_source"] == "manual"
    # Not pending for list, and show agrees: a person's record, not a lookup waiting.
    shown = run_cli("--library", lib, "show", r["model_id"]).stdout
    assert "trust: manual" in shown and "lookup pending" not in shown, shown
    undo = run_cli("--library", lib, "mark-manual", r["model_id"], "--undo", "--json")
    assert undo.code == 0 and undo.json["results"][0]["status"] == "unmarked"
    assert json.loads(meta_path.read_text())["match_source"] == "auto"
    # A model marked manual is not pending; undone, it is pending again (imported offline).
    assert [m["model_id"] for m in
            run_cli("--library", lib, "list", "--pending", "--json").json["models"]] \
        == [r["model_id"]]


def test_retry_pending_offline_is_a_no_op_that_says_so(tmp_path: Path):
    lib = tmp_path / "lib"
    [r] = _import(lib, make_safetensors(tmp_path / "dl" / "m.safetensors"))
    before = (lib / r["model_id"] / "metadata.json").read_text()
    run = run_cli("--library", lib, "retry-pending", "--offline")
    assert run.code == 0, run.stderr
    assert "Offline: nothing looked up; 1 model(s) still pending" in run.stdout
    assert (lib / r["model_id"] / "metadata.json").read_text() == before


def test_model_ids_complete_in_the_shell(tmp_path: Path):
    lib = tmp_path / "lib"
    [r] = _import(lib, make_safetensors(tmp_path / "dl" / "completion-me.safetensors"))
    prefix = r["model_id"][: r["model_id"].index("/") + 1]
    for command in ("edit", "mark-manual", "show", "remove", "verify"):
        env = cli_env({
            "_MODELIMPORT_COMPLETE": "complete_bash",
            "COMP_WORDS": f"modelimport --library {lib} {command} {prefix}",
            "COMP_CWORD": "4",
        })
        out = subprocess.run([CONSOLE_SCRIPT], capture_output=True, text=True, env=env)
        assert out.stdout.split() == [r["model_id"]], (command, out.stdout, out.stderr)


def test_edit_takes_only_known_types_and_one_word_families_and_can_undo_to_unknown(
    tmp_path: Path,
):
    """A type is one the tool files by; a family one word (never a path); and a person may
    set either back to unknown, which moves the model there (it used to change nothing)."""
    lib = tmp_path / "lib"
    [r] = _import(lib, make_gguf(tmp_path / "dl" / "Mistral-7B-Q4_K_M.gguf", name="Mistral",
                                 kv={"general.file_type": 15}))
    for option, value in (("--type", "not a type"), ("--type", "../../etc"),
                          ("--family", "../../etc"), ("--family", "a/b")):
        bad = run_cli("--library", lib, "edit", r["model_id"], option, value)
        assert bad.code == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert run_cli("--library", lib, "list", "--json").json["models"][0]["model_id"] == (
        r["model_id"])
    undone = run_cli("--library", lib, "edit", r["model_id"], "--family", "unknown", "--json")
    assert undone.code == 0, undone.stderr
    assert undone.json["model_id"].startswith("llm/unknown/")
    assert (lib / undone.json["model_id"] / "metadata.json").is_file()


def test_list_type_takes_an_apps_folder_name_and_refuses_an_unknown_type(tmp_path: Path):
    """Issue 20, point 8: `list --type loras` (ComfyUI's folder name) showed 0 models."""
    lib = tmp_path / "lib"
    lora = make_safetensors(tmp_path / "dl" / "detail.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4]),
    })
    gguf = make_gguf(tmp_path / "dl" / "tiny-Q8_0.gguf", kv={"general.file_type": 7})
    [first, second] = _import(lib, lora, gguf)
    by_type = {r["model_type"]: r["model_id"] for r in (first, second)}
    for name in ("lora", "loras", "Lora", "LORA"):
        run = run_cli("--library", lib, "list", "--type", name, "--json")
        assert [m["model_id"] for m in run.json["models"]] == [by_type["lora"]], name
    run = run_cli("--library", lib, "list", "--type", "lorax")
    assert run.code == 2
    assert "No model type is called 'lorax'; the types are" in run.stderr
    assert "lora" in run.stderr and "llm" in run.stderr
