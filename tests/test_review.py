"""The interactive review on a real pseudo-terminal: the plan is shown, the person decides."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time
from pathlib import Path

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
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        text = seen.decode(errors="replace")
        for prompt, reply in answers.items():
            if prompt not in answered and prompt in text:
                answered.add(prompt)
                os.write(fd, reply.encode())
    _, status = os.waitpid(pid, 0)
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
    for shown in ("Import plan", "gguf", "llm", "llama", "Q4_K_M", "lookup pending"):
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
