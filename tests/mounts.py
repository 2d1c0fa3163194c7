"""Real filesystems for tests: a small image file under /tmp, formatted and loop-mounted.

exFAT (case-insensitive, no symlinks, no hard links) through the kernel driver where it has
one, else through exfat-fuse; NTFS through ntfs-3g (FUSE). Each needs root and its Debian
package (exfatprogs + exfat-fuse, ntfs-3g); where making or mounting fails, the test is
skipped with the reason. The mount and its loop device are released when the test ends,
passed or failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def _need(tools: tuple[str, ...], package: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to loop-mount a {package} image")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install {package})")


@contextlib.contextmanager
def _image(size: int, name: str) -> Iterator[tuple[Path, Path]]:
    """An empty image file of `size` bytes and a mount folder, both under /tmp, removed after."""
    base = Path(tempfile.mkdtemp(prefix=f"modelimport-{name}-", dir="/tmp"))
    image, mount = base / f"{name}.img", base / "mnt"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(size)
    try:
        yield image, mount
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unmount(mount: Path) -> None:
    if _run("umount", str(mount)).returncode != 0:
        _run("umount", "-l", str(mount))  # busy (a killed process's file): detach it


@contextlib.contextmanager
def exfat(size: int = 256 << 20) -> Iterator[Path]:
    """A mounted, empty exFAT filesystem."""
    _need(("mkfs.exfat",), "exfatprogs")
    with _image(size, "exfat") as (image, mount):
        made = _run("mkfs.exfat", str(image))
        if made.returncode != 0:
            pytest.skip(f"mkfs.exfat failed: {_why(made)}")
        loop = None
        if _run("mount", "-t", "exfat", "-o", "loop", str(image), str(mount)).returncode != 0:
            # No exfat in this kernel: the FUSE driver, which wants a block device.
            if not shutil.which("mount.exfat-fuse"):
                pytest.skip("no exfat in this kernel and no mount.exfat-fuse (exfat-fuse)")
            attached = _run("losetup", "-f", "--show", str(image))
            if attached.returncode != 0:
                pytest.skip(f"cannot attach a loop device: {_why(attached)}")
            loop = attached.stdout.strip()
            fused = _run("mount.exfat-fuse", loop, str(mount))
            if fused.returncode != 0:
                _run("losetup", "-d", loop)
                pytest.skip(f"cannot mount exFAT with exfat-fuse: {_why(fused)}")
        try:
            yield mount
        finally:
            _unmount(mount)
            if loop:
                _run("losetup", "-d", loop)


@contextlib.contextmanager
def ntfs(size: int = 256 << 20) -> Iterator[Path]:
    """A mounted, empty NTFS filesystem (ntfs-3g)."""
    _need(("mkntfs", "ntfs-3g"), "ntfs-3g")
    with _image(size, "ntfs") as (image, mount):
        made = _run("mkntfs", "-F", "-q", "-f", str(image))
        if made.returncode != 0:
            pytest.skip(f"mkntfs failed: {_why(made)}")
        mounted = _run("ntfs-3g", str(image), str(mount))
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount NTFS with ntfs-3g: {_why(mounted)}")
        try:
            yield mount
        finally:
            _unmount(mount)
