"""The crash matrix: SIGKILL at every fault point of the import (copy, move, sharded sets,
cross-filesystem moves, recovery itself), then prove the promise: the next command recovers,
`check` passes, every source is at its path or inside a committed model, byte-identical, and
importing again completes the job. The points that ran are listed at the end of the test
output (conftest's terminal summary).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli import library_files, run_cli, start_cli
from factories import make_big_safetensors, make_safetensors, make_sharded_safetensors

MIB = 1 << 20
RAN: list[str] = []  # "scenario mode point: outcome", printed by conftest's summary hook


def _big(path: Path, size: int = 12 * MIB) -> Path:
    """A valid safetensors file of `size` bytes (sparse: cheap to make), big enough for the
    threaded copy (8 MiB chunks)."""
    return make_big_safetensors(path, size)


def _file(base: Path) -> tuple[list[Path], Path]:
    source = _big(base / "dl" / "big.safetensors")
    return [source], source


def _set(base: Path) -> tuple[list[Path], Path]:
    files = make_sharded_safetensors(base / "dl" / "set", total=3)
    return files, base / "dl" / "set"


def _other_fs(base: Path) -> tuple[list[Path], Path]:
    folder = Path(f"/dev/shm/modelimport-matrix-{os.getpid()}-{base.name}")
    folder.mkdir(parents=True, exist_ok=True)
    source = _big(folder / "far.safetensors")
    return [source], source


SCENARIOS: dict[str, Callable[[Path], tuple[list[Path], Path]]] = {
    "file": _file,
    "set": _set,
    "other-fs": _other_fs,
}


@dataclass(frozen=True)
class Point:
    scenario: str
    mode: str  # copy | move
    fault: str  # where the import is killed
    recovery_fault: str | None = None  # then where the recovering command is killed

    @property
    def id(self) -> str:
        tail = f" then recovery at {self.recovery_fault}" if self.recovery_fault else ""
        return f"{self.scenario} {self.mode} at {self.fault}{tail}"


EIGHT = f">={8 * MIB}"
POINTS = [
    # one big file, copied
    *(Point("file", "copy", f) for f in (
        "staging.begin", "copy.before_copy", f"read.bytes{EIGHT}", f"copy.bytes{EIGHT}",
        "stage.all_done", "commit.locked", "commit.metadata_written", "commit.before_rename",
        "commit.after_rename", "commit.index", "commit.indexed", "txn.closed",
    )),
    # one big file, moved on the same filesystem (a rename)
    *(Point("file", "move", f) for f in (
        f"read.bytes{EIGHT}", "move.before_rename", "move.after_rename", "stage.all_done",
        "commit.metadata_written", "commit.before_rename", "commit.after_rename",
        "commit.indexed", "txn.closed",
    )),
    # a sharded set (3 shards + index), killed between its files
    *(Point("set", "copy", f) for f in (
        "stage.file_done>=2", "copy.before_copy>=3", "commit.before_rename",
    )),
    *(Point("set", "move", f) for f in (
        "move.after_rename>=2", "stage.file_done>=3", "commit.after_rename",
    )),
    # moved from another filesystem: copied, then the source deleted after the commit
    *(Point("other-fs", "move", f) for f in (
        f"copy.bytes{EIGHT}", "commit.after_rename", "txn.closed", "move.source_deleted",
    )),
    # recovery itself killed, then recovered by the command after it
    Point("file", "move", "move.after_rename", "recover.txn"),
    Point("file", "move", "move.after_rename", "recover.source_back"),
    Point("set", "move", "move.after_rename>=2", "recover.source_back"),
    Point("file", "move", "commit.after_rename", "recover.reindexed"),
    Point("file", "copy", f"copy.bytes{EIGHT}", "recover.txn"),
    Point("file", "copy", "commit.index", "recover.reindexed"),
]  # fmt: skip


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def _kill_at(fault: str, marker: Path, *args: str | Path) -> None:
    """Run the CLI until it reaches `fault` (it writes `marker` there), then SIGKILL it."""
    marker.unlink(missing_ok=True)
    proc = start_cli(
        *args, env={"MODELIMPORT_FAULTS": f"{fault}:hang", "MODELIMPORT_FAULT_MARKER": str(marker)}
    )
    deadline = time.monotonic() + 90
    try:
        while not marker.exists():
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"ended before {fault}: exit {proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{fault} never reached")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.communicate()


def _assert_promise(lib: Path, sources: dict[Path, str]) -> int:
    """`check` passes, and every source is at its path or in a committed model, whole.
    Returns the number of models."""
    check = run_cli("--library", lib, "check", "--json")
    assert check.code == 0, check.stdout + check.stderr
    in_library = {_sha(p) for p in library_files(lib) if p.name != "metadata.json"}
    for path, digest in sources.items():
        here = path.exists() and _sha(path) == digest
        assert here or digest in in_library, f"{path} is lost"
    return check.json["models"]


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_kill_at_every_point_loses_nothing(tmp_path: Path, point: Point):
    paths, target = SCENARIOS[point.scenario](tmp_path)
    try:
        sources = {p: _sha(p) for p in paths}
        lib, marker = tmp_path / "lib", tmp_path / "marker"
        run_cli("--library", lib, "status")  # the library exists (staging.begin needs it)
        args = ["--library", lib, "import", target, "--yes", "--json"]
        args += ["--move"] if point.mode == "move" else []

        _kill_at(point.fault, marker, *args)
        if point.recovery_fault:
            _kill_at(point.recovery_fault, marker, "--library", lib, "status")

        models = _assert_promise(lib, sources)  # `check` is the next command: it recovers
        assert list((lib / ".modelimport" / "staging").iterdir()) == []
        assert models in (0, 1)

        if any(p.exists() for p in paths):  # a moved source that was committed is gone
            again = run_cli(*args)
            assert again.code == 0, again.stdout + again.stderr
            assert {r["status"] for r in again.json["results"]} <= {"imported", "duplicate"}
            assert _assert_promise(lib, sources) == 1
        in_library = {_sha(p) for p in library_files(lib) if p.name != "metadata.json"}
        assert set(sources.values()) <= in_library  # the job is done
        RAN.append(f"{point.id}: recovered ({models} model(s) after the kill), check clean")
    finally:
        if point.scenario == "other-fs":
            shutil.rmtree(paths[0].parent, ignore_errors=True)


def test_the_matrix_has_at_least_30_points():
    assert len(POINTS) >= 30
    assert {p.mode for p in POINTS} == {"copy", "move"}


def test_two_imports_of_the_same_20_files_at_once(tmp_path: Path):
    folder = tmp_path / "dl"
    for n in range(20):
        make_safetensors(folder / f"m{n:02}.safetensors", {f"t{n}": ("F32", [n + 1, 64])},
                         fill=os.urandom(4))  # fmt: skip
    lib = tmp_path / "lib"
    run_cli("--library", lib, "status")
    procs = [start_cli("--library", lib, "import", folder, "--yes", "--json") for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [r for out, _ in outputs for r in json.loads(out)["results"]]
    statuses = sorted(r["status"] for r in results)
    assert statuses.count("imported") == 20 and statuses.count("duplicate") == 20, statuses
    imported = {Path(r["sources"][0]).name for r in results if r["status"] == "imported"}
    assert len(imported) == 20  # each file imported by exactly one of the two
    check = run_cli("--library", lib, "check", "--json")
    assert check.code == 0 and check.json["models"] == 20, check.stdout
    assert len([p for p in library_files(lib) if p.suffix == ".safetensors"]) == 20


def test_a_killed_cross_filesystem_move_never_deletes_an_uncommitted_source(tmp_path: Path):
    # The one case where a source is deleted by us: only after its model is committed.
    paths, target = _other_fs(tmp_path)
    try:
        digest = _sha(paths[0])
        lib = tmp_path / "lib"
        _kill_at("commit.before_rename", tmp_path / "marker", "--library", lib, "import",
                 target, "--yes", "--move")  # fmt: skip
        assert run_cli("--library", lib, "status", "--json").json["models"] == 0
        assert _sha(paths[0]) == digest
    finally:
        shutil.rmtree(paths[0].parent, ignore_errors=True)


# -- shard downloads (downloads/): a set imported with shards missing, completed from the Hub

DOWNLOAD_POINTS = [
    *(Point("download", mode, f) for mode in ("copy", "move") for f in (
        "read.bytes>=1", "download.after_place", "download.after_commit",
    )),
    Point("download", "copy", "download.after_place", "recover.txn"),
]  # fmt: skip


@pytest.mark.parametrize("point", DOWNLOAD_POINTS, ids=[p.id for p in DOWNLOAD_POINTS])
def test_kill_during_a_shard_download_loses_nothing(
    tmp_path: Path, fake_hub, fake_hub_env: dict[str, str], point: Point
):
    from test_downloads import _set_on_hub

    folder, hub_files = _set_on_hub(tmp_path, fake_hub)
    sources = {p: _sha(p) for p in sorted(folder.iterdir())}
    lib, marker = tmp_path / "lib", tmp_path / "marker"
    flags = ["--move"] if point.mode == "move" else []
    first = run_cli("--library", lib, "import", folder, "--yes", "--json",
                    "--allow-incomplete", *flags, env=fake_hub_env)  # fmt: skip
    assert first.code == 0, first.stderr
    model_id = first.json["results"][0]["model_id"]

    proc_env = fake_hub_env | {"MODELIMPORT_FAULTS": f"{point.fault}:hang",
                               "MODELIMPORT_FAULT_MARKER": str(marker)}  # fmt: skip
    proc = start_cli("--library", lib, "shards", "--download-missing", model_id, env=proc_env)
    deadline = time.monotonic() + 90
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{point.fault} never reached"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.communicate()
    if point.recovery_fault:
        _kill_at(point.recovery_fault, marker, "--library", lib, "status")

    assert _assert_promise(lib, sources) == 1  # recovered by `check`, sources all accounted
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    done = run_cli("--library", lib, "shards", "--download-missing", model_id, env=fake_hub_env)
    assert done.code == 0, done.stdout + done.stderr
    assert _assert_promise(lib, sources) == 1
    in_library = {_sha(p) for p in library_files(lib)}
    wanted = {hashlib.sha256(data).hexdigest() for name, data in hub_files.items()
              if name.endswith(".safetensors")}  # fmt: skip
    assert wanted <= in_library  # the set is whole, every shard byte-identical to the Hub's
    RAN.append(f"{point.id}: recovered, check clean, set completed afterwards")
