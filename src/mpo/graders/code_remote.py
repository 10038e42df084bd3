"""Calls from the verifier into the candidate process, and their plain-data replies (standard library only).

Loaded by path by :mod:`code_harness` in the sandboxed interpreter.  The candidate (:class:`Candidate`) runs
the program and serves calls of its top-level names; the verifier (:class:`Verifier`) runs the tests against
:class:`RemoteFunction` stubs.  Replies are pickled by the candidate and decoded by :class:`_PlainUnpickler`,
which builds only built-in values and :class:`RemoteRef` (anything that was not plain data in the candidate:
equal only to itself), so a hostile ``__eq__`` or any other candidate code never runs in the verifier.
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import linecache
import os
import pickle
import sys
import traceback

_HEADER = 8  # bytes of big-endian length before each message
_MAX_MESSAGE = 64 * 1024 * 1024  # largest candidate reply the verifier reads
_MAX_DEPTH = 100  # nesting of a returned value before the rest stays a reference
_DETAIL = 2000
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


# --------------------------------------------------------------------------- #
# Framing
# --------------------------------------------------------------------------- #
def read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_block(fd: int, limit: int = _MAX_MESSAGE) -> bytes:
    size = int.from_bytes(read_exact(fd, _HEADER), "big")
    if size > limit:
        raise ValueError(f"message of {size} bytes exceeds {limit}")
    return read_exact(fd, size)


def send_block(fd: int, data: bytes, write=os.write) -> None:
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        view = view[write(fd, view) :]


def _traceback_text(exc: BaseException, skip: int = 0, limit: int = -8) -> str:
    tb = exc.__traceback__
    for _ in range(skip):
        tb = tb.tb_next if tb is not None else None
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb, limit=limit))[-_DETAIL:]
    except BaseException:  # noqa: BLE001
        return f"{type(exc).__name__} (traceback unavailable)"


def _register_source(filename: str, source: str) -> None:
    """Let tracebacks quote lines of code compiled from a string."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


# --------------------------------------------------------------------------- #
# Candidate side
# --------------------------------------------------------------------------- #
class _Ref:
    """Placeholder for a value that is not plain data; pickled as a persistent id."""

    __slots__ = ("index", "type_name")

    def __init__(self, index: int, type_name: str) -> None:
        self.index, self.type_name = index, type_name


def to_plain(obj, refs: list, depth: int = 0):
    """Copy *obj* into built-in scalars/containers; anything else becomes a :class:`_Ref` into *refs*."""
    kind = type(obj)
    if kind in _ATOMS:
        return obj
    if depth < _MAX_DEPTH:
        try:
            if kind is list or kind is tuple:
                return kind(to_plain(x, refs, depth + 1) for x in obj)
            if kind is set or kind is frozenset:
                return kind(to_plain(x, refs, depth + 1) for x in obj)
            if kind is bytearray:
                return bytearray(obj)
            if kind is dict or kind in _dict_like():
                return {to_plain(k, refs, depth + 1): to_plain(v, refs, depth + 1) for k, v in dict.items(obj)}
            numpy = sys.modules.get("numpy")
            if numpy is not None and isinstance(obj, numpy.generic):
                return to_plain(obj.item(), refs, depth + 1)  # np.int64(3) == 3, as the test would see it
        except Exception:  # noqa: BLE001 - e.g. an unhashable key built by a hostile __hash__: keep a reference
            pass
    refs.append(obj)
    return _Ref(len(refs) - 1, str(getattr(kind, "__name__", "object"))[:80])


def _dict_like() -> tuple:
    """Standard-library dict subclasses that compare like dicts (converted by exact type)."""
    collections = sys.modules.get("collections")
    if collections is None:
        return ()
    return tuple(getattr(collections, n, dict) for n in ("OrderedDict", "defaultdict", "Counter"))


class Candidate:
    """Runs the program, then serves ``call`` requests from the verifier."""

    def __init__(self, sandbox, guard, require_sandbox: bool, fd_in: int, fd_out: int) -> None:
        self.sandbox, self.guard, self.require_sandbox = sandbox, guard, require_sandbox
        self.fd_in, self.fd_out = fd_in, fd_out
        self.refs: list = []
        self.namespace: dict = {}
        self._read, self._write, self._exit = os.read, os.write, os._exit  # before the program can patch os

    def send(self, message) -> None:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=5)
        pickler.persistent_id = lambda obj: ("ref", obj.index, obj.type_name) if type(obj) is _Ref else None
        pickler.dump(message)
        send_block(self.fd_out, buffer.getvalue(), self._write)

    def receive(self):
        unpickler = pickle.Unpickler(io.BytesIO(recv_block(self.fd_in)))
        unpickler.persistent_load = self._resolve
        return unpickler.load()

    def _resolve(self, pid):
        return self.refs[pid[1]] if pid[0] == "ref" else self.namespace[pid[1]]

    def run(self, program: str) -> None:
        sandbox = self.sandbox
        sandbox.seccomp()
        if self.require_sandbox and not sandbox.kernel_fork_protection():
            reason = "; ".join(sandbox.notes)
            self.send(("error", f"refusing to run: no kernel-level protection against fork bombs ({reason})", []))
            self._exit(0)
        try:
            code = compile(program, "solution.py", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            self.send(("error", "".join(traceback.format_exception_only(type(exc), exc)), sandbox.layers))
            self._exit(0)
        _register_source("solution.py", program)
        self.namespace.update({"__name__": "__main__", "__file__": "solution.py", "__builtins__": builtins})
        layers = [*sandbox.layers, "python_guard"]
        self.guard()
        flush_out, flush_err = sys.stdout.flush, sys.stderr.flush
        try:
            exec(code, self.namespace)  # noqa: S102 - this is the sandbox
            flush_out()
            flush_err()
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
            text = _traceback_text(exc, skip=1)
            if isinstance(exc, SystemExit):
                text = f"program exited (SystemExit({exc.code!r})) before the tests completed\n" + text
            self.send(("failed", text, layers))
            self._exit(1)
        self.send(("ready", self._describe_names(), layers))
        self.serve(flush_out, flush_err)

    def _describe_names(self) -> list:
        names = []
        for name, value in list(self.namespace.items()):
            if name.startswith("__"):
                continue
            if type(value).__name__ == "module" and isinstance(getattr(value, "__name__", None), str):
                names.append((name, "module", value.__name__))
            elif callable(value):
                names.append((name, "call", None))
            else:
                names.append((name, "value", to_plain(value, self.refs)))
        return names

    def serve(self, flush_out, flush_err) -> None:
        while True:
            try:
                _, target, args, kwargs = self.receive()
            except EOFError:
                self._exit(0)
            try:
                function = self.refs[target[1]] if target[0] == "ref" else self.namespace[target[1]]
                reply = ("ok", to_plain(function(*args, **kwargs), self.refs))
            except BaseException as exc:  # noqa: BLE001 - reported to the verifier, which raises it in the test
                reply = ("raise", type(exc).__name__[:80], str(exc)[:1000], _traceback_text(exc, skip=1))
            try:
                flush_out()
                flush_err()
            except BaseException:  # noqa: BLE001 - output errors do not change a returned value
                pass
            self.send(reply)


# --------------------------------------------------------------------------- #
# Verifier side
# --------------------------------------------------------------------------- #
class CandidateGone(BaseException):
    """The candidate process ended (or exited) during a call; not an ``Exception``, so tests cannot swallow it."""


class RemoteRef:
    """A value that stayed in the candidate process (not plain data): equal only to itself."""

    __slots__ = ("_index", "_type_name", "_channel")

    def __init__(self, index: int, type_name: str, channel) -> None:
        self._index, self._type_name, self._channel = index, type_name, channel

    def __repr__(self) -> str:
        return f"<{self._type_name} object in the candidate process>"

    def __eq__(self, other) -> bool:
        return type(other) is RemoteRef and other._index == self._index

    def __hash__(self) -> int:
        return hash(("remote", self._index))

    def __call__(self, *args, **kwargs):
        return self._channel.call(("ref", self._index), args, kwargs)


class RemoteFunction:
    """A top-level callable of the program, called in the candidate process."""

    def __init__(self, name: str, channel) -> None:
        self.__name__ = self.name = name
        self._channel = channel

    def __repr__(self) -> str:
        return f"<function {self.name} in the candidate process>"

    def __call__(self, *args, **kwargs):
        return self._channel.call(("name", self.name), args, kwargs)


class _PlainUnpickler(pickle.Unpickler):
    """Builds only built-in values and :class:`RemoteRef`; every other global is refused."""

    _GLOBALS = {("builtins", "complex"): complex, ("builtins", "bytearray"): bytearray,
                ("builtins", "set"): set, ("builtins", "frozenset"): frozenset}

    def __init__(self, data: bytes, channel) -> None:
        super().__init__(io.BytesIO(data))
        self._channel = channel

    def find_class(self, module, name):
        try:
            return self._GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid):
        if type(pid) is tuple and len(pid) == 3 and pid[0] == "ref" and type(pid[1]) is int and type(pid[2]) is str:
            return RemoteRef(pid[1], pid[2], self._channel)
        raise pickle.UnpicklingError("bad reference")


class Channel:
    """The verifier's end of the pipes to the candidate."""

    def __init__(self, fd_out: int, fd_in: int) -> None:
        self.fd_out, self.fd_in = fd_out, fd_in

    def receive(self):
        try:
            data = recv_block(self.fd_in)
        except (EOFError, OSError) as exc:
            raise CandidateGone("the candidate process ended before the tests completed") from exc
        return _PlainUnpickler(data, self).load()

    def call(self, target: tuple, args: tuple, kwargs: dict):
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=5)
        pickler.persistent_id = _outgoing_id
        pickler.dump(("call", target, args, kwargs))
        try:
            send_block(self.fd_out, buffer.getvalue())
        except OSError as exc:
            raise CandidateGone("the candidate process ended before the tests completed") from exc
        reply = self.receive()
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if type(reply) is tuple and len(reply) == 4 and reply[0] == "raise":
            raise _remote_exception(*map(str, reply[1:]))
        raise CandidateGone(f"malformed reply from the candidate: {type(reply).__name__}")


def _outgoing_id(obj):
    if type(obj) is RemoteRef:
        return ("ref", obj._index)
    if type(obj) is RemoteFunction:
        return ("name", obj.name)
    return None


def _remote_exception(type_name: str, message: str, remote_traceback: str) -> BaseException:
    """The candidate's exception as a built-in exception of the same type where one exists."""
    cls = getattr(builtins, type_name, None)
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - constructors with other signatures
            exc = RuntimeError(f"{type_name}: {message}")
    elif isinstance(cls, type) and issubclass(cls, BaseException):  # SystemExit, KeyboardInterrupt, ...
        exc = CandidateGone(f"{type_name}({message}) raised in the candidate before the tests completed")
    else:
        exc = RuntimeError(f"{type_name}: {message}")
    exc.add_note("--- in the candidate ---\n" + remote_traceback)
    return exc


class Verifier:
    """Runs the tests against stubs of the program's names; reports the verdict to the supervisor."""

    def __init__(self, channel: Channel, verdict_fd: int) -> None:
        self.channel, self.verdict_fd = channel, verdict_fd

    def report(self, status: str, message: str, **extra) -> None:
        payload = json.dumps({"status": status, "message": message[-_DETAIL:], **extra}).encode()
        send_block(self.verdict_fd, payload)

    def run(self, tests: str, entry_point: str | None) -> None:
        try:
            hello = self.channel.receive()
        except CandidateGone as exc:
            self.report("failed", str(exc), candidate_gone=True)
            return
        except Exception as exc:  # noqa: BLE001 - undecodable first message
            self.report("failed", f"bad message from the candidate: {exc!r}")
            return
        status, payload, layers = hello if type(hello) is tuple and len(hello) == 3 else ("failed", "bad hello", [])
        if status != "ready":
            self.report(status if status in ("error", "failed") else "failed", str(payload), candidate_layers=layers)
            return
        namespace = self._namespace(payload, entry_point)
        source = tests.rstrip() + "\n" + (f"\ncheck({entry_point})\n" if entry_point is not None else "")
        try:
            code = compile(source, "tests.py", "exec")
        except (SyntaxError, ValueError) as exc:
            self.report("error", "tests: " + "".join(traceback.format_exception_only(type(exc), exc)))
            return
        _register_source("tests.py", source)
        try:
            exec(code, namespace)  # noqa: S102 - the tests (trusted text), against the candidate's stubs
        except CandidateGone as exc:
            self.report("failed", _traceback_text(exc, skip=1), candidate_gone=True, candidate_layers=layers)
            return
        except BaseException as exc:  # noqa: BLE001
            self.report("failed", _traceback_text(exc, skip=1), candidate_layers=layers)
            return
        self.report("passed", "all tests passed", candidate_layers=layers)

    def _namespace(self, names, entry_point: str | None) -> dict:
        """The program's names for the tests; names of built-ins (``abs``, ``len``, ...) stay the built-ins."""
        namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        for name, kind, value in names if isinstance(names, list) else []:
            if not isinstance(name, str) or (name in builtins.__dict__ and name != entry_point):
                continue
            if kind == "call":
                namespace[name] = RemoteFunction(name, self.channel)
            elif kind == "value":
                namespace[name] = value
            elif kind == "module" and isinstance(value, str) and all(p.isidentifier() for p in value.split(".")):
                # An installed module the program imported (``import math``) that the tests use by that name;
                # imported from the verifier's own sys.path (standard library and site-packages), which the
                # candidate cannot write to.
                try:
                    namespace[name] = importlib.import_module(value)
                except Exception:  # noqa: BLE001
                    pass
        return namespace
