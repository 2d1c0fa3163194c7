"""Sharded sets: the seed's three patterns, llama.cpp splits and index files, with completeness."""

from __future__ import annotations

import json
from pathlib import Path

from factories import make_sharded_safetensors

from modelimport.readers.shard_names import parse_shard_name
from modelimport.readers.shards import group_files


def _touch(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        (folder / name).write_bytes(b"x")
        paths.append(folder / name)
    return paths


def test_parse_patterns():
    assert parse_shard_name("model-00001-of-00005.safetensors").total == 5
    assert parse_shard_name("pytorch_model-00002-of-00003.bin").number == 2
    assert parse_shard_name("llama-3-70b-Q4_K_M-00003-of-00004.gguf").base == "llama-3-70b-Q4_K_M"
    part = parse_shard_name("model.safetensors.part3")
    assert (part.base, part.ext, part.number, part.total) == ("model", ".safetensors", 3, None)
    assert parse_shard_name("model.safetensors") is None


def test_complete_set_with_index_is_one_model(tmp_path: Path):
    files = make_sharded_safetensors(tmp_path, total=3)
    [group] = group_files(files)
    assert group.is_sharded and group.complete
    assert [p.name for p in group.files] == [p.name for p in files[:3]]
    assert group.index_file == files[3]
    assert group.shard_numbers == (1, 2, 3) and group.shard_total == 3


def test_index_names_shards_that_are_missing(tmp_path: Path):
    files = make_sharded_safetensors(tmp_path, total=3)
    files[2].unlink()
    [group] = group_files([files[0], files[1], files[3]])
    assert not group.complete
    assert group.missing == ("model-00003-of-00003.safetensors",)


def test_index_alone_is_an_empty_incomplete_set(tmp_path: Path):
    files = make_sharded_safetensors(tmp_path, total=2)
    [group] = group_files([files[2]])
    assert group.files == () and not group.complete
    assert set(group.missing) == {p.name for p in files[:2]}


def test_inconsistent_totals_are_a_problem(tmp_path: Path):
    paths = _touch(tmp_path, "m-00001-of-00002.gguf", "m-00002-of-00003.gguf")
    [group] = group_files(paths)
    assert not group.complete
    assert any("disagree" in p for p in group.problems)


def test_part_files_without_total_need_no_gaps(tmp_path: Path):
    paths = _touch(tmp_path, "x.safetensors.part1", "x.safetensors.part3")
    [group] = group_files(paths)
    assert group.missing == ("x.safetensors.part2",)
    complete = _touch(tmp_path / "ok", "y.gguf.part1", "y.gguf.part2")
    [group] = group_files(complete)
    assert group.complete and group.shard_total == 2


def test_same_names_in_two_folders_are_two_sets(tmp_path: Path):
    a = make_sharded_safetensors(tmp_path / "a", total=2)
    b = make_sharded_safetensors(tmp_path / "b", total=2)
    groups = group_files(a + b)
    assert len(groups) == 2 and all(g.complete for g in groups)
    assert {g.index_file.parent.name for g in groups} == {"a", "b"}


def test_unreadable_index_is_a_problem(tmp_path: Path):
    files = make_sharded_safetensors(tmp_path, total=2)
    files[2].write_text(json.dumps({"no": "weight map"}))
    [group] = group_files(files)
    assert not group.complete
    assert "no weight_map" in group.describe_incomplete()


def test_a_set_is_named_by_its_base_name_not_its_first_shard(tmp_path: Path):
    files = make_sharded_safetensors(tmp_path / "hf", total=3)
    [group] = group_files(files[1:])  # shard 1 missing: the name does not depend on it
    assert group.set_name == "model.safetensors"
    gguf = _touch(tmp_path / "gg", "llama-3-70b-Q4_K_M-00002-of-00004.gguf")
    assert group_files(gguf)[0].set_name == "llama-3-70b-Q4_K_M.gguf"
    [index_only] = group_files([files[-1]])
    assert index_only.set_name == "model.safetensors"
    single = _touch(tmp_path / "one", "x.safetensors")
    assert group_files(single)[0].set_name == "x.safetensors"


def test_shards_command_counts_shards_without_the_index(tmp_path: Path):
    from cli import run_cli_here as run_cli  # in this process (tests/cli.py)

    files = make_sharded_safetensors(tmp_path / "hf", total=3)
    files[1].unlink()
    run = run_cli("shards", tmp_path / "hf", "--json")
    [group] = run.json["sets"]
    assert (group["name"], group["shards_present"], group["shard_total"]) == (
        "model.safetensors", 2, 3,
    )
    assert group["index_file"] == "model.safetensors.index.json"
    assert "2 of 3" in run_cli("shards", tmp_path / "hf").stdout


def test_a_set_keeps_the_shard_names_its_index_lists(tmp_path: Path):
    """`My Model-00001-of-00002.safetensors`: the index json names each shard; a renamed
    shard (spaces made dashes) would leave the set unloadable."""
    from cli import run_cli_here as run_cli  # in this process (tests/cli.py)

    make_sharded_safetensors(tmp_path / "dl", total=2, stem="My Model")
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes", "--json",
                  "--offline")  # fmt: skip
    [result] = run.json["results"]
    model = tmp_path / "lib" / result["model_id"]
    index = json.loads((model / "My Model.safetensors.index.json").read_text())
    assert all((model / shard).is_file() for shard in set(index["weight_map"].values()))


def test_shards_finds_an_incomplete_set_inside_a_hugging_face_folder(tmp_path: Path):
    """Issue 20, point 5: a folder with config.json, shards 1 and 3 of 3 and the index json
    was 'No sharded sets found.' (exit 0) while `import` refused it as incomplete."""
    from cli import run_cli

    folder = tmp_path / "Llama-3-8B"
    files = make_sharded_safetensors(folder, total=3)
    files[1].unlink()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    )
    run = run_cli("shards", folder, "--json")
    assert run.code == 1, run.stdout
    [group] = run.json["sets"]
    assert (group["shards_present"], group["shard_total"], group["complete"]) == (2, 3, False)
    assert group["missing"] == ["model-00002-of-00003.safetensors"]
    human = run_cli("shards", tmp_path)
    assert human.code == 1 and "2 of 3" in human.stdout, human.stdout
    imported = run_cli("--library", tmp_path / "lib", "import", folder, "--yes", "--offline")
    assert imported.code == 1 and "incomplete sharded set" in imported.stdout + imported.stderr
