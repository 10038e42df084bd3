"""Math answer grading with `math-verify`, run in killable worker processes.

`math-verify` parses LaTeX answers into sympy objects and compares them
symbolically, so ``0.5``, ``\\frac{1}{2}`` and ``\\dfrac12`` are all the same
answer.  Its built-in timeouts rely on ``signal.alarm``, which only works in
the main thread and cannot interrupt C code reliably.  We therefore disable
them and enforce our own per-item deadline from the outside: every answer is
graded in a worker process, and a worker that misses its deadline is killed
and replaced, the item scoring 0.0.

Public API:

* :func:`extract_boxed` -- content of the last ``\\boxed{...}`` in a text
  (used to pull gold answers out of MATH reference solutions).
* :func:`grade_math` -- grade one completion against one gold answer.
* :class:`MathGrader` -- a context-managed pool for grading batches.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MathGrader", "extract_boxed", "grade_math", "score_math_answer"]

_BOXED_COMMANDS = ("\\boxed", "\\fbox")
_BOX_RE = re.compile(r"\\boxed|\\fbox")
_BRACE_RE = re.compile(r"(?<!\\)[{}]")  # a brace not preceded by a backslash
_SPACE_TOKEN_RE = re.compile(r"\s*([^\s$]+)")  # "\boxed 5": the first token before any "$"

#: Seconds a freshly started worker may take to import math-verify/sympy
#: before it is considered broken.  Not counted against per-item timeouts.
_WORKER_STARTUP_TIMEOUT = 180.0


# --------------------------------------------------------------------------- #
# Answer extraction and scoring (pure functions, run inside workers)
# --------------------------------------------------------------------------- #
def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in *text*.

    Braces are matched with a depth counter, so nested groups such as
    ``\\boxed{\\frac{1}{2}}`` come back whole (``\\frac{1}{2}``); escaped braces
    (``\\{``) do not count.  The brace-less form ``\\boxed 5`` used by a few MATH
    solutions is also understood (the content runs to the next ``$`` or
    whitespace).  Returns ``None`` when there is no complete boxed expression;
    an incomplete last box falls back to an earlier complete one.

    Linear time in ``len(text)`` (model text is parsed in the trainer's process,
    without a timeout): an unclosed box limits how far every earlier box is
    scanned, since none of them can close after it.
    """
    if not text:
        return None
    limit = len(text)
    starts = [match.end() for match in _BOX_RE.finditer(text)]
    for pos in reversed(starts):
        if pos < len(text) and text[pos] == " ":
            token = _SPACE_TOKEN_RE.match(text, pos + 1)
            if token:
                return token.group(1)
            continue
        if pos >= len(text) or text[pos] != "{" or pos >= limit:
            continue
        content = _braced_content(text, pos, limit)
        if content is not None:
            return content
        limit = pos  # unclosed: no earlier box can close after this point
    return None


def _braced_content(text: str, pos: int, limit: int) -> str | None:
    """Content of the group opening at ``text[pos] == "{"`` if it closes before *limit*, else ``None``."""
    depth = 0
    for match in _BRACE_RE.finditer(text, pos, limit):
        if match.group() == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return text[pos + 1 : match.start()].strip()
    return None


def _gold_to_latex(gold: str) -> str:
    """Wrap a bare gold answer in ``\\boxed{}`` so math-verify reads it whole."""
    if any(cmd in gold for cmd in _BOXED_COMMANDS):
        return gold
    return "\\boxed{" + gold.strip() + "}"


def score_math_answer(completion: str, gold: str) -> float:
    """Grade *completion* against *gold* in the current process (no timeout!).

    The gold answer is wrapped in ``\\boxed{}`` unless already boxed; the
    completion is parsed as-is, so math-verify picks its last boxed/final
    answer.  Any failure (empty parse, exception) counts as wrong.

    This runs math-verify with its own (signal-based) timeouts disabled and
    can therefore hang on adversarial input: use :class:`MathGrader` or
    :func:`grade_math`, which enforce a timeout, for untrusted completions.
    """
    try:
        from math_verify import parse, verify

        gold_parsed = parse(_gold_to_latex(gold), parsing_timeout=None)
        if not gold_parsed:
            return 0.0
        pred_parsed = parse(completion, parsing_timeout=None)
        if not pred_parsed:
            return 0.0
        return 1.0 if verify(gold_parsed, pred_parsed, timeout_seconds=None) else 0.0
    except BaseException:  # noqa: BLE001 - a crash in grading is a wrong answer
        return 0.0


# --------------------------------------------------------------------------- #
# Worker process
# --------------------------------------------------------------------------- #
def _worker_main(
    conn: multiprocessing.connection.Connection,
    score_fn: Callable[[str, str], float],
    memory_mb: int | None,
) -> None:
    """Worker loop: receive ``(completion, gold)`` pairs, send back scores.

    Sends ``"ready"`` once imports are done, so that start-up time is not
    charged to the first item.  Exits on ``None`` or when the pipe closes.
    """
    if memory_mb:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    logging.disable(logging.WARNING)  # math-verify warns on every unparsable answer
    try:
        import math_verify  # noqa: F401 - warm the import before reporting ready
    except ImportError:
        pass
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        completion, gold = task
        try:
            score = float(score_fn(completion, gold))
        except BaseException:  # noqa: BLE001
            score = 0.0
        try:
            conn.send(score)
        except (OSError, ValueError):
            return


@dataclass(eq=False)
class _Worker:
    """Parent-side handle of one worker process."""

    process: Any
    conn: multiprocessing.connection.Connection
    started_at: float
    ready: bool = False
    item: int | None = None  # index of the item being graded
    deadline: float = 0.0

    def kill(self) -> None:
        """Kill the process (SIGKILL) and release its resources."""
        try:
            self.process.kill()
        except (OSError, ValueError, AttributeError):
            pass
        self.process.join(timeout=5)
        self.conn.close()
        try:
            self.process.close()
        except ValueError:
            pass  # still running (should not happen after SIGKILL)


class MathGrader:
    """Pool of worker processes that grades math answers with a hard timeout.

    Use as a context manager::

        with MathGrader(num_workers=4, timeout=5.0) as grader:
            rewards = grader.grade_batch(completions, golds)

    Each item has *timeout* seconds of wall-clock time once a worker starts on
    it; on expiry the worker is SIGKILLed and replaced and the item scores
    0.0.  Workers are started lazily (first batch) from a ``forkserver`` that
    has math-verify preloaded, so replacing a hung worker is cheap.  The pool
    is safe to use from any thread (batches are serialised by a lock).

    Args:
        num_workers: worker processes (default: ``min(4, cpu_count)``).
        timeout: per-item wall-clock limit in seconds.
        memory_mb: address-space limit per worker (``None`` = unlimited), so
            that a runaway sympy expression raises ``MemoryError`` (score 0)
            instead of exhausting the machine.
        score_fn: picklable ``(completion, gold) -> float`` run in the workers;
            defaults to :func:`score_math_answer`.  Mainly a testing hook.
        start_method: multiprocessing start method (``"forkserver"`` or
            ``"spawn"``; ``"fork"`` is unsafe in threaded parents).
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout: float = 5.0,
        *,
        memory_mb: int | None = 4096,
        score_fn: Callable[[str, str], float] = score_math_answer,
        start_method: str = "forkserver",
    ) -> None:
        if num_workers is None:
            num_workers = min(4, os.cpu_count() or 1)
        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.num_workers = num_workers
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        self._score_fn = score_fn
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["math_verify", "sympy"])
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Number of workers killed because an item exceeded its timeout.
        self.num_timeouts = 0

    # -- lifecycle --------------------------------------------------------- #
    def __enter__(self) -> MathGrader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop all workers (idempotent)."""
        with self._lock:
            self._closed = True
            for worker in self._workers:
                try:
                    worker.conn.send(None)
                except (OSError, ValueError):
                    pass
            for worker in self._workers:
                worker.process.join(timeout=1)
                worker.kill()
            self._workers.clear()

    def _spawn_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._score_fn, self.memory_mb),
            daemon=True,
            name="mpo-math-grader",
        )
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn, started_at=time.monotonic())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)
        self._workers.append(self._spawn_worker())

    # -- grading ----------------------------------------------------------- #
    def grade_batch(
        self,
        completions: Sequence[str],
        golds: Sequence[str],
        *,
        timeout: float | None = None,
    ) -> list[float]:
        """Grade ``completions[i]`` against ``golds[i]``; returns 1.0/0.0 per item.

        Never raises for bad input: unparsable answers, exceptions in
        math-verify, crashed workers and timeouts all give 0.0.

        Args:
            completions: model outputs (the last boxed/final answer is used).
            golds: reference answers, bare (``"1/2"``) or already boxed.
            timeout: per-item override of the pool's timeout.
        """
        if len(completions) != len(golds):
            raise ValueError(f"{len(completions)} completions but {len(golds)} golds")
        limit = self.timeout if timeout is None else float(timeout)
        results = [0.0] * len(completions)
        if not completions:
            return results
        with self._lock:
            if self._closed:
                raise RuntimeError("MathGrader is closed")
            while len(self._workers) < min(self.num_workers, len(completions)):
                self._workers.append(self._spawn_worker())
            self._run(list(completions), list(golds), results, limit)
        return results

    def _run(self, completions: list[str], golds: list[str], results: list[float], limit: float) -> None:
        """Event loop dispatching items to workers until all are scored."""
        pending = deque(range(len(completions)))
        remaining = len(completions)
        startup_failures = 0
        while remaining:
            now = time.monotonic()
            # Hand pending items to idle, ready workers.
            for worker in self._workers:
                if pending and worker.ready and worker.item is None:
                    index = pending.popleft()
                    try:
                        worker.conn.send((str(completions[index]), str(golds[index])))
                    except (OSError, ValueError):  # worker died while idle
                        pending.appendleft(index)
                        self._replace(worker)
                        break
                    worker.item, worker.deadline = index, now + limit
            waiting = [w for w in self._workers if not w.ready or w.item is not None]
            deadlines = [w.deadline if w.ready else w.started_at + _WORKER_STARTUP_TIMEOUT for w in waiting]
            wait_for = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.0
            ready_conns = multiprocessing.connection.wait([w.conn for w in waiting], timeout=wait_for)
            now = time.monotonic()
            for worker in list(waiting):
                if worker.conn in ready_conns:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):  # worker crashed
                        message = None
                    if not worker.ready:
                        if message == "ready":
                            worker.ready = True
                        else:
                            startup_failures += 1
                            self._check_startup(startup_failures)
                            self._replace(worker)
                        continue
                    index, worker.item = worker.item, None
                    if isinstance(message, float):
                        results[index] = message
                    else:  # crash: score stays 0.0, worker is replaced
                        self._replace(worker)
                    remaining -= 1
                elif not worker.ready and now >= worker.started_at + _WORKER_STARTUP_TIMEOUT:
                    startup_failures += 1
                    self._check_startup(startup_failures)
                    self._replace(worker)
                elif worker.ready and now >= worker.deadline:
                    # Timed out: results[index] stays 0.0; kill and replace.
                    self.num_timeouts += 1
                    worker.item = None
                    remaining -= 1
                    self._replace(worker)

    def _check_startup(self, failures: int) -> None:
        """Raise if workers keep failing to start (broken environment)."""
        if failures > 3 * self.num_workers:
            raise RuntimeError(
                "MathGrader workers repeatedly failed to start (is math-verify installed? "
                "scripts that grade at import time need an `if __name__ == '__main__':` guard, "
                "since workers re-import the main module)"
            )


# --------------------------------------------------------------------------- #
# Single-item convenience API
# --------------------------------------------------------------------------- #
_default_grader: MathGrader | None = None
_default_lock = threading.Lock()


def _get_default_grader() -> MathGrader:
    global _default_grader
    with _default_lock:
        if _default_grader is None:
            _default_grader = MathGrader(num_workers=1)
            atexit.register(_default_grader.close)
        return _default_grader


def grade_math(completion: str, gold: str, timeout: float = 5.0) -> float:
    """Return 1.0 if *completion*'s final answer equals *gold*, else 0.0.

    Grades in a shared, lazily started one-worker :class:`MathGrader`, so the
    call is safe from any thread and never takes (much) longer than *timeout*
    seconds once the worker is up; for many items use
    :meth:`MathGrader.grade_batch` directly.
    """
    return _get_default_grader().grade_batch([completion], [gold], timeout=timeout)[0]
