"""Progress whose cost does not grow with the batch: a bounded live area on a terminal,
one line per model in a pipe, JSON lines keyed by source path, nothing with --quiet."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors
from rich.console import Console

from modelimport.cli.progress import MAX_SHOWN, progress_sink
from modelimport.events import ProgressEvent, Stage


def _files(folder: Path, count: int) -> list[Path]:
    return [make_safetensors(folder / f"m{n}.safetensors", fill=bytes([n + 1]))
            for n in range(count)]


def test_the_live_area_holds_the_overall_bar_and_a_few_items_however_many_there_are():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_sink(False, console) as sink:
        live = sink
        sink(ProgressEvent(Stage.BATCH, "import", bytes_total=6000 * 10, items_total=6000))
        for n in range(3000):
            key = f"/dl/{n}/model.safetensors"  # one name, many models: keyed by path
            # Two models in flight at once, as parallel identification makes them.
            sink(ProgressEvent(Stage.COPYING, "model.safetensors", 0, 10, key=key))
            sink(ProgressEvent(Stage.COPYING, "model.safetensors", 5, 10, key=key + "x"))
            assert len(live.progress.tasks) <= MAX_SHOWN + 1  # type: ignore[attr-defined]
            sink(ProgressEvent(Stage.COMPLETE, "model.safetensors", message="a/b/c", key=key))
            sink(ProgressEvent(Stage.COMPLETE, "model.safetensors", message="a/b/c",
                               key=key + "x"))
        assert live.in_flight == {}  # type: ignore[attr-defined]
        assert live.items_done == 6000  # type: ignore[attr-defined]
        visible = [t for t in live.progress.tasks if t.visible]  # type: ignore[attr-defined]
        assert len(visible) == 1  # finished models left the live area; the overall bar stays


def test_in_a_pipe_each_model_ends_in_one_line_and_the_results_are_one_line_each(
    tmp_path: Path,
):
    _files(tmp_path / "dl", 3)
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes")
    assert run.code == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0].startswith("Importing 3 model(s)")
    assert [ln.split("]")[0] for ln in lines[1:]] == ["[1/3", "[2/3", "[3/3"]
    assert all("✓" in ln and "→" in ln for ln in lines[1:])
    out = run.stdout.splitlines()
    assert out[0].split() == ["status", "model", "source(s)", "detail"]
    assert len([ln for ln in out if ln.startswith("imported ")]) == 3
    [summary] = [ln for ln in out if ln.startswith("3 imported (")]
    assert "/s)" in summary and any(ln.startswith("Into ") for ln in out)


def test_two_files_with_one_name_are_two_keyed_items(tmp_path: Path):
    make_safetensors(tmp_path / "a" / "model.safetensors", fill=b"\x01")
    make_safetensors(tmp_path / "b" / "model.safetensors", fill=b"\x02")
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "a", tmp_path / "b",
                  "--yes", "--json")
    assert run.code == 0, run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines()]
    [batch] = [e for e in events if e["stage"] == "batch"]
    assert batch["items_total"] == 2
    done = [e for e in events if e["stage"] == "complete"]
    assert {e["key"] for e in done} == {str(tmp_path / "a" / "model.safetensors"),
                                        str(tmp_path / "b" / "model.safetensors")}
    assert len({e["message"] for e in done}) == 2  # two model ids


def test_quiet_prints_no_progress_only_the_summary(tmp_path: Path):
    _files(tmp_path / "dl", 2)
    (tmp_path / "dl" / "bad.safetensors").write_bytes(b"nope")
    run = run_cli("--library", tmp_path / "lib", "import", tmp_path / "dl", "--yes", "--quiet")
    assert run.code == 1
    assert run.stderr == ""
    out = run.stdout.splitlines()
    assert out[0].startswith("2 imported (") and "1 rejected" in out[0]
    assert out[1].startswith("✗ ") and "bad.safetensors" in out[1]  # failures with reasons
    assert out[2].startswith("Into ")


@pytest.mark.parametrize(
    "name", ["Ödd näme (copy) [v2] #1 ünïcode 🚀.safetensors",
             "日本語のモデル名前がとても長いです.safetensors", "a" * 60 + ".gguf"],
)
@pytest.mark.parametrize("width", [12, 20, 31])
def test_a_name_shortened_for_a_column_fits_its_cells_and_keeps_its_end(name: str, width: int):
    """Wide letters (emoji, CJK) take two cells: shortened by characters, a name overflowed
    its column and the table cut its end, the part that says the most."""
    from rich.cells import cell_len

    from modelimport.cli.common import shorten_middle

    short = shorten_middle(name, width)
    assert cell_len(short) <= width and short.endswith(name[-4:]) and "…" in short
