"""The verdict on a pickle's globals: an allowlist of exact (module, qualified name) pairs.

Names are first mapped as `pickle.Unpickler.find_class` maps Python 2 names (`resolve_global`).
- "safe": only WEIGHTS_ONLY pairs (what `torch.load(weights_only=True)` accepts);
- "needs_classes": also CHECKPOINT_CLASSES pairs, known checkpoint classes used as a
  checkpoint uses them (Lightning's ModelCheckpoint as a dict key, omegaconf containers
  rebuilt); imported, and the record names them and the packages a loader needs;
- "unknown": any other global, only referenced or rebuilt: we cannot vouch for it (importing
  its module alone runs that module's code), so it is refused like "unsafe";
- "unsafe": a global that reaches a module or function in DANGEROUS_GLOBALS through any part
  of its dotted path (`os.path` + `os.system` is `os.system`), a name computed at load time,
  an extension-registry code, or any global outside the allowlist that the pickle calls.

DANGEROUS_GLOBALS never lets anything in: it only turns "unknown" into "unsafe", so a name
missing from it is still refused.
"""

from __future__ import annotations

import _compat_pickle
from typing import Any

# What torch.load(weights_only=True) accepts by default (torch/_weights_only_unpickler.py,
# `_get_allowed_globals`: each name as `str(dtype)` or `module.qualname` spells it), exact.
_STORAGES = (
    "FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage",
    "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
    "ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage",
    "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage",
)
_TENSOR_CLASSES = (
    "FloatTensor", "HalfTensor", "BFloat16Tensor", "DoubleTensor", "LongTensor", "IntTensor",
    "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor",
)
_DTYPES = (
    "float16", "float32", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8",
    "uint16", "uint32", "uint64", "bool", "complex32", "complex64", "complex128", "qint8",
    "quint8", "qint32", "quint4x2", "quint2x4", "float8_e4m3fn", "float8_e5m2",
    "float8_e4m3fnuz", "float8_e5m2fnuz",
    *(f"int{bits}" for bits in range(1, 8)), *(f"uint{bits}" for bits in range(1, 8)),
)
_QSCHEMES = (
    "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
    "per_channel_symmetric", "per_channel_affine_float_qparams",
)
_REBUILDS = (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
)
WEIGHTS_ONLY: frozenset[tuple[str, str]] = frozenset(
    {("torch", name) for name in _STORAGES + _TENSOR_CLASSES + _DTYPES + _QSCHEMES}
    | {("torch._utils", name) for name in _REBUILDS}
    | {
        ("collections", "OrderedDict"), ("collections", "Counter"),
        ("torch.nn.parameter", "Parameter"), ("torch.serialization", "_get_layout"),
        ("torch", "Size"), ("torch", "Tensor"), ("torch", "device"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
        ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "complex"),
        ("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"),
        ("torch._tensor", "_rebuild_from_type_v2"),
    }
)  # fmt: skip

# Known checkpoint globals that weights_only=True refuses but that only rebuild data, each
# exact -> whether a checkpoint may call it (a constructor of plain data, an enum rebuilt by
# value) or may only name it and rebuild it without running its code (NEWOBJ, BUILD):
# Lightning's callbacks are dict keys in SD 1.x checkpoints, and calling one runs __init__.
CHECKPOINT_CLASSES: dict[tuple[str, str], bool] = {
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): False,
    ("pytorch_lightning.callbacks.early_stopping", "EarlyStopping"): False,
    ("lightning.pytorch.callbacks.model_checkpoint", "ModelCheckpoint"): False,
    ("lightning.pytorch.callbacks.early_stopping", "EarlyStopping"): False,
    ("omegaconf.dictconfig", "DictConfig"): False,
    ("omegaconf.listconfig", "ListConfig"): False,
    ("omegaconf.base", "ContainerMetadata"): False,
    ("omegaconf.base", "Metadata"): False,
    ("omegaconf.nodes", "AnyNode"): False,
    ("omegaconf.nodes", "StringNode"): False,
    ("omegaconf.nodes", "IntegerNode"): False,
    ("omegaconf.nodes", "FloatNode"): False,
    ("omegaconf.nodes", "BooleanNode"): False,
    # numpy arrays and scalars (training scores, EMA counters) as numpy pickles them
    ("numpy", "dtype"): True,
    ("numpy", "ndarray"): True,
    ("numpy.core.multiarray", "_reconstruct"): True,
    ("numpy.core.multiarray", "scalar"): True,
    ("numpy._core.multiarray", "_reconstruct"): True,
    ("numpy._core.multiarray", "scalar"): True,
    ("numpy.random._pickle", "__randomstate_ctor"): True,
    ("numpy.random._pickle", "__generator_ctor"): True,
    ("numpy.random._pickle", "__bit_generator_ctor"): True,
    # object.__new__(cls) and cls.__new__(cls, ...): each class is judged by its own pair
    ("copyreg", "_reconstructor"): True,
    ("copyreg", "__newobj__"): True,
    ("copyreg", "__newobj_ex__"): True,
    ("builtins", "object"): True,
    ("argparse", "Namespace"): True,
    ("collections", "defaultdict"): True,
    **{("builtins", name): True for name in (
        "frozenset", "slice", "bytes", "int", "float", "str", "dict", "list", "tuple", "bool",
        "range")},
}  # fmt: skip

# Modules (a dotted prefix, "*") and functions that run code or touch the system on load:
# ours and picklescan's. They only sharpen "refused" into "unsafe": everything not allowlisted
# is refused anyway. Matched against every dotted part of a name, so a path through another
# module (`numpy` + `f2py.subprocess.Popen`) still meets `subprocess`.
DANGEROUS_GLOBALS: dict[str, set[str] | str] = {
    "os": "*", "posix": "*", "nt": "*", "subprocess": "*", "sys": "*", "shutil": "*",
    "socket": "*", "runpy": "*", "pty": "*", "webbrowser": "*", "importlib": "*",
    "code": "*", "commands": "*", "ctypes": "*", "multiprocessing": "*", "asyncio": "*",
    "pickle": "*", "_pickle": "*", "marshal": "*", "pip": "*", "requests": "*", "httplib": "*",
    "urllib": "*", "aiohttp": "*", "bdb": "*", "pdb": "*", "timeit": "*", "torch.hub": "*",
    "builtins": {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr",
                 "__import__", "globals", "locals", "vars", "input", "breakpoint", "apply",
                 "execfile", "file"},
    "operator": {"attrgetter", "methodcaller", "itemgetter"},
    "_operator": {"attrgetter", "methodcaller", "itemgetter"},
    "functools": {"partial", "reduce"},
    "torch": {"load", "save", "_load_global_deps"},
    "torch.serialization": {"load", "save", "_load"},
    "_ctypes": "*", "cffi": "*", "_io": "*", "io": {"open", "FileIO", "open_code"},
    "_pyio": "*", "codecs": {"open"}, "tempfile": "*", "shelve": "*", "dbm": "*",
    "sqlite3": "*", "zipfile": "*", "tarfile": "*", "bz2": "*", "gzip": "*", "lzma": "*",
    "mailbox": "*", "tkinter": "*", "_tkinter": "*", "unittest": "*", "test": "*",
    "logging": {"FileHandler"}, "logging.config": "*", "logging.handlers": "*",
    "http": "*", "socketserver": "*", "smtplib": "*", "ftplib": "*", "telnetlib": "*",
    "imaplib": "*", "poplib": "*", "xmlrpc": "*", "ssl": "*", "pydoc": "*",
    "distutils": "*", "setuptools": "*", "pkgutil": "*", "venv": "*", "ensurepip": "*",
    "idlelib": "*", "lib2to3": "*", "cProfile": "*", "profile": "*", "trace": "*",
    "doctest": "*", "signal": "*", "_thread": "*", "threading": "*", "concurrent": "*",
    "gc": "*", "inspect": "*", "_posixsubprocess": "*", "uuid": "*", "site": "*",
    "zipimport": "*", "imp": "*", "_osx_support": "*", "_aix_support": "*", "_pyrepl": "*",
    # fickling's list (trailofbits/fickling, fickle.py UNSAFE_IMPORTS) beyond the above
    "codeop": "*", "_interpreters": "*", "_xxsubinterpreters": "*", "_frozen_importlib": "*",
    "_frozen_importlib_external": "*", "_imp": "*", "pexpect": "*", "pipes": "*",
    "nntplib": "*", "_signal": "*", "atexit": "*", "_sqlite3": "*", "fileinput": "*",
    "glob": "*", "mmap": "*", "select": "*", "selectors": "*", "syslog": "*",
    "compileall": "*", "py_compile": "*", "urllib2": "*", "filecmp": "*", "linecache": "*",
    "__builtins__": "*",
    "types": {"CodeType", "FunctionType", "LambdaType", "MethodType", "ModuleType",
              "new_class"},
    "dill": "*", "cloudpickle": "*", "joblib": "*", "yaml": "*", "jinja2": "*",
    "torch.jit": "*", "torch._C": "*", "torch.package": "*", "torch.fx": "*",
    "torch.utils.cpp_extension": "*", "torch._dynamo": "*", "torch._inductor": "*",
    "torch.utils.collect_env": "*", "torch.utils.data.datapipes": "*",
    "torch.utils.bottleneck": "*", "torch.utils._config_module": "*",
    "numpy.f2py": "*", "numpy.testing": "*", "numpy.distutils": "*", "numpy.ctypeslib": "*",
    "numpy.lib.npyio": "*", "numpy": {"load", "loads", "fromfile"}, "pandas.io": "*",
}  # fmt: skip

# Top-level module of a needed class -> the package that provides it (the record's
# "loader needs"); None for the standard library.
LOADER_PACKAGES: dict[str, str | None] = {
    "pytorch_lightning": "pytorch-lightning", "lightning": "lightning",
    "omegaconf": "omegaconf", "numpy": "numpy", "argparse": None, "copyreg": None,
    "builtins": None, "collections": None,
}

REFUSED_VERDICTS = ("unknown", "unsafe")
COMPUTED = ("<computed>", "<computed>")  # a global whose name is built at load time



def resolve_global(module: str, name: str) -> tuple[str, str]:
    """The (module, qualified name) pickle would load, with Python 2 names mapped as
    `pickle.Unpickler.find_class` maps them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def classify_globals(
    found: list[tuple[str, str]], called: set[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The verdict on a pickle's globals (see the module docstring)."""
    unique = sorted(set(found), key=_dotted)
    calls = set(called or ())
    dangerous, unknown, needs = [], [], []
    for glob in unique:
        if glob in WEIGHTS_ONLY:
            continue
        if glob in CHECKPOINT_CLASSES and (CHECKPOINT_CLASSES[glob] or glob not in calls):
            needs.append(glob)
        elif glob in calls or _reaches_dangerous(glob):
            dangerous.append(glob)
        else:
            unknown.append(glob)
    verdict = ("unsafe" if dangerous else "unknown" if unknown
               else "needs_classes" if needs else "safe")
    return {
        "verdict": verdict,
        "globals": [_dotted(g) for g in unique],
        "dangerous": [_dotted(g) for g in dangerous],
        "unknown": [_dotted(g) for g in unknown],
        "needs_classes": [_dotted(g) for g in needs],
        "loader_packages": sorted({p for g in needs if (p := _loader_package(g[0]))}),
    }


def _dotted(glob: tuple[str, str]) -> str:
    return f"{glob[0]}.{glob[1]}" if glob[1] else glob[0]


def _reaches_dangerous(glob: tuple[str, str]) -> bool:
    """Whether any run of the global's dotted parts names a dangerous module or function:
    `find_class` walks attributes, so `os.path` + `os.system` reaches `os.system`."""
    module, name = glob
    if module.startswith("<") or name.startswith("<extension"):
        # computed at load time, looked up in a registry, or a class's own attributes set
        # (pickle_scan's `<...>` pseudo-globals): cannot be vetted
        return True
    # A module path is imported from its top (`mypkg.subprocess` is not `subprocess`); an
    # attribute may be any module the one before it imported.
    module_parts = module.split(".")
    parts = module_parts + name.split(".")
    for start in (0, *range(len(module_parts), len(parts))):
        for end in range(start + 1, min(len(parts), start + _LONGEST_ENTRY) + 1):
            names = DANGEROUS_GLOBALS.get(".".join(parts[start:end]))
            if names == "*":
                return True
            if isinstance(names, set) and end < len(parts) and parts[end] in names:
                return True
    return False


_LONGEST_ENTRY = max(key.count(".") + 1 for key in DANGEROUS_GLOBALS)


def _loader_package(module: str) -> str | None:
    top = module.split(".")[0]
    return LOADER_PACKAGES.get(top, top)
