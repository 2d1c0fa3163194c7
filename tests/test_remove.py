"""`remove` and `show`: a model's files, metadata, index rows and app links go, nothing else
(issue 10, Must show 4); a crash mid-removal never leaves half a model listed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import app_models as models
import pytest
from app_models import assert_relative_link_to, tree
from cli import cli_env, library_files
from cli import run_cli as run_cli_process
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    return tmp_path / "lib"


def mi(lib: Path, *args: str | Path, **kw):
    return run_cli("--library", lib, *args, **kw)


def rows_of(lib: Path, model_id: str) -> dict[str, int]:
    with sqlite3.connect(lib / ".modelimport" / "index.sqlite") as db:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table} WHERE model_id = ?", (model_id,))
            .fetchone()[0]
            for table in ("models", "files", "links")
        }


@pytest.fixture
def split_library(tmp_path: Path, lib: Path) -> dict:
    """A library with a 3-shard GGUF set and a second model, both linked into LM Studio."""
    lms = tmp_path / "lms"
    lms.mkdir()
    src = tmp_path / "src"
    shards = models.gguf_split_set(src / "split")
    models.gguf_with_source(src / "tinyllama-Q4_K_M.gguf", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    assert mi(lib, "apps", "add", "lms", lms, "--kind", "lmstudio").code == 0
    run = mi(lib, "import", src, "--yes", "--json")
    assert run.code == 0, run.stderr
    by_source = {Path(r["sources"][0]).name: r for r in run.json["results"]}
    return {
        "lms": lms,
        "split": by_source[shards[0].name],
        "tiny": by_source["tinyllama-Q4_K_M.gguf"],
        "shards": shards,
    }


def test_remove_of_a_three_shard_set_removes_it_all_and_nothing_else(
    tmp_path: Path, lib: Path, split_library: dict
) -> None:
    split, tiny, lms = split_library["split"], split_library["tiny"], split_library["lms"]
    model_id = split["model_id"]
    model_dir = lib / model_id
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        [*(s.name for s in split_library["shards"]), "metadata.json"]
    )
    assert rows_of(lib, model_id) == {"models": 1, "files": 3, "links": 3}
    elsewhere = tmp_path / "backup-shard-2.gguf"
    os.link(model_dir / split_library["shards"][1].name, elsewhere)  # a second hard link
    kept_files = [p for p in library_files(lib) if model_id not in str(p)]
    kept_bytes = {p: p.read_bytes() for p in kept_files}
    lms_before = tree(lms)

    refused = mi(lib, "remove", model_id)  # no terminal, no --yes: nothing happens
    assert refused.code == 2 and "--yes" in refused.stderr
    assert model_dir.is_dir() and rows_of(lib, model_id)["models"] == 1

    run = mi(lib, "remove", model_id, "--yes")
    assert run.code == 0, run.stderr
    warning = " ".join(run.stderr.split())
    assert f"{split_library['shards'][1].name} has 1 other hard link(s)" in warning
    assert "frees no space" in warning
    assert "3 file(s), 3 link(s)" in run.stdout
    assert not model_dir.exists()
    assert rows_of(lib, model_id) == {"models": 0, "files": 0, "links": 0}
    assert [m["model_id"] for m in mi(lib, "list", "--json").json["models"]] == [tiny["model_id"]]
    assert library_files(lib) == kept_files  # every other file is still there, as it was
    assert all(p.read_bytes() == b for p, b in kept_bytes.items())
    lms_after = tree(lms)
    gone = {k for k in lms_before if k.startswith("local")}
    assert len([k for k in gone if k.endswith(".gguf")]) == 3
    assert lms_after == {k: v for k, v in lms_before.items() if k not in gone}
    assert elsewhere.read_bytes()  # the other hard link keeps the bytes
    assert not any((lib / ".modelimport" / "staging").iterdir())
    assert_relative_link_to(
        lms / "TinyLlama/TinyLlama-1.1B-Chat-v1.0/tinyllama-Q4_K_M.gguf",
        lib / tiny["model_id"] / "tinyllama-Q4_K_M.gguf",
    )


def test_remove_asks_on_a_terminal_and_no_keeps_everything(
    lib: Path, split_library: dict
) -> None:
    pexpect = pytest.importorskip("pexpect")
    model_id = split_library["split"]["model_id"]
    env = cli_env()
    child = pexpect.spawn(
        sys.executable, ["-m", "modelimport", "--library", str(lib), "remove", model_id],
        env=env, encoding="utf-8", timeout=60,
    )  # fmt: skip
    child.expect(r"3 file\(s\)")
    child.expect(r"Delete 1 model\(s\)\? \[y/N\]")
    child.sendline("n")
    child.expect("Nothing removed")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (lib / model_id).is_dir() and rows_of(lib, model_id)["links"] == 3


def test_remove_keep_files_moves_them_out_and_forgets_the_model(
    tmp_path: Path, lib: Path, split_library: dict
) -> None:
    model_id = split_library["split"]["model_id"]
    work = tmp_path / "work"
    work.mkdir()
    shard_bytes = {s.name: s.read_bytes() for s in split_library["shards"]}
    proc = subprocess.run(
        [sys.executable, "-m", "modelimport", "--library", str(lib), "remove", model_id,
         "--keep-files", "--yes", "--json"],
        cwd=work, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    kept = work / model_id.rsplit("/", 1)[-1]
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == shard_bytes  # no metadata.json
    assert not (lib / model_id).exists()
    assert rows_of(lib, model_id) == {"models": 0, "files": 0, "links": 0}


def test_remove_unknown_model_is_one_sentence(lib: Path, split_library: dict) -> None:
    run = mi(lib, "remove", "llm/llama/nope", "--yes")
    assert run.code == 1 and "No model llm/llama/nope" in run.stdout
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("point", ["remove.before_rename", "remove.after_rename"])
def test_a_crash_mid_removal_leaves_the_whole_model_or_nothing_listed(
    lib: Path, split_library: dict, point: str
) -> None:
    model_id = split_library["split"]["model_id"]
    crashed = mi(lib, "remove", model_id, "--yes", env={"MODELIMPORT_FAULTS": f"{point}:crash"})
    assert crashed.code == 70
    listed = [m["model_id"] for m in mi(lib, "list", "--json").json["models"]]  # recovers
    if point == "remove.before_rename":
        assert model_id in listed and rows_of(lib, model_id)["files"] == 3
        assert len(list((lib / model_id).glob("*.gguf"))) == 3
    else:
        assert model_id not in listed and not (lib / model_id).exists()
        assert rows_of(lib, model_id)["models"] == 0
    assert not any((lib / ".modelimport" / "staging").iterdir())


def test_show_lists_the_record_files_links_and_trust(lib: Path, split_library: dict) -> None:
    tiny = split_library["tiny"]
    run = mi(lib, "show", tiny["model_id"])
    assert run.code == 0, run.stderr
    library_file = lib / tiny["model_id"] / "tinyllama-Q4_K_M.gguf"
    link = split_library["lms"] / "TinyLlama/TinyLlama-1.1B-Chat-v1.0/tinyllama-Q4_K_M.gguf"
    assert str(library_file) in run.stdout
    assert f"lms: {link} (symlink, ok)" in run.stdout
    assert "trust: lookup pending" in run.stdout
    data = mi(lib, "show", tiny["model_id"], "--json").json
    assert data["record"]["embedded_repos"] == ["TinyLlama/TinyLlama-1.1B-Chat-v1.0"]
    assert data["files"][0]["path"] == str(library_file) and data["files"][0]["present"]
    assert [lk["link_path"] for lk in data["links"]] == [str(link)]
    link.unlink()
    assert mi(lib, "show", tiny["model_id"], "--json").json["links"][0]["state"] == "missing"
    missing = mi(lib, "show", "llm/llama/nope")
    assert missing.code == 1 and "No model llm/llama/nope" in missing.stderr


def test_remove_while_another_process_holds_the_index_says_the_library_is_busy(
    tmp_path: Path, lib: Path
):
    source = models.sdxl_lora(tmp_path / "src" / "detail.safetensors")
    model_id = mi(lib, "import", source, "--yes", "--json").json["results"][0]["model_id"]
    holder = sqlite3.connect(lib / ".modelimport" / "index.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # this test's process: a long transaction of another
    try:
        # Another process, as the sentence names it (this one holds the transaction).
        run = run_cli_process("--library", lib, "remove", "--yes", model_id, timeout=180)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr and "Internal error" not in run.stderr
    [line] = [x for x in run.stdout.splitlines() + run.stderr.splitlines() if "busy" in x]
    assert f"The library is busy: process {os.getpid()} (" in line, line
    assert (lib / model_id / "metadata.json").is_file()  # nothing was moved
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    assert rows_of(lib, model_id)["models"] == 1
    assert mi(lib, "remove", "--yes", model_id).code == 0  # and it works once the lock is gone
