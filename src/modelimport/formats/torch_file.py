"""PyTorch checkpoints: ZIP archives holding `<dir>/data.pkl`, and legacy raw pickles.

Nothing is ever unpickled. The pickle's opcodes are read with `pickletools.genops` and run
through a small symbolic machine that builds lists, dicts and tuples but represents every
global as an inert `Global` and every call as an inert `Call`; from that we learn the tensor
names, dtypes and shapes (`torch._utils._rebuild_tensor_v2` arguments), every global the
pickle would import and which of them it calls.

Verdicts (`classify_globals`): "unsafe" only for what runs code on load (a global in our
dangerous table or picklescan's, a name computed at load time, an unvetted function the
pickle calls); "needs_classes" for harmless classes outside a plain state dict (SD 1.x's
Lightning ModelCheckpoint, omegaconf containers, a training script's classes), which are
imported and named; "safe" for a plain state dict.
"""

from __future__ import annotations

import contextlib
import errno
import io
import pickletools
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from modelimport.errors import InvalidModelFile
from modelimport.formats import FileFacts, TensorInfo

MAX_PICKLE_BYTES = 256 * 1024 * 1024
MAX_EXTRA_PICKLES = 8
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C

# Globals a state dict legitimately needs (module -> names, "*" for any name). Anything not
# listed here is reported and makes the verdict unsafe, as torch.load(weights_only=True) would.
SAFE_GLOBALS: dict[str, set[str] | str] = {
    "collections": {"OrderedDict", "defaultdict"},
    "torch": {
        "FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage",
        "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
        "ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage",
        "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage", "Size", "device",
        "float16", "float32", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool",
        "float8_e4m3fn", "float8_e5m2",
    },
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_tensor",
                     "_rebuild_parameter_with_state", "_rebuild_qtensor",
                     "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage",
                     "_rebuild_device_tensor_from_numpy", "_rebuild_nested_tensor",
                     "_rebuild_wrapper_subclass"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.storage": {"UntypedStorage", "TypedStorage"},
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
    "builtins": {"set", "frozenset", "slice", "complex", "bytearray", "int", "float", "str",
                 "dict", "list", "tuple", "bool"},
    "__builtin__": {"set", "frozenset", "slice", "complex", "bytearray"},
    "_codecs": {"encode"},  # how protocol-2 pickles spell bytes
    "argparse": {"Namespace"},
}

# Globals that run code or touch the system when a pickle is loaded (module -> names or "*").
DANGEROUS_GLOBALS: dict[str, set[str] | str] = {
    "os": "*", "posix": "*", "nt": "*", "subprocess": "*", "sys": "*", "shutil": "*",
    "socket": "*", "runpy": "*", "pty": "*", "webbrowser": "*", "importlib": "*",
    "code": "*", "commands": "*", "ctypes": "*", "multiprocessing": "*", "asyncio": "*",
    "pickle": "*", "_pickle": "*", "marshal": "*", "pip": "*", "requests": "*", "httplib": "*",
    "urllib": "*", "aiohttp": "*", "bdb": "*", "pdb": "*", "timeit": "*", "torch.hub": "*",
    "builtins": {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr",
                 "__import__", "globals", "locals", "vars", "input", "breakpoint", "apply"},
    "__builtin__": {"eval", "exec", "compile", "open", "getattr", "setattr", "execfile",
                    "__import__", "globals", "locals", "input", "breakpoint", "apply", "file"},
    "operator": {"attrgetter", "methodcaller", "itemgetter"},
    "functools": {"partial", "reduce"},
    "torch": {"load", "save", "_load_global_deps"},
    "torch.serialization": "*",
    # Beyond picklescan's list: modules whose classes or functions act on load (spawn, open
    # files or sockets, compile or load code, exit the process).
    "_ctypes": "*", "cffi": "*", "_io": "*", "io": {"open", "FileIO", "open_code"},
    "codecs": {"open"}, "tempfile": "*", "shelve": "*", "dbm": "*", "sqlite3": "*",
    "zipfile": "*", "tarfile": "*", "logging": {"FileHandler"}, "logging.config": "*",
    "logging.handlers": "*", "http": "*", "socketserver": "*", "smtplib": "*",
    "ftplib": "*", "telnetlib": "*", "imaplib": "*", "poplib": "*", "xmlrpc": "*",
    "ssl": "*", "pydoc": "*", "distutils": "*", "setuptools": "*", "pkgutil": "*",
    "venv": "*", "ensurepip": "*", "idlelib": "*", "lib2to3": "*", "cProfile": "*",
    "profile": "*", "trace": "*", "doctest": "*", "signal": "*", "_thread": "*",
    "threading": "*", "concurrent": "*", "gc": "*", "inspect": "*",
    "types": {"CodeType", "FunctionType", "LambdaType", "MethodType", "ModuleType", "new_class"},
    "_posixsubprocess": "*", "uuid": "*", "site": "*", "zipimport": "*", "imp": "*",
    "dill": "*", "cloudpickle": "*", "joblib": "*", "yaml": "*", "jinja2": "*",
    "_operator": {"attrgetter", "methodcaller", "itemgetter"},
    "torch.jit": "*", "torch._C": "*", "torch.package": "*", "torch.fx": "*",
    "torch.utils.cpp_extension": "*", "torch._dynamo": "*", "torch._inductor": "*",
    "torch.utils.collect_env": "*", "torch.utils.data.datapipes": "*",
    "numpy.f2py": "*", "numpy.testing": "*", "numpy.distutils": "*", "numpy.ctypeslib": "*",
    "numpy.lib.npyio": "*", "numpy": {"load", "loads", "fromfile"}, "pandas.io": "*",
}

# Functions (lower-case names) that a pickle may call on load because they only rebuild
# data; any other unvetted function a pickle calls counts as running code.
HARMLESS_CALLS: dict[str, set[str] | str] = {
    "copyreg": {"_reconstructor", "__newobj__", "__newobj_ex__"},
    "numpy.random._pickle": {"__randomstate_ctor", "__generator_ctor", "__bit_generator_ctor"},
    "numpy": {"dtype", "ndarray"},
    "torch": {"device", "Size", "dtype", "layout", "memory_format"},
}

# Top-level module of a class a pickle needs -> the package that provides it (for the
# record's "loader needs"); a module not listed is named as is (a training script's own).
LOADER_PACKAGES: dict[str, str | None] = {
    "pytorch_lightning": "pytorch-lightning", "lightning": "lightning",
    "lightning_fabric": "lightning", "omegaconf": "omegaconf", "numpy": "numpy",
    "torch": "torch", "collections": None, "typing": None, "pathlib": None,  # stdlib
    "argparse": None, "enum": None, "datetime": None, "_codecs": None, "copyreg": None,
    "transformers": "transformers", "diffusers": "diffusers", "accelerate": "accelerate",
    "sklearn": "scikit-learn", "timm": "timm",
}

# Storage class named in a tensor's persistent id -> dtype in safetensors spelling.
STORAGE_DTYPES = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "DoubleStorage": "F64", "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16",
    "CharStorage": "I8", "ByteStorage": "U8", "BoolStorage": "BOOL",
    "Float8_e4m3fnStorage": "F8_E4M3", "Float8_e5m2Storage": "F8_E5M2",
    "QInt8Storage": "I8", "QUInt8Storage": "U8",
}


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass
class Call:
    func: Any
    args: Any
    items: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Persistent:
    pid: Any


class _Mark:
    pass


_MARK = _Mark()


class PickleError(Exception):
    pass


@dataclass
class PickleResult:
    value: Any
    globals: list[tuple[str, str]]
    # Globals the pickle calls itself (REDUCE, INST, OBJ), not only names or builds.
    called: list[tuple[str, str]] = field(default_factory=list)


def run_pickle(stream: BinaryIO) -> PickleResult:
    """Interpret one pickle symbolically, up to its STOP; raise `PickleError` if malformed."""
    # genops decodes STRING arguments with codecs.escape_decode, which warns about invalid
    # escapes; in an untrusted file that is data to refuse, not a warning to print.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _run_pickle(stream)


def _run_pickle(stream: BinaryIO) -> PickleResult:
    """The interpreter behind `run_pickle`.

    Globals are recorded before anything else is done with an opcode, so a pickle that breaks
    half-way still reports what it imported so far (`PickleError.globals`)."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    found: list[tuple[str, str]] = []
    called: list[tuple[str, str]] = []

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise PickleError("MARK missing")

    def add_global(module: Any, name: Any) -> Global:
        if not isinstance(module, str) or not isinstance(name, str):
            module, name = "unknown", "unknown"  # built from computed values: cannot vet it
        found.append((module, name))
        return Global(module, name)

    def call(func: Any, args: Any, invokes: bool = True) -> Any:
        if isinstance(func, Global):
            if invokes:
                called.append((func.module, func.name))
            key = (func.module, func.name)
            if key in (("collections", "OrderedDict"), ("builtins", "dict")):
                return {}
            if key in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
                return _tensor_from_args(args)
            if key == ("torch._utils", "_rebuild_parameter") and isinstance(args, tuple) and args:
                return args[0]
        return Call(func, args)

    def set_items(target: Any, pairs: list[Any]) -> None:
        container = target if isinstance(target, dict) else getattr(target, "items", None)
        if not isinstance(container, dict):
            return
        for key, value in zip(pairs[::2], pairs[1::2], strict=False):
            # An unhashable symbolic key is irrelevant to a state dict.
            with contextlib.suppress(TypeError):
                container[key] = value

    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            name = opcode.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                return PickleResult(stack.pop() if stack else None, found, called)
            if name == "MARK":
                stack.append(_MARK)
            elif name in ("GLOBAL", "INST"):
                module, _, gname = str(arg).partition(" ")
                glob = add_global(module, gname)
                if name == "INST":
                    stack.append(call(glob, tuple(pop_mark())))
                else:
                    stack.append(glob)
            elif name == "STACK_GLOBAL":
                gname, module = stack.pop(), stack.pop()
                stack.append(add_global(module, gname))
            elif name in ("EXT1", "EXT2", "EXT4"):
                stack.append(add_global("copyreg", f"extension_{arg}"))
            elif opcode.arg is not None and name not in _ARG_OPS_HANDLED:
                stack.append(arg)  # a constant: int, float, str, bytes, bool
            elif name == "NONE":
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name in ("EMPTY_LIST",):
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_SET":
                stack.append([])
            elif name == "DICT":
                items = pop_mark()
                target: dict = {}
                set_items(target, items)
                stack.append(target)
            elif name == "LIST":
                stack.append(pop_mark())
            elif name in ("TUPLE", "FROZENSET"):
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                count = int(name[-1])
                items = stack[-count:]
                del stack[-count:]
                stack.append(tuple(items))
            elif name == "APPEND":
                value = stack.pop()
                if isinstance(stack[-1], list):
                    stack[-1].append(value)
            elif name in ("APPENDS", "ADDITEMS"):
                items = pop_mark()
                if isinstance(stack[-1], list):
                    stack[-1].extend(items)
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                set_items(stack[-1], [key, value])
            elif name == "SETITEMS":
                items = pop_mark()
                set_items(stack[-1], items)
            elif name in ("REDUCE", "NEWOBJ"):
                args = stack.pop()
                func = stack.pop()
                # NEWOBJ is cls.__new__(cls, *args): it builds an instance without running
                # the class's own code; REDUCE calls the callable itself.
                stack.append(call(func, args, invokes=name == "REDUCE"))
            elif name == "NEWOBJ_EX":
                _kwargs, args, func = stack.pop(), stack.pop(), stack.pop()
                stack.append(call(func, args, invokes=False))
            elif name == "OBJ":
                items = pop_mark()
                stack.append(call(items[0], tuple(items[1:])) if items else None)
            elif name == "BUILD":
                stack.pop()
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "PERSID":
                stack.append(Persistent(arg))
            elif name == "BINPERSID":
                stack.append(Persistent(stack.pop()))
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                stack.append(None)
            else:
                raise PickleError(f"unhandled opcode {name}")
    except (ValueError, KeyError, IndexError, TypeError, PickleError) as exc:
        err = PickleError(str(exc) or type(exc).__name__)
        err.globals = found  # type: ignore[attr-defined]
        err.called = called  # type: ignore[attr-defined]
        raise err from exc
    err = PickleError("pickle ends without STOP")
    err.globals = found  # type: ignore[attr-defined]
    err.called = called  # type: ignore[attr-defined]
    raise err


# Opcodes whose argument genops decodes but which are not constants to push.
_ARG_OPS_HANDLED = {"GLOBAL", "INST", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET",
                    "LONG_BINGET", "PERSID", "EXT1", "EXT2", "EXT4", "PROTO", "FRAME"}


def _tensor_from_args(args: Any) -> Any:
    """`_rebuild_tensor_v2(storage, offset, size, stride, ...)` -> TensorInfo, symbolically."""
    if not isinstance(args, tuple) or len(args) < 3 or not isinstance(args[0], Persistent):
        return Call(Global("torch._utils", "_rebuild_tensor_v2"), args)
    pid, size = args[0].pid, args[2]
    dtype = "unknown"
    if isinstance(pid, tuple) and len(pid) >= 2 and isinstance(pid[1], Global):
        dtype = STORAGE_DTYPES.get(pid[1].name, pid[1].name)
    shape = tuple(int(d) for d in size) if isinstance(size, tuple) else ()
    return TensorInfo(dtype, shape)


def collect_tensors(value: Any) -> dict[str, TensorInfo]:
    """Tensor name -> info from an unpickled-symbolically checkpoint.

    A Lightning or SD checkpoint nests the weights under "state_dict" (or "model",
    "module"); those wrapper names are dropped so keys read as the model's own."""
    tensors: dict[str, TensorInfo] = {}

    def walk(node: Any, prefix: str, depth: int) -> None:
        if depth > 6:
            return
        if isinstance(node, Call):
            node = node.items
        if not isinstance(node, dict):
            return
        for key, child in node.items():
            if not isinstance(key, str):
                continue
            if isinstance(child, TensorInfo):
                tensors[prefix + key] = child
            elif isinstance(child, (dict, Call)):
                inner = "" if key in WRAPPER_KEYS and not prefix else f"{prefix}{key}."
                walk(child, inner, depth + 1)

    walk(value, "", 0)
    return tensors


# "params_ema" / "params": BasicSR (SwinIR, HAT, DAT, Real-ESRGAN releases) wraps its weights so.
WRAPPER_KEYS = {"state_dict", "model", "module", "model_state_dict", "params", "params_ema"}


def _broken(exc: PickleError) -> PickleResult:
    """What a pickle that broke half-way imported. What it would have done with those globals
    cannot be known, so each counts as called."""
    found = list(getattr(exc, "globals", []))
    return PickleResult(None, found, found)


def classify_globals(
    found: list[tuple[str, str]], called: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The verdict on a pickle's globals.

    - "safe": only what a plain state dict needs (torch.load(weights_only=True) loads it);
    - "needs_classes": also harmless classes a loader must import (Lightning's
      ModelCheckpoint, omegaconf containers, a training script's own classes): imported,
      and the record names them;
    - "unsafe": a global that runs code on load: listed dangerous (ours or picklescan's),
      not vettable (a name computed at load time), or an unvetted function the pickle calls.
    """
    unique = sorted(set(found))
    calls = set(called or ())
    dangerous = [g for g in unique if _dangerous(g, g in calls)]
    needs = [g for g in unique if g not in dangerous and not _listed(SAFE_GLOBALS, g)]
    verdict = "unsafe" if dangerous else "needs_classes" if needs else "safe"
    return {
        "verdict": verdict,
        "globals": [f"{m}.{n}" for m, n in unique],
        "dangerous": [f"{m}.{n}" for m, n in dangerous],
        "needs_classes": [f"{m}.{n}" for m, n in needs],
        "loader_packages": sorted({p for g in needs if (p := _loader_package(g[0]))}),
    }


def _dangerous(glob: tuple[str, str], is_called: bool) -> bool:
    module, name = glob
    if "unknown" in glob or (module == "copyreg" and name.startswith("extension_")):
        return True  # computed at load time or looked up in a registry: cannot be vetted
    if _listed(DANGEROUS_GLOBALS, glob):
        return True
    if not is_called or _listed(SAFE_GLOBALS, glob) or _listed(HARMLESS_CALLS, glob):
        return False
    # Called and unvetted: a function (lower-case or private name) is code run on load; a
    # class (CapWords) called is its constructor rebuilding an object, as enums and paths do.
    leaf = name.rpartition(".")[2]
    return not leaf[:1].isupper()


def _loader_package(module: str) -> str | None:
    top = module.split(".")[0]
    return LOADER_PACKAGES.get(top, top if top not in ("builtins", "__builtin__") else None)


def _listed(table: dict[str, set[str] | str], glob: tuple[str, str]) -> bool:
    module, name = glob
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        names = table.get(".".join(parts[:i]))
        if names == "*" or (i == len(parts) and isinstance(names, set) and name in names):
            return True
    return False


def _picklescan_dangerous(data: bytes, label: str) -> list[str]:
    """A second opinion from picklescan, whose table of dangerous globals is kept upstream."""
    try:
        from picklescan.scanner import SafetyLevel, scan_pickle_bytes
    except ImportError:  # pragma: no cover - it is a declared dependency
        return []
    result = scan_pickle_bytes(io.BytesIO(data), label)
    return [f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous]


def _scan(
    name: str, data: bytes, found: list[tuple[str, str]], called: list[tuple[str, str]]
) -> dict:
    scan = classify_globals(found, called)
    extra = sorted(set(_picklescan_dangerous(data, name)) - set(scan["dangerous"]))
    if extra:
        scan["dangerous"] = sorted(scan["dangerous"] + extra)
        scan["needs_classes"] = [g for g in scan["needs_classes"] if g not in extra]
        scan["verdict"] = "unsafe"
    return scan


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


def inspect_torch_zip(path: Path, size: int) -> FileFacts:
    name = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            pickles = [i for i in infos if ("/" + i.filename).endswith("/data.pkl")]
            if not pickles:
                raise InvalidModelFile(f"{name} is a ZIP archive but not a PyTorch checkpoint.")
            member = min(pickles, key=lambda i: i.filename.count("/"))
            if member.file_size > MAX_PICKLE_BYTES:
                raise InvalidModelFile(
                    f"{name} holds a {member.file_size}-byte data.pkl, too large to scan safely."
                )
            data = zf.read(member)
            entries = len(infos)
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError) as exc:
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
    try:
        result = run_pickle(io.BytesIO(data))
    except PickleError as exc:
        raise InvalidModelFile(f"{name} holds a damaged data.pkl ({exc}).") from exc
    tensors = collect_tensors(result.value)
    scan = _scan(name, data, result.globals, result.called)
    details = _details(scan, tensors, {"entries": entries, "pickle_member": member.filename})
    return FileFacts(path, "torch-zip", size, details, tensors)


class _BoundedReader:
    """A file view that refuses to read past `limit` bytes and keeps what it read."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self.fh, self.limit, self.seen = fh, limit, bytearray()

    def tell(self) -> int:
        return len(self.seen)

    def read(self, n: int = -1) -> bytes:
        room = self.limit - len(self.seen)
        if n < 0 or n > room:
            n = room
        chunk = self.fh.read(n)
        self.seen += chunk
        return chunk

    def readline(self, limit: int = -1) -> bytes:  # GLOBAL/INT args are newline-terminated
        line = bytearray()
        while not line.endswith(b"\n"):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return bytes(line)

    def peek(self, n: int = 1) -> bytes:
        pos = self.fh.tell()
        data = self.fh.read(n)
        self.fh.seek(pos)
        return data


def inspect_pickle(path: Path, size: int) -> FileFacts:
    """A raw pickle: a legacy `torch.save` (magic, protocol, sys info, state, storage keys,
    then raw storage bytes) or any other pickle, of which every leading pickle is scanned."""
    name = path.name
    with open(path, "rb") as fh:
        reader = _BoundedReader(fh, MAX_PICKLE_BYTES)
        try:
            first = run_pickle(reader)
        except PickleError as exc:
            found = getattr(exc, "globals", [])
            if not found:
                raise InvalidModelFile(f"{name} is not a readable pickle ({exc}).") from exc
            first = _broken(exc)  # broken, but still judged by what it imports
        found, called = list(first.globals), list(first.called)
        value = first.value
        legacy = first.value == LEGACY_TORCH_MAGIC
        if legacy:
            parts = []
            try:
                for _ in range(4):  # protocol version, sys info, the state, storage keys
                    part = run_pickle(reader)
                    found += part.globals
                    called += part.called
                    parts.append(part.value)
            except PickleError as exc:
                found += getattr(exc, "globals", [])
                raise InvalidModelFile(f"{name} is a damaged legacy PyTorch file ({exc}).") from exc
            value = parts[2]
        else:
            # A second pickle is read only by code that asks for it, but hiding a payload
            # there costs nothing, so every pickle that follows directly is scanned too.
            for _ in range(MAX_EXTRA_PICKLES):
                if reader.peek(1)[:1] != b"\x80":
                    break
                try:
                    extra = run_pickle(reader)
                except PickleError as exc:
                    broken = _broken(exc)
                    found += broken.globals
                    called += broken.called
                    break
                found += extra.globals
                called += extra.called
        data = bytes(reader.seen)
    tensors = collect_tensors(value)
    scan = _scan(name, data, found, called)
    details = _details(scan, tensors, {"legacy_torch": legacy, "pickle_bytes": len(data)})
    return FileFacts(path, "pickle", size, details, tensors)
