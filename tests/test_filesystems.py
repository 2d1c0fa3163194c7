"""The library and the apps on the filesystems people keep models on, mounted for real:
exFAT (external disks: case-insensitive, no symlinks, no hard links) and NTFS (ntfs-3g).
Each test skips with the reason where its filesystem cannot be mounted here."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import app_models as models
from cli import library_files, run_cli, start_cli
from factories import make_safetensors

MIB = 1 << 20


def mi(lib: Path, *args: str | Path, **kw):
    return run_cli("--library", lib, *args, **kw)


def fifty_models(src: Path) -> list[Path]:
    """48 LoRAs with their own bytes, and two whose names differ only in case."""
    files = [models.sdxl_lora(src / f"lora_{i:02d}.safetensors", fill=bytes([i, 7])) for i in
             range(48)]  # fmt: skip
    files.append(models.sdxl_lora(src / "DetailTweaker.safetensors", fill=b"\xa1"))
    files.append(models.sdxl_lora(src / "detailtweaker.safetensors", fill=b"\xa2"))
    return files


def test_a_library_on_exfat_imports_dedups_survives_a_kill_and_verifies(
    tmp_path: Path, exfat_dir: Path
) -> None:
    lib = exfat_dir / "models"
    src = tmp_path / "src"
    fifty_models(src)

    run = mi(lib, "import", src, "--yes", "--json")
    assert run.code == 0, run.stderr
    results = run.json["results"]
    assert [r["status"] for r in results].count("imported") == 50
    by_name = {Path(r["sources"][0]).name: r["model_id"] for r in results}
    upper, lower = by_name["DetailTweaker.safetensors"], by_name["detailtweaker.safetensors"]
    assert upper.casefold() != lower.casefold()  # two folders even where case does not count
    assert (lib / upper / "DetailTweaker.safetensors").is_file()
    assert (lib / lower / "detailtweaker.safetensors").is_file()

    again = mi(lib, "import", src, "--yes", "--json")
    assert again.code == 0, again.stderr
    assert {r["status"] for r in again.json["results"]} == {"duplicate"}

    # Killed in the middle of copying a bigger file: nothing of it stays, the rest is whole.
    big = make_safetensors(src.parent / "big" / "big.safetensors", {"w": ("U8", [12 * MIB])},
                           fill=os.urandom(4096))  # fmt: skip
    marker = tmp_path / "marker"
    proc = start_cli(
        "--library", lib, "import", big, "--yes",
        env={"MODELIMPORT_FAULTS": f"copy.bytes>={4 * MIB}:hang",
             "MODELIMPORT_FAULT_MARKER": str(marker)},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    check = mi(lib, "check")
    assert check.code == 0, check.stdout + check.stderr
    assert mi(lib, "status", "--json").json["models"] == 50
    assert not [p for p in library_files(lib) if p.name == "big.safetensors"]
    assert list((lib / ".modelimport" / "staging").iterdir()) == []
    verify = mi(lib, "verify", "--json")
    assert verify.code == 0, verify.stdout + verify.stderr
