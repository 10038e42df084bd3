"""Sandboxed execution of model-written Python against unit tests.

A candidate program is graded by running it against ``tests`` (MBPP: plain ``assert`` lines; HumanEval: a
``check(candidate)`` function, called with the program's ``entry_point``).  The program is untrusted: RL
policies find every hole.  What the sandbox guarantees, and what it does not, is written down in
``docs/reliability.md``; in short:

* **The verdict is decided outside the candidate's process.**  ``python -I -B code_harness.py`` (an empty
  environment, a fresh directory, a new session) forks the *candidate*, which runs the program and then serves
  calls of its functions, and the *verifier*, which runs the tests against stubs of those functions and decodes
  the replies as plain built-in data only (:mod:`mpo.graders.code_remote`).  The tests and the run's random
  token never enter the candidate's process, and only the supervisor holds the result pipe.
* **Kernel layers** (:mod:`mpo.graders.code_sandbox`): private network and mount namespaces with the run
  directory on a size-limited tmpfs, rlimits, Landlock, no capabilities, seccomp (no processes, exec, signals to
  others, sockets, io_uring), the Python guard.
* **Grader side** (this module): outputs go to anonymous memory files and the report to a pipe, both created here
  and read back through the descriptors, never by path; a wall-clock deadline kills the whole process group.

Public API: :func:`grade_code`, :class:`CodeGrader`, :class:`CodeResult`, :func:`extract_code`,
:func:`probe_sandbox`, :func:`throughput`.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mpo.graders import code_zygote
from mpo.graders.code_extract import extract_code

__all__ = ["CodeGrader", "CodeResult", "extract_code", "grade_code", "probe_sandbox", "throughput"]

#: Cap on the ``detail`` string of a :class:`CodeResult` (characters).
DETAIL_LIMIT = 2000
#: Bytes of candidate stdout/stderr read back.
_OUTPUT_READ_LIMIT = 8192
#: Bytes of the supervisor's report read back.
_RESULT_READ_LIMIT = 65536
#: Default cap on any single file the candidate writes (stdout/stderr included).
_DEFAULT_FSIZE_MB = 16
#: Default cap on the run directory as a whole (tmpfs size) and on its number of files.
_DEFAULT_DISK_MB = 64
_MAX_INODES = 4096
#: Seconds past the deadline before the grader kills the group itself (the supervisor normally does it).
_GRACE = 2.0
#: Largest program + tests accepted (bytes).
_MAX_PAYLOAD = 8 * 1024 * 1024
#: Fork each run's supervisor from a pre-started server (:mod:`mpo.graders.code_zygote`) instead of starting
#: a fresh interpreter; falls back to a cold start when the server is unavailable.
USE_FORK_SERVER = True
_HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "code_harness.py")


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
# Running one program
# --------------------------------------------------------------------------- #
def _truncate(text: str, limit: int = DETAIL_LIMIT) -> str:
    """Shorten *text* to about *limit* characters, keeping head and tail."""
    if len(text) <= limit:
        return text
    half = limit // 2 - 20
    return f"{text[:half]}\n...[{len(text) - 2 * half} chars truncated]...\n{text[-half:]}"


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
    """Wait up to *timeout* s for *proc*, then SIGKILL its process group; True if the timeout expired.

    The group is killed in every case while the leader is still unreaped, so its pid -- the group id --
    cannot have been recycled.
    """
    timed_out = False
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
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


def _feed(stdin, payload: bytes) -> None:
    """Write *payload* to the child's stdin without ever blocking the grader on a stuck child."""
    fd = stdin.fileno()
    try:
        capacity = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, max(65536, len(payload)))
    except OSError:
        capacity = 65536
    if capacity >= len(payload):
        try:
            stdin.write(payload)
            stdin.close()
        except OSError:
            pass  # the child is gone; classified from its report
        return

    def write() -> None:
        try:
            stdin.write(payload)
            stdin.close()
        except (OSError, ValueError):
            pass

    threading.Thread(target=write, daemon=True, name="mpo-code-feed").start()


def _read_report(fd: int) -> dict:
    """The supervisor's framed JSON report from the result pipe (all writers are dead); ``{}`` if none."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) < _RESULT_READ_LIMIT:
            chunk = os.read(fd, _RESULT_READ_LIMIT - len(data))
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    size = int.from_bytes(data[:8], "big") if len(data) >= 8 else -1
    try:
        report = json.loads(data[8 : 8 + size]) if 0 <= size <= len(data) - 8 else {}
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _read_output(fd: int, limit: int, *, tail: bool = False) -> str:
    """At most *limit* bytes of the memory file *fd* (the end if *tail*), decoded leniently."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, limit, max(0, size - limit) if tail else 0)
    return data.decode("utf-8", errors="replace")


def _execute(
    program: str,
    tests: str,
    entry_point: str | None,
    *,
    timeout: float,
    memory_mb: int,
    fsize_mb: int = _DEFAULT_FSIZE_MB,
    disk_mb: int = _DEFAULT_DISK_MB,
    max_processes: int = 16,
    require_sandbox: bool = True,
) -> tuple[CodeResult, list[str]]:
    """Run *program* against *tests* in the sandbox; return the result and the active layers."""
    token = secrets.token_hex(16)
    blocks = [program.encode("utf-8", "replace"),
              json.dumps({"tests": tests, "entry_point": entry_point, "token": token}).encode()]
    payload = b"".join(len(block).to_bytes(8, "big") + block for block in blocks)
    if len(payload) > _MAX_PAYLOAD:
        return CodeResult(False, "error", f"program and tests exceed {_MAX_PAYLOAD} bytes"), []
    start = time.monotonic()
    result_read, result_write = os.pipe()
    out, err = os.memfd_create("mpo-code-stdout"), os.memfd_create("mpo-code-stderr")
    config = {
        "memory_mb": int(memory_mb), "cpu_seconds": max(1, int(timeout) + 1), "fsize_bytes": int(fsize_mb) << 20,
        "disk_mb": int(disk_mb), "max_inodes": _MAX_INODES, "max_processes": int(max_processes),
        "require_sandbox": bool(require_sandbox), "deadline": start + timeout, "result_fd": result_write,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="mpo-code-", ignore_cleanup_errors=True) as workdir:
            fds = (out, err, result_write)
            outcome = _run_warm(config, payload, workdir, fds, timeout) if USE_FORK_SERVER else None
            if outcome is None:
                outcome = _run_cold(config, payload, workdir, fds, timeout)
            os.close(result_write)
            result_write = -1
            if isinstance(outcome, CodeResult):
                return outcome, []
            timed_out, returncode = outcome
            elapsed = time.monotonic() - start
            report = _read_report(result_read)
        stdout = _read_output(out, _OUTPUT_READ_LIMIT)
        stderr = _read_output(err, _OUTPUT_READ_LIMIT, tail=True)
    finally:
        for fd in (result_read, out, err, result_write):
            if fd >= 0:
                os.close(fd)
    layers = report.get("layers", []) if isinstance(report.get("layers"), list) else []
    result = _classify(returncode, timed_out, elapsed, timeout, report, token, stdout, stderr)
    return result, layers


def _run_cold(config: dict, payload: bytes, workdir: str, fds: tuple, timeout: float) -> tuple[bool, int] | CodeResult:
    """Start ``python -I -B code_harness.py`` for this run; ``(timed_out, returncode)``."""
    out, err, result_write = fds
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", _HARNESS, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=workdir, env=_child_env(workdir),
            start_new_session=True, close_fds=True, pass_fds=(result_write,),
        )
    except OSError as exc:
        return CodeResult(False, "error", f"could not start interpreter: {exc}")
    _feed(proc.stdin, payload)
    timed_out = _wait_then_kill_group(proc, timeout + _GRACE)
    return timed_out, proc.returncode


def _run_warm(config: dict, payload: bytes, workdir: str, fds: tuple, timeout: float) -> tuple[bool, int] | None:
    """Fork this run's supervisor from the fork server; ``(timed_out, 0)``, or ``None`` if the server is unavailable.

    The supervisor is not our child: it is waited for through its pidfd and, past the deadline, killed through
    it (the candidate and verifier die with it, ``PDEATHSIG``).  Its exit status is not known, so the verdict
    rests on the report and its token alone.
    """
    stdin_read, stdin_write = os.pipe()
    try:
        pidfd = code_zygote.spawn({**config, "workdir": workdir, "env": _child_env(workdir)}, [stdin_read, *fds])
    except OSError:
        os.close(stdin_write)
        return None
    finally:
        os.close(stdin_read)
    _feed(os.fdopen(stdin_write, "wb", buffering=0), payload)
    if pidfd is None:
        return False, 0
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout + _GRACE)
        if not ready:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 5.0)
        return not ready, 0
    finally:
        os.close(pidfd)


def _with_output(reason: str, stdout: str, stderr: str) -> str:
    """*reason* followed by the start of stdout and the end of stderr."""
    quarter = DETAIL_LIMIT // 4
    text = _truncate(reason, DETAIL_LIMIT // 2)
    if stdout.strip():
        text += "\n--- stdout ---\n" + stdout[:quarter] + ("..." if len(stdout) > quarter else "")
    if stderr.strip():
        text += "\n--- stderr ---\n" + ("..." if len(stderr) > quarter else "") + stderr[-quarter:]
    return text


def _classify(
    returncode: int, timed_out: bool, elapsed: float, timeout: float, report: dict, token: str, stdout: str,
    stderr: str,
) -> CodeResult:
    """Turn the raw outcome of a run into a :class:`CodeResult`."""
    status = report.get("status")
    message = str(report.get("message", ""))
    if timed_out or status == "timeout":
        reason = f"timed out after {min(elapsed, timeout):.1f}s" + (f" ({message})" if message else "")
        return CodeResult(False, "timeout", _with_output(reason, stdout, stderr))
    if status == "passed" and secrets.compare_digest(str(report.get("token", "")), token) and returncode == 0:
        return CodeResult(True, "passed", _truncate(message))
    if status == "error":
        return CodeResult(False, "error", _truncate(message))
    if status == "failed":
        return CodeResult(False, "failed", _with_output(message, stdout, ""))
    if returncode < 0:
        try:
            reason = f"sandbox killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"sandbox killed by signal {-returncode}"
    else:
        reason = f"sandbox exited with code {returncode} without a verdict"
    return CodeResult(False, "failed", _with_output(reason, stdout, stderr))


def grade_code(
    program: str,
    tests: str,
    *,
    entry_point: str | None = None,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    disk_mb: int = _DEFAULT_DISK_MB,
) -> CodeResult:
    """Run *program* against *tests* in a sandbox (see the module docstring and ``docs/reliability.md``).

    Args:
        program: candidate source (see :func:`extract_code` for completions).
        tests: MBPP-style ``assert`` lines, or HumanEval-style test code that
            defines ``check(candidate)``.
        entry_point: HumanEval function name; when given, ``check(entry_point)``
            is run after the tests' code.
        timeout: wall-clock seconds for the whole run (interpreter start-up
            included); the CPU-time limit per process is about the same.
        memory_mb: address-space limit of each sandboxed process.
        disk_mb: total size of the files the program may write (tmpfs size).

    Returns:
        A :class:`CodeResult`; this function does not raise for any program.
    """
    if entry_point is not None and not entry_point.isidentifier():
        return CodeResult(False, "error", f"invalid entry point {entry_point!r}")
    result, _ = _execute(program, tests, entry_point, timeout=timeout, memory_mb=memory_mb, disk_mb=disk_mb)
    return result


def probe_sandbox(timeout: float = 20.0) -> list[str]:
    """Names of the isolation layers that are active on this machine.

    Runs a trivial program; possible entries: ``"rlimits"``, ``"netns"``, ``"tmpfs"``, ``"landlock"``,
    ``"no_caps"``, ``"seccomp"``, ``"nproc"`` (``RLIMIT_NPROC`` enforced, i.e. not root; only where seccomp is
    missing), ``"python_guard"``.  Useful to log once at start-up.
    """
    _, layers = _execute("pass\n", "", None, timeout=timeout, memory_mb=1024, require_sandbox=False)
    return layers


class CodeGrader:
    """Grades batches of programs, running up to *max_workers* sandboxes at once.

    Each program runs in its own sandbox (see the module docstring), so a thread pool is enough to drive them::

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


def throughput(problems: Iterable[dict], *, workers: int = 1, timeout: float = 10.0) -> dict:
    """Grade each ``{"program" (or "solution"), "tests", "entry_point"}`` and time it.

    Returns ``n``, ``passed``, ``failed_ids`` (the ``id`` or index of every non-passing problem), the per-problem
    latency ``median_s``/``mean_s``/``p90_s`` (each program graded on its own, ``workers`` at a time) and the
    batch's ``total_s`` and ``per_s``.  For ``make bench``: the HumanEval canonical solutions should all pass.
    """
    items = list(problems)
    latencies = [0.0] * len(items)
    results: list[CodeResult | None] = [None] * len(items)

    def one(index: int) -> None:
        item = items[index]
        begin = time.perf_counter()
        results[index] = grade_code(item.get("program", item.get("solution", "")), item["tests"],
                                    entry_point=item.get("entry_point"), timeout=timeout)
        latencies[index] = time.perf_counter() - begin

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(len(items))))
    total = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "n": len(items),
        "passed": sum(bool(r and r.passed) for r in results),
        "failed_ids": [item.get("id", i) for i, (item, r) in enumerate(zip(items, results)) if not (r and r.passed)],
        "workers": max(1, workers),
        "median_s": statistics.median(latencies) if items else 0.0,
        "mean_s": statistics.fmean(latencies) if items else 0.0,
        "p90_s": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if items else 0.0,
        "total_s": total,
        "per_s": len(items) / total if total > 0 else 0.0,
    }
