"""The fast ways each system offers to copy a model file, each behind a check of what the
system and the filesystem can do, each falling back to the plain copy.

- Cloning (copy-on-write: the copy shares the source's blocks, no byte is written, no space
  used twice): Linux `FICLONE` (XFS with reflink, btrfs), macOS `clonefile(2)` (APFS),
  Windows block cloning, `FSCTL_DUPLICATE_EXTENTS_TO_FILE` (ReFS, Dev Drive).
  `clone_new_file` uses the one of this system and answers False, with nothing created,
  wherever the filesystem says no (ext4, HFS+, NTFS, exFAT, another volume).
- Uncached writes (a 100 GB import must not flood the page cache): Linux `O_DIRECT`, macOS
  `F_NOCACHE`; Windows writes buffered.

Only the Linux paths run on the machine the tests run on. The macOS and Windows ones follow
their documentation (clonefile(2); Microsoft's "Block Cloning" page, DUPLICATE_EXTENTS_DATA
and FSCTL_GET/SET_INTEGRITY_INFORMATION) and are kept small: any failure means the plain
copy, which is always correct.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_CLONE_NOOWNERCOPY = 0x0002  # sys/clonefile.h: the clone is ours, not the source's owner's
O_BINARY = getattr(os, "O_BINARY", 0)  # Windows opens in text mode (\n -> \r\n) without it


def _fcntl() -> ModuleType | None:
    """The fcntl module where the system has one (not on Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def set_uncached(fd: int, on: bool) -> bool:
    """Switch uncached writes on or off for `fd`: O_DIRECT on Linux, F_NOCACHE on macOS.
    False where the system or the filesystem has neither (then writes are buffered)."""
    fcntl = _fcntl()
    if fcntl is None:
        return False
    try:
        if sys.platform == "darwin":
            if not hasattr(fcntl, "F_NOCACHE"):
                return False
            fcntl.fcntl(fd, fcntl.F_NOCACHE, 1 if on else 0)
            return on
        direct = getattr(os, "O_DIRECT", 0)
        if not direct:
            return False
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | direct) if on else (flags & ~direct))
    except OSError:
        if not on:
            raise
        return False
    return on


def clone_new_file(source: Path | int, destination: Path, mode: int = 0o644) -> bool:
    """Create `destination` (it must not exist) as a copy-on-write clone of `source`, a path
    or a descriptor the caller opened and checked (the import reads the very file it
    reviewed). False, and nothing created, where this system or filesystem cannot clone.
    macOS and Windows clone by path: given a descriptor they do not clone, and the caller
    copies from the descriptor instead (correct, only slower)."""
    if sys.platform == "darwin":
        return not isinstance(source, int) and _clonefile(source, destination)
    if sys.platform == "win32":
        return not isinstance(source, int) and _windows_block_clone(source, destination)
    return _ficlone(source, destination, mode)


def can_clone(folder: Path) -> bool:
    """Whether files in `folder` can be cloned (a copy there costs no space): tried on a
    one-byte file, as the copy itself would."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".clone-probe-", dir=folder)
    except OSError:
        return False
    clone = Path(probe + ".clone")
    try:
        os.write(fd, b"x")
        os.close(fd)
        return clone_new_file(Path(probe), clone)
    finally:
        for path in (probe, clone):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _ficlone(source: Path | int, destination: Path, mode: int = 0o644) -> bool:
    fcntl = _fcntl()
    if fcntl is None or not sys.platform.startswith("linux"):
        return False
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with open(source, "rb", buffering=0, closefd=not isinstance(source, int)) as src:
            fcntl.ioctl(fd, _FICLONE, src.fileno())
    except OSError:
        # EOPNOTSUPP/EINVAL (ext4, tmpfs), EXDEV (another filesystem), anything else: copy.
        os.close(fd)
        os.unlink(destination)
        return False
    os.close(fd)
    return True


def _clonefile(source: Path, destination: Path) -> bool:
    """macOS clonefile(2): creates `destination`; ENOTSUP off APFS, EXDEV across volumes."""
    import ctypes

    func = getattr(ctypes.CDLL(None, use_errno=True), "clonefile", None)
    if func is None:  # before macOS 10.12
        return False
    func.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32]
    func.restype = ctypes.c_int
    # No CLONE_NOFOLLOW: a symlink given as the source is followed, as a copy would.
    return func(os.fsencode(source), os.fsencode(destination), _CLONE_NOOWNERCOPY) == 0


def _windows_block_clone(source: Path, destination: Path) -> bool:
    """Windows block cloning (ReFS, Dev Drive): the destination gets the source's size and
    integrity setting, then its clusters are made to share the source's, in calls of under
    4 GiB each, cluster-aligned (the last rounded up past the end, as documented)."""
    import ctypes
    import msvcrt
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    file_supports_block_refcounting = 0x08000000
    file_attribute_sparse_file = 0x200
    fsctl_get_integrity, fsctl_set_integrity = 0x0009027C, 0x0009C280
    fsctl_duplicate_extents_to_file = 0x00098344

    class GetIntegrity(ctypes.Structure):
        _fields_ = [("ChecksumAlgorithm", wintypes.WORD), ("Reserved", wintypes.WORD),
                    ("Flags", wintypes.DWORD), ("ChecksumChunkSizeInBytes", wintypes.DWORD),
                    ("ClusterSizeInBytes", wintypes.DWORD)]  # fmt: skip

    class SetIntegrity(ctypes.Structure):
        _fields_ = [("ChecksumAlgorithm", wintypes.WORD), ("Reserved", wintypes.WORD),
                    ("Flags", wintypes.DWORD)]  # fmt: skip

    class DuplicateExtents(ctypes.Structure):
        _fields_ = [("FileHandle", wintypes.HANDLE), ("SourceFileOffset", ctypes.c_int64),
                    ("TargetFileOffset", ctypes.c_int64),
                    ("ByteCount", ctypes.c_int64)]  # fmt: skip

    def control(handle: int, code: int, data: ctypes.Structure | None, out: Any = None) -> None:
        returned = wintypes.DWORD()
        ok = kernel32.DeviceIoControl(
            wintypes.HANDLE(handle), code,
            ctypes.byref(data) if data is not None else None, ctypes.sizeof(data) if data else 0,
            ctypes.byref(out) if out is not None else None, ctypes.sizeof(out) if out else 0,
            ctypes.byref(returned), None,
        )  # fmt: skip
        if not ok:
            raise ctypes.WinError(ctypes.get_last_error())

    with open(source, "rb", buffering=0) as src:
        src_handle = msvcrt.get_osfhandle(src.fileno())
        fs_flags = wintypes.DWORD()
        if not kernel32.GetVolumeInformationByHandleW(
            wintypes.HANDLE(src_handle), None, 0, None, None, ctypes.byref(fs_flags), None, 0
        ) or not fs_flags.value & file_supports_block_refcounting:
            return False  # NTFS, FAT, exFAT, a network share: no block cloning
        st = os.fstat(src.fileno())
        if getattr(st, "st_file_attributes", 0) & file_attribute_sparse_file:
            return False  # a sparse source wants a sparse destination first: copy instead
        integrity = GetIntegrity()
        try:
            control(src_handle, fsctl_get_integrity, None, integrity)
        except OSError:
            return False
        fd = os.open(destination, os.O_RDWR | os.O_CREAT | os.O_EXCL | O_BINARY, 0o644)
        try:
            dst_handle = msvcrt.get_osfhandle(fd)
            control(dst_handle, fsctl_set_integrity,
                    SetIntegrity(integrity.ChecksumAlgorithm, 0, integrity.Flags))  # fmt: skip
            os.ftruncate(fd, st.st_size)
            cluster = integrity.ClusterSizeInBytes
            step = (1 << 32) - cluster
            remaining, offset = -(-st.st_size // cluster) * cluster, 0
            while remaining > 0:
                count = min(step, remaining)
                extents = DuplicateExtents(wintypes.HANDLE(src_handle), offset, offset, count)
                control(dst_handle, fsctl_duplicate_extents_to_file, extents)
                offset, remaining = offset + count, remaining - count
        except OSError:
            os.close(fd)  # closed before the delete: Windows refuses to delete an open file
            os.unlink(destination)
            return False
        os.close(fd)
    return True
