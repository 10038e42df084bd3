"""Tests for mpo.graders: math-verify grading and the code sandbox.

The hostile-program tests run real attacks (fork bomb, deleting files, 50 GB
allocation, ...) against the sandbox.  They are written so that even a broken
sandbox cannot hurt the machine: the fork attempts are bounded, the files at
risk are sentinels in pytest's tmp_path, and the harness refuses to run at all
when no kernel-level fork protection is available.
"""

from __future__ import annotations

import os
import resource
import threading
import time

import pytest

from mpo.graders import (
    CodeGrader,
    CodeResult,
    MathGrader,
    extract_boxed,
    extract_code,
    grade_code,
    grade_math,
    probe_sandbox,
)

# --------------------------------------------------------------------------- #
# Math
# --------------------------------------------------------------------------- #
HANG = "<hang>"


def _sleepy_score(completion: str, gold: str) -> float:
    """Worker hook for the timeout tests: hangs on HANG, else grades normally."""
    if completion == HANG:
        time.sleep(600)
    from mpo.graders.math import score_math_answer

    return score_math_answer(completion, gold)


@pytest.fixture(scope="module")
def math_grader():
    with MathGrader(num_workers=2, timeout=10.0) as grader:
        yield grader


def test_extract_boxed():
    assert extract_boxed(r"so \boxed{1} then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert extract_boxed(r"\fbox{7}") == "7"
    assert extract_boxed(r"$\boxed 5$") == "5"
    assert extract_boxed(r"\boxed{3} and a cut-off \boxed{4") == "3"
    assert extract_boxed("no box here") is None
    assert extract_boxed("") is None


MATH_CASES = [
    (r"The answer is $\boxed{0.5}$.", r"\frac{1}{2}", 1.0),
    (r"\boxed{ 42 }", "42", 1.0),
    (r"so we get \boxed{\dfrac12}", r"\boxed{\frac{1}{2}}", 1.0),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    (r"\boxed{3\sqrt{2}}", r"\sqrt{18}", 1.0),
    (r"First \boxed{7}, no wait: \boxed{41}", "42", 0.0),
    (r"\boxed{43}", "42", 0.0),
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", 0.0),
]


def test_math_correct_incorrect_equivalent(math_grader):
    completions, golds, expected = zip(*MATH_CASES)
    assert math_grader.grade_batch(list(completions), list(golds)) == list(expected)


def test_grade_math_single_call():
    assert grade_math(r"\boxed{ 42 }", "42") == 1.0
    assert grade_math(r"\boxed{41}", "42") == 0.0


def test_math_garbage_is_wrong_not_a_crash(math_grader):
    garbage = ["", "}{", r"\boxed{", r"\frac{", "\x00\x01\ufffd", "$$$$", r"\boxed{\boxed{\boxed{}}}", "a" * 100_000]
    assert math_grader.grade_batch(garbage, ["1"] * len(garbage)) == [0.0] * len(garbage)
    assert math_grader.grade_batch([r"\boxed{1}"], [r"}{\frac"]) == [0.0]  # unparsable gold


def test_math_pathological_input_times_out(math_grader):
    """A power tower makes sympy compute forever; the worker is killed and replaced."""
    before = math_grader.num_timeouts
    start = time.monotonic()
    scores = math_grader.grade_batch([r"\boxed{9^{9^{9^{9^{9}}}}}", r"\boxed{2}"], ["3", "2"], timeout=1.5)
    elapsed = time.monotonic() - start
    assert scores == [0.0, 1.0]
    assert math_grader.num_timeouts == before + 1
    assert elapsed < 8
    assert math_grader.grade_batch([r"\boxed{5}"], ["5"]) == [1.0]  # pool still healthy


def test_math_hung_worker_replaced():
    with MathGrader(num_workers=2, timeout=1.0, score_fn=_sleepy_score) as grader:
        start = time.monotonic()
        scores = grader.grade_batch([HANG, r"\boxed{1}", HANG, r"\boxed{2}", HANG], ["1", "1", "2", "2", "3"])
        elapsed = time.monotonic() - start
        assert scores == [0.0, 1.0, 0.0, 1.0, 0.0]
        assert grader.num_timeouts == 3
        assert elapsed < 10
        assert grader.grade_batch([r"\boxed{3}"], ["3"]) == [1.0]


def test_math_batch_from_thread(math_grader):
    results: list = []
    thread = threading.Thread(target=lambda: results.append(math_grader.grade_batch([r"\boxed{0.5}", "7"], ["1/2", "8"])))
    thread.start()
    thread.join(60)
    assert results == [[1.0, 0.0]]


def test_math_length_mismatch(math_grader):
    with pytest.raises(ValueError):
        math_grader.grade_batch(["1"], [])


# --------------------------------------------------------------------------- #
# Code: ordinary programs
# --------------------------------------------------------------------------- #
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"


def test_extract_code():
    text = "Sure.\n```python\nx = 1\n```\nBetter:\n```python\ny = 2\n```\nDone."
    assert extract_code(text) == "y = 2\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code("```python\na = 1\n```\n```text\noutput\n```") == "a = 1\n"
    assert extract_code("```python\ncut = 'off'") == "cut = 'off'\n"
    assert extract_code("plain code") == "plain code"


def test_code_correct_wrong_syntax():
    assert grade_code(ADD, ADD_TESTS) == CodeResult(True, "passed", "all tests passed")
    wrong = grade_code(ADD.replace("+", "-"), ADD_TESTS)
    assert (wrong.passed, wrong.status) == (False, "failed")
    # the failing assertion is reported from the tests, which run in the verifier process (tests.py)
    assert "AssertionError" in wrong.detail and 'File "tests.py"' in wrong.detail
    syntax = grade_code("def add(a, b)\n    return a + b\n", ADD_TESTS)
    assert (syntax.passed, syntax.status) == (False, "error")
    assert "SyntaxError" in syntax.detail


def test_code_humaneval_style_entry_point():
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    assert grade_code(ADD, tests, entry_point="add").passed
    assert not grade_code(ADD.replace("+", "*"), tests, entry_point="add").passed
    assert grade_code(ADD, tests, entry_point="missing").status == "failed"  # NameError
    assert grade_code(ADD, tests, entry_point="add); import os; (").status == "error"


def test_code_legitimate_imports_pass():
    program = (
        "import math, itertools, re, collections, heapq, functools, string, random, numpy\n"
        "from collections import Counter\n"
        "def most_common_char(s):\n"
        "    return Counter(re.findall(r'\\w', s)).most_common(1)[0][0]\n"
    )
    tests = (
        "assert most_common_char('abca') == 'a'\n"
        "assert math.gcd(12, 18) == 6\n"
        "assert list(itertools.accumulate([1, 2, 3])) == [1, 3, 6]\n"
        "assert heapq.nsmallest(2, [5, 1, 4]) == [1, 4]\n"
        "assert int(numpy.arange(4).sum()) == 6\n"
        "import threading\n"
        "t = threading.Thread(target=print, args=('thread ok',)); t.start(); t.join()\n"
        "with open('scratch.txt', 'w') as f: f.write('own tmp dir is writable')\n"
    )
    result = grade_code(program, tests)
    assert result.passed, result.detail


def test_code_premature_exit_is_not_a_pass():
    for exit_call in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit\n"):
        result = grade_code(ADD + exit_call, ADD_TESTS + "assert False\n")
        assert not result.passed and result.status == "failed", (exit_call, result)


def test_code_grader_batch():
    programs = [ADD, ADD.replace("+", "-"), "while True: pass\n", ADD, "def add(:\n"]
    with CodeGrader(max_workers=2, timeout=2.0) as grader:
        results = grader.run_batch(programs, [ADD_TESTS] * 5)
        assert [r.status for r in results] == ["passed", "failed", "timeout", "passed", "error"]
        assert grader.grade_batch(programs[:2], [ADD_TESTS] * 2, [None, None]) == [1.0, 0.0]
        with pytest.raises(ValueError):
            grader.grade_batch(programs, [ADD_TESTS])


# --------------------------------------------------------------------------- #
# Code: hostile programs
# --------------------------------------------------------------------------- #
def _pids_in_group(pgid: int) -> list[int]:
    """Live processes whose process group is *pgid* (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


def _num_processes() -> int:
    return sum(entry.isdigit() for entry in os.listdir("/proc"))


def _assert_grader_alive():
    assert grade_code(ADD, ADD_TESTS).passed


@pytest.fixture(scope="module")
def layers() -> list[str]:
    return probe_sandbox()


def test_sandbox_layers_active(layers):
    assert "rlimits" in layers and "python_guard" in layers
    # Kernel-level protection against fork bombs (seccomp, or RLIMIT_NPROC when not root).
    assert "seccomp" in layers or "nproc" in layers, layers


def test_hostile_infinite_loop_is_killed():
    start = time.monotonic()
    program = "import os\nprint(os.getpid(), os.getpgrp(), flush=True)\nwhile True:\n    pass\n"
    result = grade_code(program, "", timeout=2.0)
    elapsed = time.monotonic() - start
    assert (result.passed, result.status) == (False, "timeout")
    assert 1.9 < elapsed < 6
    pid, group = map(int, result.detail.split("--- stdout ---\n")[1].split()[:2])
    assert group != pid  # the candidate is not the group leader: the supervisor is
    time.sleep(0.2)  # the supervisor has reaped its children before the grader returns; the server reaps it
    assert not _pids_in_group(group)  # the whole process group is dead (supervisor, candidate, verifier)
    assert not os.path.exists(f"/proc/{pid}")  # and reaped


def test_hostile_fork_bomb():
    procs_before = _num_processes()
    start = time.monotonic()
    result = grade_code("import os\nwhile True:\n    os.fork()\n", "", timeout=5.0)
    assert not result.passed
    assert time.monotonic() - start < 6
    # Bypassing the Python-level guard through libc hits the kernel filter.  Bounded
    # (at most 2**5 processes) so that even a broken sandbox cannot hurt the machine.
    program = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "forks = sum(libc.fork() >= 0 for _ in range(5))\n"
        "print('successful forks:', forks, flush=True)\n"
        "assert forks > 0\n"
    )
    result = grade_code(program, "", timeout=5.0)
    assert not result.passed
    assert "successful forks: 0" in result.detail
    assert _num_processes() < procs_before + 10
    _assert_grader_alive()


def test_hostile_kill_other_processes():
    program = (
        "import ctypes, os, signal\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "results = [libc.kill(os.getppid(), signal.SIGKILL), libc.kill(-1, signal.SIGKILL)]\n"
        "assert results != [-1, -1], results\n"
    )
    result = grade_code(program, "")
    assert not result.passed
    _assert_grader_alive()  # and this test process is still here


def test_hostile_delete_files_outside_tmp_dir(tmp_path, layers):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inner.txt").write_text("keep me too")
    program = (
        "import ctypes, os, shutil\n"
        f"targets = [{str(sentinel)!r}, {str(folder)!r}]\n"
        "attempts = [\n"
        "    lambda: os.remove(targets[0]),\n"
        "    lambda: shutil.rmtree(targets[1]),\n"
        "    lambda: __import__('posix').unlink(targets[0]),\n"
        "    lambda: os.truncate(targets[0], 0),\n"
        "]\n"
        f"if {'landlock' in layers}:  # bypasses of the Python guard need Landlock\n"
        "    attempts += [\n"
        "        lambda: ctypes.CDLL(None).unlink(targets[0].encode()),\n"
        "        lambda: open(targets[0], 'w').write('overwritten'),\n"
        "    ]\n"
        "for attempt in attempts:\n"
        "    try:\n"
        "        attempt()\n"
        "    except Exception:\n"
        "        pass\n"
        "assert not os.path.exists(targets[0])\n"
    )
    result = grade_code(program, "")
    assert not result.passed
    assert sentinel.read_text() == "keep me"
    assert (folder / "inner.txt").read_text() == "keep me too"
    _assert_grader_alive()


def test_hostile_huge_allocation():
    start = time.monotonic()
    result = grade_code("x = bytearray(50 * 1024**3)\n", "", timeout=10.0)
    assert (result.passed, result.status) == (False, "failed")
    assert "MemoryError" in result.detail
    assert time.monotonic() - start < 5


def test_hostile_reads_secret_environment(monkeypatch, layers):
    monkeypatch.setenv("MPO_TEST_SECRET", "hunter2-do-not-leak")
    # Reading the parent's /proc/<pid>/environ is stopped by Landlock, or by the
    # capability drop when running as root; an unprivileged run without Landlock
    # can read it (same user), so only the inherited environment is tested there.
    proc_protected = "landlock" in layers or "no_caps" in layers
    program = (
        "import os\n"
        "SECRET = 'hunter2-' + 'do-not-leak'\n"  # so the traceback does not quote it
        "found = [os.environ.get('MPO_TEST_SECRET', '')]\n"
        f"if {proc_protected}:\n"
        "    try:\n"
        "        found.append(open(f'/proc/{os.getppid()}/environ', 'rb').read().decode(errors='replace'))\n"
        "    except OSError as exc:\n"
        "        found.append(repr(exc))\n"
        "print(found)\n"
        "assert any(SECRET in text for text in found)\n"
    )
    result = grade_code(program, "")
    assert (result.passed, result.status) == (False, "failed")
    assert "AssertionError" in result.detail
    assert "hunter2-do-not-leak" not in result.detail


def test_hostile_huge_output():
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    printer = grade_code("while True:\n    print('x' * 10_000)\n", "", timeout=5.0)
    writer = grade_code("with open('big.bin', 'wb') as f:\n    while True:\n        f.write(b'x' * 2**20)\n", "", timeout=5.0)
    stubborn = grade_code(  # swallows the "file too large" errors and keeps going
        "while True:\n    try:\n        print('y' * 10_000)\n    except BaseException:\n        pass\n", "", timeout=2.0
    )
    elapsed = time.monotonic() - start
    for result in (printer, writer, stubborn):
        assert not result.passed
        assert len(result.detail) <= 2500
    assert "File too large" in printer.detail and "File too large" in writer.detail
    assert stubborn.status == "timeout"
    assert elapsed < 12
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert rss_growth_mb < 64
    _assert_grader_alive()
