"""PyTorch checkpoints: ZIP archives holding `<dir>/data.pkl`, legacy raw pickles, and what
else `torch.load` would read (its legacy tar format), refused.

The pickles are scanned by `formats.pickle_scan` (never unpickled). Here: finding the pickle
in its container, bounding what is inflated or read (MAX_PICKLE_BYTES, MAX_ZIP_ENTRIES),
and the rule that a pickle holding no tensors is not a model file.
"""

from __future__ import annotations

import errno
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, TensorInfo
from modelimport.formats.pickle_scan import (
    MAX_PICKLE_BYTES,
    BoundedReader,
    PickleError,
    PickleLimit,
    PickleResult,
    broken_pickle_scan,
    collect_tensors,
    run_pickle,
)
from modelimport.formats.pickle_verdict import classify_globals

MAX_EXTRA_PICKLES = 8
MAX_ZIP_ENTRIES = 200_000  # torch.save writes one entry per storage, plus a few
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
TAR_BLOCK = 512
# What zipfile raises on a damaged or hostile archive (offsets past the end, lying ZIP64
# fields, bad compressed data, names that do not decode).
_ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, ValueError,
               struct.error, OverflowError, KeyError, IndexError)


def inspect_torch_zip(path: Path, size: int, require_tensors: bool = True) -> FileFacts:
    name = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise InvalidModelFile(
                    f"{name} is a ZIP archive of {len(infos):,} entries, more than a PyTorch "
                    f"checkpoint holds (limit {MAX_ZIP_ENTRIES:,})."
                )
            member = _torch_pickle_member(name, infos)
            if member.file_size > MAX_PICKLE_BYTES:
                raise InvalidModelFile(
                    f"{name} holds a {member.file_size:,}-byte data.pkl, more than this tool "
                    f"scans ({MAX_PICKLE_BYTES >> 20} MiB)."
                )
            with zf.open(member) as stream:
                reader = BoundedReader(stream)
                result = _scan_stream(name, reader, "its data.pkl")
                # Inflate the rest (bounded) so zipfile checks the CRC: bytes after the STOP
                # or sizes that lie make a damaged archive, as torch's reader finds them.
                while reader.read(min(1 << 20, reader.room)):
                    pass
    except _ZIP_DAMAGE as exc:
        raise InvalidModelFile(f"{name} is a damaged ZIP archive.") from exc
    except NotImplementedError as exc:
        # zipfile's word for a ZIP feature it lacks (a compression method, patched data, a
        # newer ZIP version); torch.save never writes those, so the archive is not a checkpoint.
        raise InvalidModelFile(f"{name} is a ZIP archive PyTorch does not write ({exc}).") from exc
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise  # a real read error, reported as such by the caller
        # A damaged directory can point before the start of the file: seek() refuses it.
        raise InvalidModelFile(f"{name} is a damaged ZIP archive.") from exc
    if isinstance(result, PickleError):
        if not result.globals:
            raise InvalidModelFile(f"{name} holds a damaged data.pkl ({result}).")
        result = broken_pickle_scan(result)  # broken, but judged by what it imports
    extra = {"entries": len(infos), "pickle_member": member.filename}
    return _facts(path, "torch-zip", size, result, extra, require_tensors)


def _torch_pickle_member(name: str, infos: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    """The one pickle `torch.load` reads: `<folder of the first entry>/data.pkl`, a name its
    ZIP reader (miniz) matches case-insensitively. An archive holding any other pickle
    (a second data.pkl, one in another folder, TorchScript's constants.pkl) is refused: which
    of them a loader runs is not ours to guess."""
    pickles = [i for i in infos if i.filename.lower().endswith(".pkl")]
    if not any(("/" + i.filename.lower()).endswith("/data.pkl") for i in pickles):
        raise InvalidModelFile(f"{name} is a ZIP archive but not a PyTorch checkpoint.")
    folder, slash, _ = infos[0].filename.partition("/")
    expected = f"{folder}/data.pkl"
    if not slash or len(pickles) != 1 or pickles[0].filename.lower() != expected.lower():
        shown = ", ".join(i.filename for i in pickles[:4]) + (", ..." if len(pickles) > 4 else "")
        raise InvalidModelFile(
            f"{name} is refused: torch.load would read {expected if slash else 'no pickle'}"
            f" but the archive holds {shown}, so what it would run cannot be vetted."
        )
    return pickles[0]


def _scan_stream(name: str, reader: BoundedReader, what: str) -> PickleResult | PickleError:
    """One pickle scanned; a malformed one returned as its error (with what it imported)."""
    try:
        return run_pickle(reader)
    except PickleError as exc:
        return exc
    except PickleLimit as exc:
        raise InvalidModelFile(
            f"{name} is refused: {what} has {exc}, beyond what this tool scans."
        ) from exc


def _facts(path: Path, fmt: str, size: int, result: PickleResult, extra: dict[str, Any],
           require_tensors: bool = True) -> FileFacts:
    """FileFacts of a scanned pickle; a pickle holding no tensor is not a model file."""
    tensors = collect_tensors(result.value)
    scan = classify_globals(result.globals, result.called)
    if require_tensors and not tensors:
        also = ""
        if scan["dangerous"]:
            also = f"; loading it would run code ({', '.join(scan['dangerous'])})"
        elif scan["unknown"]:
            also = f"; it imports {', '.join(scan['unknown'])}"
        raise InvalidModelFile(f"{path.name} is a pickle holding no tensors, not a model{also}.")
    return FileFacts(path, fmt, size, _details(scan, tensors, extra), tensors)


def _details(scan: dict, tensors: dict[str, TensorInfo], extra: dict[str, Any]) -> dict[str, Any]:
    dtype_counts: dict[str, int] = {}
    dtype_params: dict[str, int] = {}
    for info in tensors.values():
        dtype_counts[info.dtype] = dtype_counts.get(info.dtype, 0) + 1
        dtype_params[info.dtype] = dtype_params.get(info.dtype, 0) + info.numel
    return {
        **extra,
        "tensor_count": len(tensors),
        "parameter_count": sum(dtype_params.values()),
        "tensor_dtypes": dtype_counts,
        "dtype_parameters": dtype_params,
        "pickle_scan": scan,
    }


def inspect_pickle(path: Path, size: int, require_tensors: bool = True) -> FileFacts:
    """A raw pickle: a legacy `torch.save` (magic, protocol, sys info, state, storage keys,
    then raw storage bytes) or any other pickle, of which every leading pickle is scanned.
    `require_tensors=False` scans a pickle that is not a model (a bundle's training_args.bin)."""
    name = path.name
    with open(path, "rb") as fh:
        reader = BoundedReader(fh, MAX_PICKLE_BYTES, size)
        first = _scan_stream(name, reader, "its pickle")
        if isinstance(first, PickleError):
            if not first.globals:
                raise InvalidModelFile(f"{name} is not a readable pickle ({first}).")
            first = broken_pickle_scan(first)  # broken, but still judged by what it imports
        found, called = list(first.globals), set(first.called)
        value = first.value
        legacy = isinstance(value, int) and value == LEGACY_TORCH_MAGIC
        if legacy:
            parts = []
            for _ in range(4):  # protocol version, sys info, the state, storage keys
                part = _scan_stream(name, reader, "its pickle")
                if isinstance(part, PickleError):
                    raise InvalidModelFile(f"{name} is a damaged legacy PyTorch file ({part}).")
                found += part.globals
                called |= part.called
                parts.append(part.value)
            value = parts[2]
        else:
            # A second pickle is read only by code that asks for it, but hiding a payload
            # there costs nothing, so every pickle that follows directly is scanned too.
            for _ in range(MAX_EXTRA_PICKLES):
                if not reader.peek(1):
                    break
                extra = _scan_stream(name, reader, "a pickle")
                if isinstance(extra, PickleError):
                    if not extra.globals and not extra.reads_on:
                        break  # trailing bytes that import nothing
                    extra = broken_pickle_scan(extra)
                found += extra.globals
                called |= extra.called
        read = reader.tell()
    result = PickleResult(value, found, called)
    return _facts(path, "pickle", size, result, {"legacy_torch": legacy, "pickle_bytes": read},
                  require_tensors)


def is_tar(head: bytes) -> bool:
    """Whether a file's first 512 bytes are a tar header `tarfile` accepts (its checksum
    holds): `torch.load` then takes its legacy tar path and unpickles the members."""
    if len(head) < TAR_BLOCK:
        return False
    field = head[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        stored = int(field or b"x", 8)
    except ValueError:
        return False
    unsigned = sum(head[:148]) + 8 * 32 + sum(head[156:TAR_BLOCK])
    signed = sum(struct.unpack("148b", head[:148])) + 8 * 32 + sum(
        struct.unpack("356b", head[156:TAR_BLOCK])
    )
    return stored in (unsigned, signed)


def runs_as_pickle(path: Path, size: int) -> bool:
    """Whether `pickle.load` of the file, whatever its protocol, would import a global before
    it stops or breaks: such a file must be scanned like a checkpoint, or refused. (A pickle
    of constants only runs nothing.)"""
    with open(path, "rb") as fh:
        try:
            result = run_pickle(BoundedReader(fh, min(size, MAX_PICKLE_BYTES), size))
        except PickleError as exc:
            return bool(exc.globals) or exc.reads_on
        except PickleLimit:
            return True  # too big to judge: what torch.load would do with it is unknown
    return bool(result.globals)


def scan_folder_pickle(path: Path) -> FileFacts | None:
    """A file of a folder model that no reader claims (any name, any protocol): the facts of
    its pickle if `pickle.load` of it would import anything, else None. Its loader may
    `torch.load` it, so it is judged like the model's own weights."""
    size = path.stat().st_size
    if not runs_as_pickle(path, size):
        return None
    return inspect_pickle(path, size, require_tensors=False)
