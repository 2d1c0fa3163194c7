"""The import pipeline through the real CLI, on real model files in temporary folders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf, make_safetensors, make_sharded_safetensors


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """The issue's folder: 3 importable models and 3 files that are not."""
    folder = tmp_path / "dl"
    make_safetensors(folder / "one.safetensors", {"w": ("F16", [16, 16])}, fill=b"\x01\x02")
    make_gguf(folder / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", name="Meta Llama 3 8B Instruct")
    make_sharded_safetensors(folder / "big")
    (folder / "notes.txt").write_text("just notes")
    (folder / "model.safetensors").write_text("<!DOCTYPE html><html><body>404</body></html>")
    (folder / "x.bin").write_bytes(b"")
    return folder


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _b3sum(path: Path) -> str:
    out = subprocess.run(["b3sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def test_mixed_folder_imports_three_models_and_rejects_two(tmp_path: Path, mixed_folder: Path):
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", mixed_folder, "--yes", "--json")

    assert run.code == 1, run.stderr
    report = run.json
    by_status: dict[str, list[dict]] = {}
    for r in report["results"]:
        by_status.setdefault(r["status"], []).append(r)
    assert len(by_status["imported"]) == 3
    rejected = {Path(r["sources"][0]).name: r["error"] for r in by_status["rejected"]}
    assert set(rejected) == {"model.safetensors", "x.bin"}
    assert "empty" in rejected["x.bin"]
    assert rejected["model.safetensors"].startswith("model.safetensors ")
    assert [Path(r["sources"][0]).name for r in by_status["skipped"]] == ["notes.txt"]
    assert report["summary"]["imported"] == 3 and report["summary"]["rejected"] == 2

    sharded = [r for r in by_status["imported"] if len(r["sources"]) > 1]
    assert len(sharded) == 1 and len(sharded[0]["files"]) == 4
    model_dir = lib / sharded[0]["model_id"]
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        [*(Path(s).name for s in sharded[0]["sources"]), "metadata.json"]
    )


def _imported_files(lib: Path, mixed_folder: Path) -> list[tuple[dict, Path, Path]]:
    """(metadata entry, source, library copy) of every file the import of `mixed_folder` took."""
    report = run_cli("--library", lib, "import", mixed_folder, "--yes", "--json").json
    files = []
    for result in report["results"]:
        if result["status"] != "imported":
            continue
        meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
        assert meta["model_id"] == result["model_id"]
        sources = {Path(s).name: Path(s) for s in result["sources"]}
        folder = lib / meta["model_id"]
        for entry in meta["files"]:
            files.append((entry, sources[entry["original_name"]], folder / entry["name"]))
    assert len(files) == 6  # 1 safetensors + 1 gguf + 3 shards + index json
    return files


def test_metadata_hashes_equal_sha256sum(tmp_path: Path, mixed_folder: Path):
    for entry, source, copy in _imported_files(tmp_path / "lib", mixed_folder):
        assert entry["sha256"] == _sha256sum(source)
        assert entry["size"] == source.stat().st_size
        assert _sha256sum(copy) == entry["sha256"]


def test_metadata_hashes_equal_b3sum(tmp_path: Path, mixed_folder: Path):
    if shutil.which("b3sum") is None:  # only this check needs it; sha256sum's runs anyway
        pytest.skip("b3sum is not installed (apt-get install b3sum)")
    for entry, source, copy in _imported_files(tmp_path / "lib", mixed_folder):
        assert entry["blake3"] == _b3sum(source) == _b3sum(copy)


def test_second_import_is_all_duplicates_and_copies_nothing(tmp_path: Path, mixed_folder: Path):
    lib = tmp_path / "lib"
    for bad in ("notes.txt", "model.safetensors", "x.bin"):
        (mixed_folder / bad).unlink()
    first = run_cli("--library", lib, "import", mixed_folder, "--yes", "--json")
    assert first.code == 0, first.stderr
    before = {p: p.stat().st_mtime_ns for p in library_files(lib)}

    again = run_cli("--library", lib, "import", mixed_folder, "--yes", "--json")

    assert again.code == 0, again.stderr
    statuses = [r["status"] for r in again.json["results"]]
    assert statuses == ["duplicate"] * 3
    first_ids = {r["model_id"] for r in first.json["results"]}
    assert {r["model_id"] for r in again.json["results"]} == first_ids
    assert {p: p.stat().st_mtime_ns for p in library_files(lib)} == before
    assert list((lib / ".modelimport" / "staging").iterdir()) == []


def test_without_yes_and_without_terminal_exits_2_and_asks_for_yes(tmp_path: Path):
    model = make_safetensors(tmp_path / "a.safetensors")
    run = run_cli("--library", tmp_path / "lib", "import", model)
    assert run.code == 2
    assert "--yes" in run.stderr
    assert "Traceback" not in run.stderr


def test_named_files_that_cannot_be_imported_fail_with_one_sentence(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hello")
    html = tmp_path / "model.safetensors"
    html.write_text("<html></html>")
    run = run_cli(
        "--library",
        tmp_path / "lib",
        "import",
        tmp_path / "readme.txt",
        html,
        tmp_path / "missing.gguf",
        "--yes",
        "--json",
    )
    assert run.code == 1
    errors = {Path(r["sources"][0]).name: (r["status"], r["error"]) for r in run.json["results"]}
    assert errors["readme.txt"][0] == "rejected" and "unsupported" in errors["readme.txt"][1]
    assert errors["model.safetensors"][0] == "rejected"
    assert errors["missing.gguf"] == ("failed", f"{tmp_path / 'missing.gguf'} does not exist.")
    assert "Traceback" not in run.stderr
    assert library_files(tmp_path / "lib") == []


def test_walk_survives_fifos_sockets_and_symlink_loops(tmp_path: Path):
    folder = tmp_path / "odd"
    make_safetensors(folder / "real.safetensors")
    os.mkfifo(folder / "pipe.safetensors")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.gguf"))
    (folder / "loop").symlink_to(folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "back").symlink_to(folder)
    (folder / "dangling.gguf").symlink_to(folder / "nowhere")
    try:
        run = run_cli(
            "--library", tmp_path / "lib", "import", folder, "--yes", "--json", timeout=60
        )
    finally:
        sock.close()
    assert run.code == 0, run.stderr
    imported = [r for r in run.json["results"] if r["status"] == "imported"]
    assert len(imported) == 1
    skipped = {Path(r["sources"][0]).name for r in run.json["results"] if r["status"] == "skipped"}
    assert {"pipe.safetensors", "sock.gguf", "dangling.gguf"} <= skipped


def test_incomplete_set_is_refused_unless_allowed(tmp_path: Path):
    folder = tmp_path / "set"
    files = make_sharded_safetensors(folder, total=3)
    files[1].unlink()
    lib = tmp_path / "lib"

    refused = run_cli("--library", lib, "import", folder, "--yes", "--json")
    assert refused.code == 1
    [result] = refused.json["results"]
    assert result["status"] == "rejected"
    assert "model-00002-of-00003.safetensors" in result["error"]
    assert "--allow-incomplete" in result["error"]

    allowed = run_cli("--library", lib, "import", folder, "--yes", "--json", "--allow-incomplete")
    assert allowed.code == 0, allowed.stderr
    [result] = allowed.json["results"]
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert meta["incomplete_set"] is True
    assert meta["missing_shards"] == ["model-00002-of-00003.safetensors"]
    status = run_cli("--library", lib, "status", "--json").json
    assert status["incomplete_sets"] == 1


def test_same_name_different_content_gets_a_unique_slug(tmp_path: Path):
    a = make_safetensors(tmp_path / "a" / "anime-mix.safetensors", fill=b"\x01")
    b = make_safetensors(tmp_path / "b" / "anime-mix.safetensors", fill=b"\x02")
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", a, b, "--yes", "--json")
    assert run.code == 0, run.stderr
    ids = [r["model_id"] for r in run.json["results"]]
    assert len(set(ids)) == 2
    assert ids[1] == ids[0] + "-2"


def test_move_on_same_filesystem_renames_and_keeps_hashes(tmp_path: Path):
    source = make_safetensors(tmp_path / "m.safetensors", {"w": ("F32", [64, 64])}, fill=b"\x07")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    inode = source.stat().st_ino
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", source, "--move", "--yes", "--json")
    assert run.code == 0, run.stderr
    assert not source.exists()
    [result] = run.json["results"]
    moved = lib / result["model_id"] / "m.safetensors"
    assert moved.stat().st_ino == inode  # renamed, not copied
    assert result["files"][0]["sha256"] == digest


def test_status_reports_library_counts(tmp_path: Path, mixed_folder: Path):
    lib = tmp_path / "lib"
    run_cli("--library", lib, "import", mixed_folder, "--yes", "--json")
    status = run_cli("--library", lib, "status", "--json")
    assert status.code == 0
    data = status.json
    assert data["library"] == str(lib)
    assert data["models"] == 3
    assert data["pending_lookups"] == 3  # offline: every lookup is pending
    expected = sum(p.stat().st_size for p in library_files(lib) if p.name != "metadata.json")
    assert data["total_bytes"] == expected
    assert data["rescan"] is None
    human = run_cli("--library", lib, "status")
    assert "Models: 3" in human.stdout


def test_library_from_environment_variable(tmp_path: Path):
    model = make_safetensors(tmp_path / "a.safetensors")
    lib = tmp_path / "envlib"
    run = run_cli("import", model, "--yes", "--json", env={"MODELIMPORT_LIBRARY": str(lib)})
    assert run.code == 0, run.stderr
    assert (lib / run.json["results"][0]["model_id"] / "metadata.json").is_file()


def test_mark_manual_updates_metadata_and_index(tmp_path: Path):
    model = make_safetensors(tmp_path / "a.safetensors")
    lib = tmp_path / "lib"
    model_id = run_cli("--library", lib, "import", model, "-y", "--json").json["results"][0][
        "model_id"
    ]
    run = run_cli("--library", lib, "mark-manual", model_id)
    assert run.code == 0, run.stderr
    assert json.loads((lib / model_id / "metadata.json").read_text())["match_source"] == "manual"
    with sqlite3.connect(lib / ".modelimport" / "index.sqlite") as db:
        row = db.execute("SELECT match_source FROM models WHERE model_id = ?", (model_id,))
        assert row.fetchone()[0] == "manual"
    assert run_cli("--library", lib, "status", "--json").json["manual_records"] == 1

    bad = run_cli("--library", lib, "mark-manual", "llm/none/nothing", "../../etc")
    assert bad.code == 1
    assert "Traceback" not in bad.stderr


def test_a_deleted_index_is_rebuilt(tmp_path: Path, mixed_folder: Path):
    lib = tmp_path / "lib"
    run_cli("--library", lib, "import", mixed_folder, "--yes", "--json")
    for f in (lib / ".modelimport").glob("index.sqlite*"):
        f.unlink()
    status = run_cli("--library", lib, "status", "--json")  # any command rebuilds it first
    assert status.json["models"] == 3 and "The index was missing" in status.stderr
    for f in (lib / ".modelimport").glob("index.sqlite*"):
        f.unlink()
    run = run_cli("--library", lib, "rescan", "--json")
    assert run.code == 0, run.stderr
    assert run.json["models"] == 3
    assert run_cli("--library", lib, "status", "--json").json["models"] == 3


def test_shards_command_groups_and_reports_missing(tmp_path: Path):
    folder = tmp_path / "gg"
    for i in (1, 2, 4):
        make_gguf(folder / f"llama-3-70b-Q4_K_M-{i:05d}-of-00004.gguf")
    run = run_cli("shards", folder, "--json")
    assert run.code == 1
    [group] = run.json["sets"]
    assert group["complete"] is False
    assert group["missing"] == ["llama-3-70b-Q4_K_M-00003-of-00004.gguf"]


def test_bad_library_path_is_one_sentence(tmp_path: Path):
    model = make_safetensors(tmp_path / "a.safetensors")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    run = run_cli("--library", not_a_dir, "import", model, "--yes")
    assert run.code == 1
    assert "Traceback" not in run.stderr
    assert "not a folder" in run.stderr


def test_reimport_of_unchanged_source_is_recognised_without_reading_it(tmp_path: Path):
    source = make_safetensors(tmp_path / "m.safetensors", {"w": ("F32", [256, 256])})
    lib = tmp_path / "lib"
    assert run_cli("--library", lib, "import", source, "--yes").code == 0
    # Any whole-file read would now kill the process (fault injection), so a duplicate
    # verdict proves the unchanged path+size+mtime and fast hash were enough.
    no_reads = {"MODELIMPORT_FAULTS": "read.bytes>=1:crash"}
    again = run_cli("--library", lib, "import", source, "--yes", "--json", env=no_reads)
    assert again.code == 0, again.stderr
    assert again.json["results"][0]["status"] == "duplicate"

    os.utime(source, ns=(1, 1))  # touched: the content must be confirmed by reading it
    assert run_cli("--library", lib, "import", source, "--yes", env=no_reads).code == 70
    confirmed = run_cli("--library", lib, "import", source, "--yes", "--json")
    assert confirmed.json["results"][0]["status"] == "duplicate"


def test_list_filters_models(tmp_path: Path, mixed_folder: Path):
    lib = tmp_path / "lib"
    run_cli("--library", lib, "import", mixed_folder, "--yes")
    everything = run_cli("--library", lib, "list", "--json")
    assert everything.code == 0, everything.stderr
    assert len(everything.json["models"]) == 3
    llms = run_cli("--library", lib, "list", "--type", "llm", "--json").json["models"]
    assert [m["model_type"] for m in llms] == ["llm"]
    assert run_cli("--library", lib, "list", "--type", "LLM", "--json").json["models"] == llms
    pending = run_cli("--library", lib, "list", "--pending", "--json").json["models"]
    assert len(pending) == 3
    assert all(m["pending_online_lookup"] is True for m in pending)
    assert {m["is_sharded_set"] for m in pending} == {True, False}
    human = run_cli("--library", lib, "list")
    assert "3 model(s)" in human.stdout and llms[0]["model_id"] in human.stdout
    # In a pipe, one line per model, the id whole at its start (ready for mark-manual).
    lines = human.stdout.splitlines()
    assert any(line.startswith(llms[0]["model_id"] + " ") for line in lines), lines


def test_safetensors_with_a_1152_byte_header_is_imported(tmp_path: Path):
    # 1152 = 0x0480: the file starts 80 04, which is also how a protocol-4 pickle starts.
    tensors = {f"encoder.layers.{i}.self_attn.q_proj.weight": ("F16", [8, 8]) for i in range(6)}
    path = make_safetensors(tmp_path / "dl" / "clip_l.safetensors", tensors, header_size=1152)
    assert path.read_bytes()[:2] == b"\x80\x04"
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json")
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "imported", result
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert meta["files"][0]["format"] == "safetensors"
    assert meta["files"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_relative_paths_are_recorded_absolute_and_work_from_any_folder(
    tmp_path: Path, fake_hub, fake_hub_env: dict[str, str]
):
    dl = tmp_path / "dl"
    model = make_safetensors(dl / "Qwen2-7B-Instruct" / "model.safetensors", {"w": ("F16", [8, 8])})
    shards = make_sharded_safetensors(dl / "set", total=2)
    work = dl / "Qwen2-7B-Instruct" / "work"  # the folder the person is in
    local = make_safetensors(work / "local.safetensors", {"v": ("F32", [4, 4])})
    spare = make_safetensors(dl / "spare.safetensors", {"u": ("F32", [2, 2])})
    lib = tmp_path / "lib"

    run = run_cli("--library", "../../../lib", "import", "../model.safetensors", "../../set",
                  "./local.safetensors", "--offline", "--yes", "--json", cwd=work)
    assert run.code == 0, run.stderr
    assert "/.." not in run.stdout and "/./" not in run.stdout
    sources = {r["model_id"]: r["sources"] for r in run.json["results"]}
    assert sorted(sources.values()) == sorted(
        [[str(model)], [str(p) for p in shards], [str(local)]]
    )
    for model_id, paths in sources.items():
        record = json.loads((lib / model_id / "metadata.json").read_text())
        assert [s["path"] for s in record["sources"]] == paths

    run = run_cli("--library", lib, "import", "../../spare.safetensors", "--delete-originals",
                  "--yes", "--json", cwd=work)
    assert run.code == 0, run.stderr
    assert run.json["results"][0]["sources"] == [str(spare)] and not spare.exists()

    # From another folder: the records still name the files, and retry-pending asks the Hub
    # about the folder the model came from (not "..").
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {"model.safetensors": model.read_bytes()})
    assert run_cli("--library", lib, "check", cwd=elsewhere).code == 0
    run = run_cli("--library", lib, "retry-pending", "--json", env=fake_hub_env, cwd=elsewhere)
    [enriched] = [r for r in run.json["results"] if r["repo_id"]]
    assert (enriched["repo_id"], enriched["trust_level"]) == ("Qwen/Qwen2-7B-Instruct", "verified")

    # lookup and shards report the same absolute paths.
    run = run_cli("lookup", "../model.safetensors", "--offline", "--json", cwd=work)
    assert run.json["results"][0]["path"] == str(model)
    run = run_cli("shards", "../../set", "--json", cwd=work)
    assert run.json["sets"][0]["folder"] == str(dl / "set"), run.stdout


def test_absolute_path_settles_dotdot_after_a_link_as_the_kernel_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from modelimport.cli.options import absolute_path

    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    (tmp_path / "real" / "m.safetensors").write_bytes(b"x")
    (tmp_path / "m.safetensors").symlink_to(tmp_path / "real" / "m.safetensors")
    # link/.. is real/, not tmp_path: a lexical normpath would name another file.
    assert absolute_path(tmp_path / "link" / ".." / "m.safetensors") == (
        tmp_path / "real" / "m.safetensors"
    )
    # The last component stays as given, even a link (the import never moves a link).
    assert absolute_path(tmp_path / "link" / ".." / ".." / "m.safetensors") == (
        tmp_path / "m.safetensors"
    )
    monkeypatch.chdir(tmp_path / "real")
    assert absolute_path(Path("./m.safetensors")) == tmp_path / "real" / "m.safetensors"
