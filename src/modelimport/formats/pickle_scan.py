"""Pickle scanning: a symbolic opcode machine that learns what a pickle holds and imports.

Nothing is ever unpickled. The opcodes are read with `pickletools.genops` and run through a
small machine that builds lists, dicts and tuples but represents every global as an inert
`Global` and every call as an inert `Call`; from that we learn the tensor names, dtypes and
shapes (`torch._utils._rebuild_tensor_v2` arguments), every global the pickle would import
and how it uses each one (called, or only referenced and built).

The verdict on those globals is `formats.pickle_verdict`.

Invariants (limits, each a `PickleLimit` the caller turns into one sentence):
- at most MAX_PICKLE_BYTES read from one file or inflated from one archive member, no single
  opcode argument above MAX_ARGUMENT_BYTES, no text line above MAX_LINE_BYTES;
- at most MAX_OPCODES opcodes, MAX_STACK stack entries, MAX_MEMO memo entries, and values
  nested at most MAX_NESTING deep (so nothing of ours recurses through attacker depth).
"""

from __future__ import annotations

import contextlib
import pickletools
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from modelimport.formats import TensorInfo
from modelimport.formats.pickle_verdict import COMPUTED, resolve_global

# What a scan keeps is bounded by what it reads: a data.pkl or a legacy file's pickles are
# kilobytes to a few MiB (tensor data lives outside them).
MAX_PICKLE_BYTES = 64 * 1024 * 1024
MAX_ARGUMENT_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_GLOBALS = 10_000  # distinct globals; a checkpoint names a few dozen
MAX_GLOBAL_NAME = 1024  # a longer module or name is not vetted: unsafe
# A checkpoint costs ~20 opcodes per tensor: 500,000 is 25,000 tensors (SDXL has ~2,500), and
# scanning that many takes ~2 s here, inside the 5 s a hostile file may cost.
MAX_OPCODES = 500_000
MAX_STACK = 100_000
MAX_MEMO = 500_000
MAX_NESTING = 1_000
MAX_KEPT_CONSTANT = 4096  # longer str/bytes constants are kept as their length only

# Storage class named in a tensor's persistent id -> dtype in safetensors spelling.
STORAGE_DTYPES = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "DoubleStorage": "F64", "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16",
    "CharStorage": "I8", "ByteStorage": "U8", "BoolStorage": "BOOL",
    "Float8_e4m3fnStorage": "F8_E4M3", "Float8_e5m2Storage": "F8_E5M2",
    "QInt8Storage": "I8", "QUInt8Storage": "U8",
}


STRING_OPCODE = b"S"


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(eq=False)
class Call:
    func: Any
    args: Any
    items: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Persistent:
    pid: Any


@dataclass(frozen=True)
class Opaque:
    """A constant too long to keep (a string or bytes of `size`)."""

    size: int


class _Mark:
    pass


_MARK = _Mark()


class PickleError(Exception):
    """A malformed pickle; `globals`/`called` say what it imported before it broke."""

    def __init__(self, message: str, globals_: list[tuple[str, str]] | None = None,
                 called: set[tuple[str, str]] | None = None, reads_on: bool = False) -> None:
        super().__init__(message)
        self.globals = list(globals_ or [])
        self.called = set(called or ())
        # a break of ours where pickle.load reads on (a UTF-8 STRING, a line past our limit):
        # what follows may import anything
        self.reads_on = reads_on


class PickleLimit(Exception):
    """A pickle beyond what we agree to scan; the message is the reason, one phrase."""


@dataclass
class PickleResult:
    value: Any
    globals: list[tuple[str, str]]
    # Globals the pickle calls itself (REDUCE, INST, OBJ), not only names or builds.
    called: set[tuple[str, str]] = field(default_factory=set)
    opcodes: int = 0


class BoundedReader:
    """A read-only view of a stream that refuses to go past `limit` bytes in all, refuses any
    single read above MAX_ARGUMENT_BYTES and any text line above MAX_LINE_BYTES."""

    def __init__(self, stream: BinaryIO, limit: int = MAX_PICKLE_BYTES,
                 available: int | None = None) -> None:
        self.stream, self.limit, self.position = stream, limit, 0
        self.available = available  # the file's size, when known
        self.last_byte = b""

    def tell(self) -> int:
        return self.position

    @property
    def room(self) -> int:
        return self.limit - self.position

    def _room(self, wanted: int) -> int:
        room = self.limit - self.position
        if self.available is not None and wanted > self.available - self.position:
            # pickle.load would fail here too, before doing anything with it
            raise PickleError(f"an argument of {wanted} bytes runs past the end of the file")
        if wanted > MAX_ARGUMENT_BYTES:
            raise PickleLimit(f"an opcode argument of {wanted} bytes")
        if wanted > room:
            raise PickleLimit(f"more than {self.limit >> 20} MiB of pickle")
        return wanted

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise PickleLimit("an unbounded read")
        chunk = self.stream.read(self._room(n))
        self.position += len(chunk)
        if n == 1:
            self.last_byte = chunk  # genops reads each opcode alone: the one being decoded
        return chunk

    def readline(self, limit: int = -1) -> bytes:  # GLOBAL, INT, STRING args end in "\n"
        line = self.stream.readline(min(MAX_LINE_BYTES, self.limit - self.position) + 1)
        self.position += len(line)
        if len(line) > MAX_LINE_BYTES:
            # a STRING pickle.load would read whole; any other long line it refuses too
            raise PickleError("a text argument longer than a line",
                              reads_on=self.last_byte == STRING_OPCODE)
        return line

    def peek(self, n: int = 1) -> bytes:
        peek = getattr(self.stream, "peek", None)
        return peek(n)[:n] if peek else b""


def run_pickle(stream: BinaryIO | BoundedReader) -> PickleResult:
    """Interpret one pickle symbolically, up to its STOP. Raise `PickleError` if it is
    malformed (with what it imported so far) and `PickleLimit` past a limit."""
    # genops decodes STRING arguments with codecs.escape_decode, which warns about invalid
    # escapes; in an untrusted file that is data to refuse, not a warning to print.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reader = stream if isinstance(stream, BoundedReader) else BoundedReader(stream)
        return _Machine().run(reader)


_CONTAINERS = (list, dict, tuple, Call, Persistent)


class _Machine:
    """The interpreter behind `run_pickle`. Globals are recorded before anything else is done
    with an opcode, so a pickle that breaks half-way still reports what it imported."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.memo: dict[Any, Any] = {}
        self.found: list[tuple[str, str]] = []  # each global once, in first-use order
        self.seen: set[tuple[str, str]] = set()
        self.called: set[tuple[str, str]] = set()
        # id of a container -> how deep it nests; containers stay referenced (stack, memo,
        # or a parent) while their id is looked up, and each new one overwrites its entry.
        self.depths: dict[int, int] = {}

    def run(self, stream: BoundedReader) -> PickleResult:
        count = 0
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                count += 1
                if count > MAX_OPCODES:
                    raise PickleLimit(f"more than {MAX_OPCODES:,} opcodes")
                if opcode.name == "STOP":
                    value = self.stack.pop() if self.stack else None
                    return PickleResult(value, self.found, self.called, count)
                self.step(opcode.name, opcode.arg is not None, arg)
                if len(self.stack) > MAX_STACK:
                    raise PickleLimit(f"a stack deeper than {MAX_STACK:,}")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, EOFError,
                UnicodeDecodeError) as exc:
            raise PickleError(str(exc) or type(exc).__name__, self.found, self.called,
                              reads_on=_ascii_only_here(exc, stream)) from exc
        except PickleError as exc:
            raise PickleError(str(exc), self.found, self.called, exc.reads_on) from exc
        raise PickleError("pickle ends without STOP", self.found, self.called)

    # -- values ------------------------------------------------------------------------------

    def depth(self, value: Any) -> int:
        return self.depths.get(id(value), 1) if isinstance(value, _CONTAINERS) else 0

    def made(self, value: Any, parts: Any) -> Any:
        """Record `value`'s nesting from the parts it holds; refuse past MAX_NESTING."""
        deepest = max((self.depth(p) for p in parts), default=0) + 1
        if deepest > MAX_NESTING:
            raise PickleLimit(f"values nested more than {MAX_NESTING} deep")
        if isinstance(value, _CONTAINERS):
            self.depths[id(value)] = max(deepest, self.depths.get(id(value), 0))
        return value

    def push(self, value: Any, parts: Any = ()) -> None:
        self.stack.append(self.made(value, parts))

    def pop_mark(self) -> list[Any]:
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise PickleError("MARK missing")

    def add_global(self, module: Any, name: Any) -> Global:
        if (isinstance(module, str) and isinstance(name, str)
                and len(module) + len(name) <= MAX_GLOBAL_NAME):
            glob = resolve_global(module, name)
        else:
            glob = COMPUTED  # built from computed values (or absurdly long): cannot be vetted
        if glob not in self.seen:
            if len(self.seen) >= MAX_GLOBALS:
                raise PickleLimit(f"more than {MAX_GLOBALS:,} distinct globals")
            self.seen.add(glob)
            self.found.append(glob)
        return Global(*glob)

    def flag(self, pseudo: tuple[str, str]) -> None:
        """Record something no allowlist can vouch for as a called global (`<...>` module)."""
        if pseudo not in self.seen:
            self.seen.add(pseudo)
            self.found.append(pseudo)
        self.called.add(pseudo)

    def call(self, func: Any, args: Any, invokes: bool = True) -> Any:
        if not isinstance(func, Global):
            # a callable that is no named global (an object the pickle made): calling it runs
            # whatever its class does, which no allowlist entry vouches for
            self.flag(COMPUTED)
        else:
            key = (func.module, func.name)
            if invokes:
                self.called.add(key)
            base = args[1] if isinstance(args, tuple) and len(args) > 1 else None
            if key == ("copyreg", "_reconstructor"):
                # it runs base.__init__(obj, state); a base that is an object, not a class,
                # runs its class's __init__ (a class the allowlist lets only be named)
                if isinstance(base, Global):
                    self.called.add((base.module, base.name))
                else:
                    self.flag(COMPUTED)
            if key in (("collections", "OrderedDict"), ("builtins", "dict")):
                return {}
            if key in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
                return _tensor_from_args(args)
            if key == ("torch._utils", "_rebuild_parameter") and isinstance(args, tuple) and args:
                return args[0]
        return self.made(Call(func, args), (func, args))

    def set_items(self, target: Any, pairs: list[Any]) -> None:
        container = target.items if isinstance(target, Call) else target
        if not isinstance(container, dict):
            return
        self.made(container, pairs)
        if isinstance(target, Call):
            self.made(target, (container,))
        for key, value in zip(pairs[::2], pairs[1::2], strict=False):
            with contextlib.suppress(TypeError):  # an unhashable symbolic key: not a tensor name
                container[key] = value

    # -- opcodes -----------------------------------------------------------------------------

    def step(self, name: str, has_arg: bool, arg: Any) -> None:  # noqa: C901 - one table
        stack = self.stack
        if name in ("PROTO", "FRAME"):
            return
        if name == "MARK":
            stack.append(_MARK)
        elif name in ("GLOBAL", "INST"):
            module, _, gname = str(arg).partition(" ")
            glob = self.add_global(module, gname)
            if name == "INST":
                items = tuple(self.pop_mark())
                stack.append(self.call(glob, self.made(items, items)))
            else:
                stack.append(glob)
        elif name == "STACK_GLOBAL":
            gname, module = stack.pop(), stack.pop()
            stack.append(self.add_global(module, gname))
        elif name in ("EXT1", "EXT2", "EXT4"):
            stack.append(self.add_global("copyreg", f"<extension {arg}>"))
        elif has_arg and name not in _ARG_OPS_HANDLED:
            if isinstance(arg, (str, bytes)) and len(arg) > MAX_KEPT_CONSTANT:
                arg = Opaque(len(arg))
            stack.append(arg)  # a constant: int, float, str, bytes, bool
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "EMPTY_DICT":
            self.push({})
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            self.push([])
        elif name == "EMPTY_TUPLE":
            self.push(())
        elif name == "DICT":
            items = self.pop_mark()
            target: dict = self.made({}, ())
            self.set_items(target, items)
            stack.append(target)
        elif name == "LIST":
            items = self.pop_mark()
            self.push(items, items)
        elif name in ("TUPLE", "FROZENSET"):
            items = self.pop_mark()
            self.push(tuple(items), items)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            if len(stack) < count:
                raise PickleError("stack underflow")
            items = stack[-count:]
            del stack[-count:]
            self.push(tuple(items), items)
        elif name in ("APPEND", "APPENDS", "ADDITEMS"):
            items = [stack.pop()] if name == "APPEND" else self.pop_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
                self.made(stack[-1], items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            self.set_items(stack[-1], [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.set_items(stack[-1], items)
        elif name in ("REDUCE", "NEWOBJ"):
            args, func = stack.pop(), stack.pop()
            # NEWOBJ is cls.__new__(cls, *args): an instance without the class's own
            # __init__; REDUCE calls the callable itself.
            stack.append(self.call(func, args, invokes=name == "REDUCE"))
        elif name == "NEWOBJ_EX":
            kwargs, args, func = stack.pop(), stack.pop(), stack.pop()
            stack.append(self.call(func, self.made((args, kwargs), (args, kwargs)), False))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleError("OBJ without a class")
            args = tuple(items[1:])
            stack.append(self.call(items[0], self.made(args, args)))
        elif name == "BUILD":
            state = stack.pop()
            if isinstance(stack[-1], Global):
                # BUILD on a class or function itself sets its attributes in the loading
                # process (setattr(argparse.Namespace, "__repr__", ...)): only objects the
                # pickle made are built, as torch's weights_only unpickler requires.
                self.flag(("<attributes set on>", f"{stack[-1].module}.{stack[-1].name}"))
            self.made(stack[-1], (state,))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if len(self.memo) >= MAX_MEMO:
                raise PickleLimit(f"more than {MAX_MEMO:,} memo entries")
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(self.memo[arg])
        elif name == "PERSID":
            stack.append(Persistent(arg))
        elif name == "BINPERSID":
            pid = stack.pop()
            self.push(Persistent(pid), (pid,))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            stack.append(None)
        else:
            raise PickleError(f"unhandled opcode {name}")


def _ascii_only_here(exc: Exception, stream: BoundedReader) -> bool:
    """genops decodes a protocol-0 STRING as ASCII, where torch.load's unpickler decodes UTF-8
    and reads on (other text arguments it refuses as non-ASCII too)."""
    return (isinstance(exc, UnicodeDecodeError) and exc.encoding == "ascii"
            and stream.last_byte == STRING_OPCODE)


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
    shape = tuple(d for d in size if isinstance(d, int)) if isinstance(size, tuple) else ()
    return TensorInfo(dtype, shape)


# "params_ema" / "params": BasicSR (SwinIR, HAT, DAT, Real-ESRGAN releases) wraps its weights so.
WRAPPER_KEYS = {"state_dict", "model", "module", "model_state_dict", "params", "params_ema"}


def collect_tensors(value: Any) -> dict[str, TensorInfo]:
    """Tensor name -> info from a symbolically unpickled checkpoint.

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


# What follows the point where a pickle broke for us: Python's unpickler may read on where
# pickletools stops (a protocol-0 STRING of UTF-8 text, which torch.load decodes as UTF-8),
# so whatever comes after is unread, and unread is not vetted.
UNREAD_REST = ("<the rest after a damaged opcode>", "")


def broken_pickle_scan(exc: PickleError) -> PickleResult:
    """What a pickle that broke half-way imported: what it would have done with those
    globals cannot be known, so each counts as called, and so does the unread rest."""
    found = [*exc.globals, UNREAD_REST]
    return PickleResult(None, found, set(found))
