"""The pickle scanner's verdicts on hand-made pickles, and the corpus test: every dangerous
(module, name) pair picklescan lists, every module fickling refuses, and every
standard-library callable with side effects we list, reached directly, through a dotted
path and through the memo, is refused; every allowlisted pair is exact (a near miss of it
is refused)."""

from __future__ import annotations

import io

import pytest
from factories import lightning_checkpoint_pickle, torch_state_dict_pickle
from picklescan.scanner import _unsafe_globals as PICKLESCAN_DANGEROUS

from modelimport.formats.pickle_scan import (
    MAX_NESTING,
    MAX_OPCODES,
    MAX_STACK,
    PickleError,
    PickleLimit,
    run_pickle,
)
from modelimport.formats.pickle_verdict import (
    CHECKPOINT_CLASSES,
    REFUSED_VERDICTS,
    WEIGHTS_ONLY,
    classify_globals,
)

# Standard-library callables that act on the system when called (spawn, write, delete, open
# sockets, load code, exit), beyond picklescan's table.
STDLIB_SIDE_EFFECTS = [
    ("os", "system"), ("os", "remove"), ("os", "execv"), ("posix", "system"),
    ("subprocess", "Popen"), ("subprocess", "check_output"), ("subprocess", "getoutput"),
    ("builtins", "exec"), ("builtins", "eval"), ("builtins", "open"),
    ("builtins", "__import__"), ("builtins", "getattr"), ("builtins", "compile"),
    ("shutil", "rmtree"), ("shutil", "copyfile"), ("pty", "spawn"), ("webbrowser", "open"),
    ("tkinter", "Tcl"), ("unittest", "TestProgram"), ("unittest", "main"),
    ("bz2", "BZ2File"), ("_pyio", "FileIO"), ("io", "FileIO"), ("_io", "FileIO"),
    ("mailbox", "Maildir"), ("gzip", "open"), ("lzma", "open"), ("tarfile", "open"),
    ("zipfile", "ZipFile"), ("tempfile", "mkdtemp"), ("sqlite3", "connect"),
    ("socket", "create_connection"), ("urllib.request", "urlopen"),
    ("http.client", "HTTPConnection"), ("smtplib", "SMTP"), ("ftplib", "FTP"),
    ("code", "interact"), ("runpy", "run_path"), ("importlib", "import_module"),
    ("pickle", "loads"), ("marshal", "loads"), ("ctypes", "CDLL"),
    ("multiprocessing", "Process"), ("threading", "Thread"), ("signal", "signal"),
    ("logging", "FileHandler"), ("codecs", "open"), ("shelve", "open"), ("dbm", "open"),
    ("sys", "exit"), ("atexit", "register"), ("pydoc", "pipepager"), ("pdb", "run"),
    ("timeit", "timeit"), ("cProfile", "run"), ("trace", "Trace"), ("site", "main"),
    ("glob", "glob"), ("pathlib", "Path.unlink"), ("os.path", "os.system"),
    ("mypkg.helpers", "_fetch_and_run"), ("mypkg.helpers", "fetch_and_run"),
    ("mypkg.helpers", "Loader"),
]  # fmt: skip


# Modules fickling refuses (trailofbits/fickling, fickling/fickle.py UNSAFE_IMPORTS).
FICKLING_UNSAFE_MODULES = (
    "__builtin__", "__builtins__", "builtins", "os", "posix", "nt", "subprocess", "sys", "pty",
    "commands", "multiprocessing", "_posixsubprocess", "code", "codeop", "runpy", "marshal",
    "types", "doctest", "_interpreters", "_xxsubinterpreters", "importlib",
    "_frozen_importlib", "_frozen_importlib_external", "_imp", "imp", "pkgutil", "zipimport",
    "gc", "site", "unittest", "inspect", "test", "_operator", "operator", "functools",
    "cProfile", "profile", "pdb", "bdb", "timeit", "trace", "socket", "ssl", "httplib", "http",
    "urllib", "urllib2", "requests", "aiohttp", "asyncio", "webbrowser", "smtplib", "imaplib",
    "ftplib", "poplib", "telnetlib", "nntplib", "ctypes", "_ctypes", "pickle", "_pickle",
    "dill", "cloudpickle", "joblib", "shutil", "tempfile", "filecmp", "distutils", "pydoc",
    "pexpect", "pipes", "venv", "ensurepip", "pip", "idlelib", "lib2to3", "socketserver",
    "xmlrpc", "signal", "_signal", "threading", "_thread", "atexit", "sqlite3", "_sqlite3",
    "fileinput", "glob", "platform", "linecache", "difflib", "compileall", "py_compile",
    "mmap", "select", "selectors", "logging", "syslog", "tarfile", "zipfile", "shelve", "uuid",
    "_osx_support", "_aix_support",
)


def _picklescan_pairs() -> list[tuple[str, str]]:
    pairs = []
    for module, names in PICKLESCAN_DANGEROUS.items():
        if names == "*":
            names = {"system", "Popen", "run"}  # any name of the module
        elif isinstance(names, str):
            names = {names}
        pairs += [(module, name) for name in sorted(names)]
    return pairs


CORPUS = sorted(set(_picklescan_pairs() + STDLIB_SIDE_EFFECTS
                    + [(module, "run") for module in FICKLING_UNSAFE_MODULES]))


def su(text: str) -> bytes:
    """SHORT_BINUNICODE + MEMOIZE, as protocol 4 writes a string."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw + b"\x94"


def checkpoint_with(call: bytes, proto: int = 4) -> bytes:
    """A state dict with one tensor whose "x" entry is `call` (pushes the called result)."""
    state = torch_state_dict_pickle({"w": ("F32", [4])})
    return bytes([0x80, proto]) + state[2:-2] + su("x") + call + b"u."


def direct(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n" + su("arg") + b"\x85R"


def dotted(module: str, name: str) -> bytes:
    # numpy + f2py.subprocess.Popen: find_class walks the attributes from the first module
    return su("numpy") + su(f"{module}.{name}") + b"\x93" + su("arg") + b"\x85R"


def through_memo(module: str, name: str) -> bytes:
    # the global is stored, dropped, fetched back from the memo, then called
    return su(module) + su(name) + b"\x93q\xfa0h\xfa" + su("arg") + b"\x85R"


def verdict_of(data: bytes) -> dict:
    result = run_pickle(io.BytesIO(data))
    return classify_globals(result.globals, result.called)


@pytest.mark.parametrize("route", ["direct", "dotted", "memo"])
def test_every_dangerous_pair_is_refused_as_unsafe_by_every_route(route: str):
    missed = []
    for module, name in CORPUS:
        if route == "direct":
            call = direct(module, name)
        elif route == "dotted":
            call = dotted(module, name)
        else:
            call = through_memo(module, name)
        scan = verdict_of(checkpoint_with(call))
        if scan["verdict"] != "unsafe" or not scan["dangerous"]:
            missed.append((module, name, scan["verdict"]))
    assert missed == []


def test_the_issue_generators_are_refused():
    # issue 19: numpy + f2py.subprocess.Popen, torch + ctypes.util.subprocess.Popen
    for module, name in (("numpy", "f2py.subprocess.Popen"),
                         ("torch", "ctypes.util.subprocess.Popen"), ("tkinter", "Tcl"),
                         ("unittest", "TestProgram"), ("bz2", "BZ2File"),
                         ("_pyio", "FileIO"), ("mailbox", "Maildir")):
        data = (b"\x80\x04}\x94(" + su("x") + su(module) + su(name) + b"\x93\x94(]\x94("
                + su("touch") + su("pwned.txt") + b"etRu.")
        assert verdict_of(data)["verdict"] == "unsafe", (module, name)


def test_a_lower_case_or_underscore_name_is_never_taken_for_a_class():
    # issue 25: the old rule let any called name through that looked like a class
    scan = verdict_of(checkpoint_with(direct("mypkg.helpers", "_fetch_and_run")))
    assert scan["verdict"] == "unsafe"
    assert scan["dangerous"] == ["mypkg.helpers._fetch_and_run"]
    scan = verdict_of(checkpoint_with(direct("mypkg.helpers", "Loader")))
    assert scan["verdict"] == "unsafe" and scan["dangerous"] == ["mypkg.helpers.Loader"]


def test_an_unknown_class_only_named_is_refused_as_unknown():
    # a training script's own class kept as a value: we cannot vouch for it
    data = checkpoint_with(b"cmypkg.nn\nGELU\n")
    scan = verdict_of(data)
    assert scan["verdict"] == "unknown" and scan["verdict"] in REFUSED_VERDICTS
    assert scan["unknown"] == ["mypkg.nn.GELU"] and scan["dangerous"] == []


def test_a_computed_global_name_is_unsafe():
    # STACK_GLOBAL whose module name is built at load time cannot be vetted
    data = b"\x80\x04\x8c\x01o\x8c\x01s\x86\x8c\x06system\x93N\x85R."
    assert verdict_of(data)["verdict"] == "unsafe"


def test_inst_obj_newobj_and_build_are_all_seen():
    for call in (b"(X\x01\x00\x00\x00aimypkg\nThing\n",  # INST
                 b"(cmypkg\nThing\nX\x01\x00\x00\x00ao",  # OBJ
                 b"cmypkg\nThing\n)\x81}b",  # NEWOBJ + BUILD
                 b"cmypkg\nThing\n)}\x92"):  # NEWOBJ_EX
        scan = verdict_of(checkpoint_with(call))
        assert scan["verdict"] in REFUSED_VERDICTS and "mypkg.Thing" in scan["globals"], call


def test_python2_names_are_judged_as_pickle_maps_them():
    assert verdict_of(checkpoint_with(direct("commands", "getoutput")))["verdict"] == "unsafe"
    scan = verdict_of(checkpoint_with(b"c__builtin__\nset\n)R"))  # builtins.set
    assert scan["verdict"] == "safe" and scan["globals"] == [
        "builtins.set", "collections.OrderedDict", "torch.FloatStorage",
        "torch._utils._rebuild_tensor_v2"]


def test_state_dicts_and_lightning_checkpoints_keep_their_verdicts():
    assert verdict_of(torch_state_dict_pickle({"w": ("F16", [2])}))["verdict"] == "safe"
    scan = verdict_of(lightning_checkpoint_pickle({"w": ("F16", [2])}))
    assert scan["verdict"] == "needs_classes"
    assert scan["needs_classes"] == [
        "numpy.core.multiarray.scalar", "numpy.dtype",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]
    assert scan["loader_packages"] == ["numpy", "pytorch-lightning"]


def test_a_known_checkpoint_class_called_is_unsafe():
    # ModelCheckpoint is a dict key in a checkpoint; calling it would run its __init__
    call = direct("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    assert verdict_of(checkpoint_with(call))["verdict"] == "unsafe"


def test_every_allowlisted_pair_is_exact():
    for module, name in sorted(WEIGHTS_ONLY | set(CHECKPOINT_CLASSES)):
        assert "*" not in module + name and module and name
        for near in ((module, f"{name}.os.system"), (f"{module}.os", name),
                     (module, f"os.{name}"), (f"{module}x", name), (module, f"{name}_")):
            scan = classify_globals([near], {near})
            assert scan["verdict"] == "unsafe", (near, scan)


def test_limits_are_clear_refusals():
    with pytest.raises(PickleLimit, match="opcodes"):
        run_pickle(io.BytesIO(b"\x80\x02" + b"N0" * (MAX_OPCODES // 2 + 10) + b"N."))
    with pytest.raises(PickleLimit, match="stack"):
        run_pickle(io.BytesIO(b"\x80\x02" + b"N" * (MAX_STACK + 10) + b"."))
    with pytest.raises(PickleLimit, match="nested"):
        run_pickle(io.BytesIO(b"\x80\x02})" + b"\x85" * (MAX_NESTING + 10) + b"Ns."))
    with pytest.raises(PickleLimit, match="nested"):
        deep = MAX_NESTING + 10  # lists appended into lists, innermost first
        run_pickle(io.BytesIO(b"\x80\x02" + b"]" * deep + b"a" * (deep - 1) + b"."))
    with pytest.raises(PickleLimit, match="argument"):
        run_pickle(io.BytesIO(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"."))
    with pytest.raises(PickleLimit, match="distinct globals"):
        run_pickle(io.BytesIO(b"\x80\x02" + b"".join(b"cm\nn%d\n0" % i for i in range(10_010))))
    assert verdict_of(checkpoint_with(b"cm\n" + b"x" * 2000 + b"\n0N"))["verdict"] == "unsafe"
    with pytest.raises(PickleError, match="line"):
        run_pickle(io.BytesIO(b"\x80\x02c" + b"a" * (1 << 17) + b"\n"))
