"""A library on a network filesystem (NFS, SMB, sshfs) keeps its index in the rollback
journal, not WAL, whose shared memory cannot work across machines. The filesystems are real
mounts: a tmpfs, and sshfs to an sshd on 127.0.0.1 (conftest `sshfs_dir`)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli import run_cli
from factories import make_safetensors

from modelimport.library.filesystems import filesystem_type, is_network

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw 0 0
server:/export /mnt/models nfs4 rw,vers=4.2 0 0
//nas/share /mnt/nas\\040box cifs rw 0 0
me@host:/data /home/me/remote fuse.sshfs rw 0 0
/dev/vdb /mnt/models/local ext4 rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "fstype", "network"),
    [
        ("/mnt/models/lib", "nfs4", True),
        ("/mnt/nas box/lib", "cifs", True),
        ("/home/me/remote/models", "fuse.sshfs", True),
        ("/mnt/models/local/lib", "ext4", False),  # a local disk mounted inside the export
        ("/mnt/modelsX", "ext4", False),  # a prefix of a name is not the mount
        ("/srv/lib", "ext4", False),
    ],
)
def test_the_mount_holding_the_library_decides(
    monkeypatch: pytest.MonkeyPatch, path: str, fstype: str, network: bool
):
    monkeypatch.setattr("os.path.exists", lambda p: True)
    monkeypatch.setattr("os.path.realpath", lambda p: str(p))
    found = filesystem_type(Path(path), MOUNTS)
    assert (found, is_network(found)) == (fstype, network)


def test_the_real_mount_table_is_read(tmp_path: Path):
    assert filesystem_type(tmp_path) is not None  # Linux: /proc/mounts names every mount


def _journal_mode(index: Path) -> str:
    db = sqlite3.connect(index)  # closed at once: an open WAL reader blocks a mode change
    try:
        return db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()


def test_a_real_tmpfs_is_found_and_is_local(tmp_path: Path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("could not mount a tmpfs here (needs root)")
    try:
        found = filesystem_type(mount / "lib")  # not made yet: its parent's filesystem
        assert (found, is_network(found)) == ("tmpfs", False)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_library_on_a_network_filesystem_uses_the_rollback_journal(
    tmp_path: Path, sshfs_dir: Path
):
    lib = sshfs_dir / tmp_path.name / "lib"  # sshfs over SSH to 127.0.0.1: a real one
    assert filesystem_type(lib) == "fuse.sshfs"
    src = make_safetensors(tmp_path / "m.safetensors")
    assert run_cli("--library", lib, "import", src, "--yes").code == 0
    index = lib / ".modelimport" / "index.sqlite"
    assert _journal_mode(index) == "delete"
    assert not Path(f"{index}-wal").exists()

    status = run_cli("--library", lib, "status", "--json").json
    assert status["filesystem"] == "fuse.sshfs" and status["network_filesystem"] is True
    assert status["index_journal_mode"] == "delete"
    human = run_cli("--library", lib, "status").stdout
    assert "Filesystem: fuse.sshfs (a network filesystem: the index uses the DELETE journal" in (
        human)  # fmt: skip

    # Copied to a local disk: WAL there; and copied back onto the network one, DELETE again.
    local = tmp_path / "local-lib"
    shutil.copytree(lib, local)
    assert run_cli("--library", local, "status", "--json").json["index_journal_mode"] == "wal"
    assert _journal_mode(local / ".modelimport" / "index.sqlite") == "wal"
    back = sshfs_dir / tmp_path.name / "back"
    shutil.copytree(local, back)
    assert run_cli("--library", back, "list").code == 0
    assert _journal_mode(back / ".modelimport" / "index.sqlite") == "delete"
