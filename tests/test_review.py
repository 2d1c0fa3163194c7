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


def _row_names(text: str) -> dict[int, str]:
    """Item number -> file name, from the rows of a listing (the name's line of each row)."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^\s*(\d+)\s+(\S+\.safetensors)\b", plain, re.MULTILINE)
    }


def test_a_review_of_2000_items_skips_a_range_and_a_type_with_stable_numbers(tmp_path: Path):
    """Issue 20, Must show 3: on an 80-column terminal, the numbers stay what they were,
    ranges and a type are skipped, one item is edited, and the whole session prints less
    than 100 KB (it printed 1.5 MB for two skips before)."""
    import io

    import pexpect

    folder = tmp_path / "dl"
    for i in range(2000):
        fill = i.to_bytes(2, "big") + b"\x01"
        if i % 4 == 3:
            make_safetensors(folder / f"emb-{i:04d}.safetensors",
                             tensors={"emb_params": ("F32", [1, 768])}, fill=fill)
        else:
            _lora(folder / f"lora-{i:04d}.safetensors", fill)
    lib = tmp_path / "lib"
    child = _spawn_on_terminal(
        ["--library", str(lib), "import", str(folder), "--offline"], columns=80
    )
    child.timeout = 600
    child.logfile_read = seen = io.StringIO()
    child.expect(r"Import 2,000 model\(s\)\?")
    first = child.before
    assert re.search(r"lora\s+1,500", first) and re.search(r"embedding\s+500", first), first
    page = _row_names(first)
    assert sorted(page) == list(range(1, 21)), first  # a page, not 2,000 rows

    child.sendline("s 3")
    child.expect(r"model\(s\)\?")
    child.sendline("s 5")  # the fifth as first shown, not the sixth
    child.expect(r"Import 1,998 model\(s\)\?")
    child.sendline("l 1-6")
    child.expect(r"model\(s\)\?")
    assert sorted(_row_names(child.before)) == [1, 2, 4, 6]
    child.sendline("u 3")  # taken back, under its number
    child.expect(r"Import 1,999 model\(s\)\?")

    child.sendline("l lora")  # the first page of LoRAs, wherever the plan has them
    child.expect(r"model\(s\)\?")
    loras = _row_names(child.before)
    assert len(loras) == 20 and all(name.startswith("lora") for name in loras.values())
    numbers = sorted(loras)
    first, last = numbers[2], numbers[6]
    child.sendline(f"l {first}-{last}")
    child.expect(r"model\(s\)\?")
    in_range = _row_names(child.before)
    child.sendline(f"s {first}-{last},{numbers[9]} {numbers[11]}")
    child.expect(r"model\(s\)\?")
    child.sendline("s embeddings")  # ComfyUI's folder name for the type
    child.expect(r"model\(s\)\?")
    assert re.search(r"Skipped 49[89] models", child.before), child.before
    child.sendline("s 1-2000x")
    child.expect(r"model\(s\)\?")
    assert "or a model type of this plan (embedding, lora)" in " ".join(child.before.split())
    edited_number = numbers[0]
    child.sendline(f"e {edited_number}")
    for prompt, answer in (("Name", ""), ("Type", ""), ("Family", "flux"), ("Subtype", ""),
                           ("Tags", ""), ("Notes", "")):
        child.expect(prompt)
        child.sendline(answer)
    child.expect(r"model\(s\)\?")
    assert "/flux/" in child.before
    skipped_loras = set(in_range.values()) | {loras[numbers[9]], loras[numbers[11]]}
    expected = 1500 - len(skipped_loras)
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-2000:]
    output = seen.getvalue()
    assert f"{expected} imported" in output, output[-3000:]
    assert len(output.encode()) < 100_000, len(output.encode())

    metas = [json.loads(p.read_text()) for p in library_files(lib) if p.name == "metadata.json"]
    imported = {Path(m["sources"][0]["path"]).name: m for m in metas}
    assert len(imported) == expected
    assert not any(name.startswith("emb") for name in imported)
    assert not skipped_loras & set(imported)
    assert imported[loras[edited_number]]["family"] == "flux"


def test_review_items_select_numbers_ranges_lists_and_types():
    """What `s`/`u`/`l` accept, and that numbers never move when items are skipped."""
    from types import SimpleNamespace

    import pytest

    from modelimport.errors import UsageError
    from modelimport.importer.pipeline import ImportPlan
    from modelimport.importer.review import ReviewItems, number_ranges

    kinds = ["lora", "lora", "checkpoint", "lora", "embedding", "lora", "checkpoint"]
    plan = ImportPlan(models=[SimpleNamespace(model_type=k) for k in kinds])  # type: ignore[misc]
    items = ReviewItems(plan)
    assert items.select("3") == [3]
    assert items.select("1-3, 6") == [1, 2, 3, 6]
    assert items.select("2 - 4 7") == [2, 3, 4, 7]
    assert items.select("3,7,3") == [3, 7]
    for name in ("checkpoint", "checkpoints", "type checkpoint", "Stable-diffusion"):
        assert items.select(name) == [3, 7], name
    for bad, said in (("0", "0 is not a range"), ("5-2", "5-2 is not a range"),
                      ("8", "from 1 to 7"), ("vae", "(checkpoint, embedding, lora)"), ("", "Give")):
        with pytest.raises(UsageError, match=re.escape(said)):
            items.select(bad)
    assert items.skip([3]) == [3] and items.skip([3, 5]) == [5]  # 3 was skipped already
    assert [m.model_type for m in plan.models] == ["lora", "lora", "lora", "lora", "checkpoint"]
    assert items.planned_numbers() == [1, 2, 4, 6, 7]
    assert items.take_back([3, 4]) == [3] and items.planned_numbers() == [1, 2, 3, 4, 6, 7]
    assert number_ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"


def test_an_unreachable_hub_is_named_before_the_review_and_not_again(tmp_path: Path):
    """Issue 20, point 7: the review showed every model as "Lookup pending" with no word of
    why; the Hub that could not be reached is named before the question, once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf-home"), "MODELIMPORT_CACHE_DIR": str(tmp_path / "c")}
    model = _lora(tmp_path / "dl" / "mine.safetensors", b"\x05")
    code, text = _run_on_terminal(
        ["--library", str(tmp_path / "lib"), "import", str(model)], {"model(s)?": "y\n"},
        env=env,
    )
    assert code == 0, text
    before, _, after = text.partition("model(s)?")
    assert "The Hugging Face Hub could not be reached (connection refused)" in before, text
    assert "could not be reached" not in after, text
