"""The candidate/verifier split keeps ordinary programs and tests working (tests/test_graders_hostile.py: attacks)."""

from __future__ import annotations

import os
import signal

from mpo.graders import code_zygote
from mpo.graders.code import grade_code, throughput

CHECK = "def check(candidate):\n"


def test_plain_values_of_library_types_compare_as_in_process():
    program = (
        "import numpy as np\nfrom collections import Counter, OrderedDict\n"
        "def stats(xs):\n"
        "    return np.int64(sum(xs)), np.float64(0.5), Counter(xs), OrderedDict(a=1), (np.bool_(True), [np.int32(2)])\n"
    )
    tests = CHECK + "    assert candidate([1, 1, 2]) == (4, 0.5, {1: 2, 2: 1}, {'a': 1}, (True, [2]))\n"
    result = grade_code(program, tests, entry_point="stats")
    assert result.passed, result.detail


def test_candidate_exceptions_reach_the_tests_as_builtin_types():
    program = "def parse(s):\n    return int(s)\n"
    tests = CHECK + (
        "    try:\n        candidate('x')\n    except ValueError as exc:\n        assert 'invalid literal' in str(exc)\n"
        "    else:\n        raise AssertionError('no ValueError')\n    assert candidate('7') == 7\n"
    )
    result = grade_code(program, tests, entry_point="parse")
    assert result.passed, result.detail
    failing = grade_code("def parse(s):\n    raise KeyError(s)\n", CHECK + "    candidate('a')\n", entry_point="parse")
    assert failing.status == "failed" and "KeyError" in failing.detail and "solution.py" in failing.detail


def test_objects_of_program_classes_travel_as_references():
    """MBPP-style: the tests build objects with the program's class and pass them to its function."""
    program = (
        "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
        "def longest_chain(pairs, n):\n    return sum(p.b - p.a for p in pairs[:n])\n"
        "def make_adder(k):\n    return lambda x: x + k\n"
    )
    tests = (
        "assert longest_chain([Pair(1, 3), Pair(2, 7)], 2) == 7\n"
        "add3 = make_adder(3)\nassert add3(4) == 7\nassert add3 == add3 and add3 != make_adder(3)\n"
    )
    result = grade_code(program, tests)
    assert result.passed, result.detail


def test_helpers_and_imports_of_the_program_are_visible_to_the_tests():
    program = "import math\nSCALE = 10\ndef helper(x):\n    return x * SCALE\ndef f(x):\n    return math.floor(helper(x))\n"
    tests = "assert f(1.25) == 12\nassert helper(2) == 20 and SCALE == 10\nassert math.pi > 3\n"
    result = grade_code(program, tests)
    assert result.passed, result.detail


def test_fork_server_is_restarted_after_it_dies():
    assert grade_code("def f():\n    return 1\n", "assert f() == 1\n").passed
    server = code_zygote._server
    assert server is not None and server.proc.poll() is None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    assert grade_code("def f():\n    return 1\n", "assert f() == 1\n").passed
    assert code_zygote._server is not server and code_zygote._server.proc.poll() is None


def test_throughput_reports_passes_and_latency():
    problems = [
        {"id": "ok", "program": "def f():\n    return 1\n", "tests": "assert f() == 1\n"},
        {"id": "bad", "program": "def f():\n    return 2\n", "tests": "assert f() == 1\n"},
        {"id": "he", "solution": "def g(x):\n    return -x\n", "tests": CHECK + "    assert candidate(2) == -2\n",
         "entry_point": "g"},
    ]
    stats = throughput(problems, workers=2)
    assert (stats["n"], stats["passed"], stats["failed_ids"]) == (3, 2, ["bad"])
    assert 0 < stats["median_s"] <= stats["p90_s"] and stats["total_s"] > 0 and stats["per_s"] > 0
