"""The interactive review on a real pseudo-terminal: the plan is shown, the person decides."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest
from cli import cli_env, library_files
from factories import make_gguf, make_safetensors
from fakehub import FakeHub


def _run_on_terminal(
    args: list[str],
    answers: dict[str, str],
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run the CLI on a pty; whenever output ends with a key of `answers`, type its value."""
    pid, fd = pty.fork()
    if pid == 0:
        env = cli_env({"COLUMNS": "200", **(env or {})})
        os.execvpe(sys.executable, [sys.executable, "-m", "modelimport", *args], env)
    seen = b""
    answered: set[str] = set()
    deadline = time.monotonic() + timeout
    ended = False  # the terminal closed: the CLI exited
    while not ended and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            ended = not chunk
            seen += chunk
        text = seen.decode(errors="replace")
        for prompt, reply in answers.items():
            if prompt not in answered and prompt in text:
                answered.add(prompt)
                os.write(fd, reply.encode())
    if not ended:
        # Still waiting for input it will never get (or hung): kill it rather than wait for
        # it forever in waitpid, and fail with what it showed.
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
        shown = seen.decode(errors="replace")
        pytest.fail(f"the CLI was still running after {timeout} s; it showed:\n{shown}")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_review_shows_what_the_file_says_and_can_decline(tmp_path: Path):
    model = make_gguf(
        tmp_path / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf",
        name="Meta Llama 3 8B Instruct",
        kv={"general.file_type": 15},
    )
    lib = tmp_path / "lib"
    code, text = _run_on_terminal(
        ["--library", str(lib), "import", str(model), "--offline"], {"model(s)?": "n\n"}
    )
    assert code == 0, text
    for shown in ("Import plan", "gguf", "llm", "llama", "Q4_K_M", "Lookup pending"):
        assert shown in text
    assert "Nothing imported." in text
    assert library_files(lib) == []
    # Identifying is one transient status line, not a byte-less progress bar left per file.
    assert "0/? bytes" not in text.split("Import plan")[0]

    code, text = _run_on_terminal(
        ["--library", str(lib), "import", str(model), "--offline"], {"model(s)?": "y\n"}
    )
    assert code == 0, text
    assert "1 imported" in text
    assert len([p for p in library_files(lib) if p.suffix == ".gguf"]) == 1


def test_declining_still_reports_rejected_files_in_the_exit_code(tmp_path: Path):
    folder = tmp_path / "dl"
    folder.mkdir()
    make_gguf(folder / "model-Q8_0.gguf", kv={"general.file_type": 7})
    (folder / "x.bin").write_bytes(b"")
    lib = tmp_path / "lib"
    code, text = _run_on_terminal(
        ["--library", str(lib), "import", str(folder), "--offline"], {"model(s)?": "n\n"}
    )
    assert "x.bin is empty" in text and "Nothing imported." in text
    assert code == 1, text
    assert library_files(lib) == []


def test_a_declined_guess_is_still_verified_when_the_bytes_prove_it(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    same = make_safetensors(tmp_path / "dl" / "Meta-Llama-3-8B-Instruct-copy.safetensors")
    other = make_safetensors(
        tmp_path / "dl2" / "Meta-Llama-3-8B-Instruct-mine.safetensors", fill=b"\x07"
    )
    fake_hub.add_repo(
        "meta-llama/Meta-Llama-3-8B-Instruct",
        {"Meta-Llama-3-8B-Instruct.safetensors": same.read_bytes()},
        downloads=9,
    )
    lib = tmp_path / "lib"
    for path, expected in ((same, "verified"), (other, "no_match")):
        code, text = _run_on_terminal(
            ["--library", str(lib), "import", str(path)],
            {"Accept it?": "n\n", "model(s)?": "y\n"},
            env=fake_hub_env,
        )
        assert code == 0, text
        assert "low-confidence match meta-llama/Meta-Llama-3-8B-Instruct" in text
        [meta_path] = [
            p for p in library_files(lib)
            if p.name == "metadata.json" and path.stem.lower() in str(p)
        ]
        meta = json.loads(meta_path.read_text())
        assert meta["trust_level"] == expected, meta["trust_level"]
        assert meta["needs_confirmation"] is False


def _spawn_on_terminal(args: list[str], env: dict[str, str] | None = None, columns: int = 200):
    """The CLI on a real pseudo-terminal, driven by pexpect as a person would type."""
    import pexpect

    return pexpect.spawn(
        sys.executable,
        ["-m", "modelimport", *args],
        env=cli_env({"COLUMNS": str(columns), **(env or {})}),
        dimensions=(50, columns),
        encoding="utf-8",
        timeout=60,
    )


def _lora(path: Path, fill: bytes) -> Path:
    return make_safetensors(
        path,
        tensors={
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4]),
        },
        fill=fill,
    )


def test_the_review_edits_one_item_skips_another_and_imports_what_was_chosen(tmp_path: Path):
    import pexpect

    folder = tmp_path / "dl"
    long_name = "a-very-long-lora-name-that-would-not-fit-in-a-column-anywhere-v1.0-final"
    first = _lora(folder / f"{long_name}.safetensors", b"\x01")
    second = _lora(folder / "second.safetensors", b"\x02")
    third = _lora(folder / "third.safetensors", b"\x03")
    lib = tmp_path / "lib"
    child = _spawn_on_terminal(["--library", str(lib), "import", str(folder), "--offline"])
    child.expect(r"model\(s\)\?")
    table = child.before
    assert "Lookup pending" in table  # the trust badge of a model not looked up yet
    assert "v1.0-final.safetensors" in table  # a long name keeps its end
    rows = [line.split() for line in table.splitlines() if re.match(r"\s*\d+\s", line)]
    assert [(r[0], r[1][:6]) for r in rows] == [("1", "a-very"), ("2", "second"), ("3", "third.")]
    child.sendline("e 1")
    for prompt, answer in (
        ("Name", ""),
        ("Type", ""),
        ("Family", "flux"),
        ("Subtype", ""),
        ("Tags", "mine, test"),
        ("Notes", "from my old disk"),
    ):
        child.expect(prompt)
        child.sendline(answer)
    child.expect(r"model\(s\)\?")
    assert "/flux/" in child.before  # the destination follows the edit
    child.sendline("s 2")
    child.expect(r"Skipped second\.safetensors")
    child.expect(r"Import 2 model\(s\)\?")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    metas = {
        json.loads(p.read_text())["sources"][0]["path"]: json.loads(p.read_text())
        for p in library_files(lib)
        if p.name == "metadata.json"
    }
    assert set(metas) == {str(first), str(third)}  # exactly what was chosen
    edited, untouched = metas[str(first)], metas[str(third)]
    assert edited["family"] == "flux" and edited["field_sources"]["family"] == "user"
    assert edited["match_source"] == "manual"
    assert edited["tags"] == ["mine", "test"] and edited["notes"] == "from my old disk"
    assert edited["model_id"].split("/")[1] == "flux"
    assert untouched["match_source"] == "auto" and untouched["family"] != "flux"
    assert second.exists() and third.exists()  # a copy leaves the sources alone


def test_the_review_can_switch_to_move_and_show_details(tmp_path: Path):
    import pexpect

    source = _lora(tmp_path / "dl" / "mine.safetensors", b"\x05")
    lib = tmp_path / "lib"
    child = _spawn_on_terminal(["--library", str(lib), "import", str(source), "--offline"])
    child.expect(r"model\(s\)\?")
    assert "copy into the library" in child.before
    child.sendline("d")
    child.expect(r"model\(s\)\?")
    assert "fast hash mine.safetensors" in child.before
    child.sendline("m")
    child.expect(r"model\(s\)\?")
    assert "move into the library" in child.before
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert not source.exists()  # moved, as switched in the review
    assert len([p for p in library_files(lib) if p.suffix == ".safetensors"]) == 1


def test_the_review_shows_a_folder_bundle_and_a_set_for_what_they_are(tmp_path: Path):
    import pexpect
    from factories import make_sharded_safetensors
    from test_bundles import hf_download_folder

    folder = tmp_path / "dl"
    hf_download_folder(folder)  # the real all-MiniLM-L6-v2, as `hf download` leaves it
    make_sharded_safetensors(folder / "llama-3-70b", total=3)
    _lora(folder / "single.safetensors", b"\x04")
    lib = tmp_path / "lib"
    # On 100 columns the folder's description wraps in its column; the table still fits.
    child = _spawn_on_terminal(["--library", str(lib), "import", str(folder), "--offline"],
                               columns=100)
    child.expect(r"model\(s\)\?")
    table = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before.split("Import plan")[-1])
    assert max(len(line.rstrip()) for line in table.splitlines()) <= 100, table
    assert [line.split()[0] for line in table.splitlines() if re.match(r" \d ", line)] == [
        "1", "2", "3"
    ], table
    [row] = [line for line in table.splitlines() if line.startswith(" 3 ")]
    assert "all-MiniLM-L6-v2/" in row and "folder" in row, table
    assert re.search(r"\(\d+ files,", table) and "transformers)" in table, table
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()

    # On 80 columns, a terminal's default, precision and trust share lines with the others:
    # every row keeps its number, its name's end and its badge.
    child = _spawn_on_terminal(["--library", str(lib), "import", str(folder), "--offline"],
                               columns=80)
    child.expect(r"model\(s\)\?")
    table = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before.split("Import plan")[-1])
    assert max(len(line.rstrip()) for line in table.splitlines()) <= 80, table
    assert [line.split()[0] for line in table.splitlines() if re.match(r" \d ", line)] == [
        "1", "2", "3"
    ], table
    assert table.count("Lookup pending") == 3 and "single.safetensors" in table, table
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()

    child = _spawn_on_terminal(["--library", str(lib), "import", str(folder), "--offline"])
    child.expect(r"model\(s\)\?")
    table = child.before
    bundle = re.search(r"folder all-MiniLM-L6-v2/ \((\d+) files, transformers\), ", table)
    assert bundle, table
    assert re.search(r"set of 3, [\d.]+ [KM]?i?B", table), table  # its shards, not its files
    assert re.search(r"\b1 file, ", table), table
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    # The results table names the folder a bundle came from, as the review did.
    results = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before.split("Import results")[-1])
    assert re.search(r"all-MiniLM-L6-v2/ \(\d+ files\)", results), results

    [record] = [
        json.loads(p.read_text())
        for p in library_files(lib)
        if p.name == "metadata.json" and json.loads(p.read_text())["bundle"]
    ]
    # The count shown is what was imported: every file of the folder, none left out.
    assert len(record["files"]) == int(bundle.group(1))
    assert record["bundle"]["kind"] == "transformers"
