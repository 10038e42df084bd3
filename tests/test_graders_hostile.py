"""Hostile programs that try to forge a pass or reach outside the code sandbox (issue 15).

Each test is an attack that worked against the single-process harness (the candidate ran by ``exec`` in the
frame that held the verdict, outputs were read back by path): it must fail to pass, leak, hang or escape now.
The attacks are bounded (a few hundred MB of writes at most, one datagram, one connect), so even a broken
sandbox cannot hurt the machine.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest

import mpo.graders.code as code_module
from mpo.graders.code import grade_code

CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(10, -4) == 6\n"
WRONG_ADD = "def add(a, b):\n    return 0\n"


@pytest.fixture(autouse=True, params=["fork_server", "cold_start"])
def start_mode(request, monkeypatch):
    """Every attack against both ways a run starts: forked from the fork server, or a fresh interpreter."""
    monkeypatch.setattr(code_module, "USE_FORK_SERVER", request.param == "fork_server")
    return request.param


def _must_not_pass(program: str, tests: str = CHECK, entry_point: str | None = "add", **kwargs):
    result = grade_code(program, tests, entry_point=entry_point, **kwargs)
    assert not result.passed, result
    return result


# --------------------------------------------------------------------------- #
# Forging the verdict
# --------------------------------------------------------------------------- #
def test_walking_up_stack_frames_to_the_verdict_does_not_pass():
    """The old harness exec'd the candidate in a frame whose locals held ``report``, the token and ``exit_now``."""
    program = WRONG_ADD + (
        "import sys\n"
        "frame = sys._getframe()\n"
        "while frame is not None:\n"
        "    scope = frame.f_locals\n"
        "    if 'report' in scope and 'token' in scope:\n"
        "        scope['report']('passed', 'forged', token=scope['token'])\n"
        "        scope.get('exit_now', __import__('os')._exit)(0)\n"
        "    frame = frame.f_back\n"
    )
    _must_not_pass(program)


def test_trace_hook_replacing_check_does_not_pass():
    program = WRONG_ADD + (
        "import sys\n"
        "def _noop(candidate):\n"
        "    return None\n"
        "def _local(frame, event, arg):\n"
        "    if 'check' in frame.f_globals and frame.f_globals['check'] is not _noop:\n"
        "        frame.f_globals['check'] = _noop\n"
        "    return _local\n"
        "sys.settrace(lambda frame, event, arg: _local)\n"
        "sys._getframe().f_trace = _local\n"
    )
    _must_not_pass(program)


@pytest.mark.parametrize("base", ["object", "int", "str", "list"])
def test_return_value_equal_to_everything_does_not_pass(base):
    program = (
        f"class Always({base}):\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    def __ne__(self, other):\n"
        "        return False\n"
        "    __hash__ = object.__hash__\n"
        "def add(a, b):\n"
        "    return Always()\n"
    )
    _must_not_pass(program)
    # the same value nested in a container
    _must_not_pass(program.replace("return Always()", "return [Always()]"),
                   "def check(candidate):\n    assert candidate(1, 1) == [2]\n")


def test_shadowing_builtins_used_by_the_tests_does_not_pass():
    """HumanEval float checks read ``abs(candidate(x) - y) < 1e-6``: a program-level ``abs`` must not be theirs."""
    program = "def abs(x):\n    return 0\ndef len(x):\n    return 3\ndef add(a, b):\n    return 0.0\n"
    tests = ("def check(candidate):\n    assert abs(candidate(2, 3) - 5) < 1e-6\n"
             "    assert len(str(candidate(1, 1))) == 3\n")
    _must_not_pass(program, tests)


def test_candidate_cannot_read_the_expected_answers():
    """The tests (with their expected values) never enter the candidate's process: not as a file, not in memory."""
    program = (
        "import gc, linecache, sys\n"
        "def _search():\n"
        "    texts = [o for o in gc.get_objects() if isinstance(o, str) and 'MAGIC_' in o and o != 'MAGIC_']\n"
        "    for name in ('solution.py', __file__, 'tests.py'):\n"
        "        try:\n"
        "            texts.append(open(name).read())\n"
        "        except Exception:\n"
        "            pass\n"
        "        texts += linecache.getlines(name)\n"
        "    for text in texts:\n"
        "        found = [w for w in text.replace(\"'\", ' ').split() if w.startswith('MAGIC_') and w != 'MAGIC_']\n"
        "        if found:\n"
        "            return found[0]\n"
        "    return None\n"
        "def answer():\n"
        "    return _search()\n"
    )
    tests = "def check(candidate):\n    assert candidate() == 'MAGIC_" + "7f3a9c'\n"
    _must_not_pass(program, tests, entry_point="answer")


# --------------------------------------------------------------------------- #
# Attacks on how the grader reads the outputs back
# --------------------------------------------------------------------------- #
OUTPUT_NAMES = ("'.stdout', '.stderr', '.grader_result.json'")


def test_symlinked_output_files_do_not_leak_files_into_detail(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-" + "c0ffee")
    os.chmod(secret, 0o600)
    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"for name in ({OUTPUT_NAMES}):\n"
        "    libc.unlink(name.encode())\n"
        f"    os.symlink({str(secret)!r}, name)\n"
        "print('symlinks planted', flush=True)\n"
        "raise SystemExit(3)\n"
    )
    result = _must_not_pass(program, "", entry_point=None)
    assert "TOP-SECRET-c0ffee" not in result.detail


def test_named_pipe_outputs_do_not_hang_the_grader():
    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"for name in ({OUTPUT_NAMES}):\n"
        "    libc.unlink(name.encode())\n"
        "    os.mkfifo(name)\n"
        "print('workdir', os.environ['HOME'], flush=True)\n"
        "raise SystemExit(3)\n"
    )
    results: list = []
    thread = threading.Thread(target=lambda: results.append(grade_code(program, "", timeout=5.0)), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "grader thread hangs on a named pipe"
    assert time.monotonic() - start < 10
    assert not results[0].passed


# --------------------------------------------------------------------------- #
# Network and disk
# --------------------------------------------------------------------------- #
def test_no_udp_to_localhost():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(1.0)
    port = receiver.getsockname()[1]
    try:
        program = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.sendto(b'leaked-datagram', ('127.0.0.1', {port}))\n"
        )
        grade_code(program, "")
        with pytest.raises(socket.timeout):
            receiver.recvfrom(100)
    finally:
        receiver.close()


def test_no_unix_socket_connects(tmp_path):
    stream_path, dgram_path = str(tmp_path / "s.sock"), str(tmp_path / "d.sock")
    abstract = f"\0mpo-test-{os.getpid()}-{time.monotonic_ns()}"
    servers = []
    for kind, address in ((socket.SOCK_STREAM, stream_path), (socket.SOCK_DGRAM, dgram_path),
                          (socket.SOCK_STREAM, abstract)):
        server = socket.socket(socket.AF_UNIX, kind)
        server.bind(address)
        if kind == socket.SOCK_STREAM:
            server.listen(1)
        server.settimeout(0.5)
        servers.append(server)
    try:
        program = (
            "import socket\n"
            "reached = []\n"
            f"for kind, address in ((socket.SOCK_STREAM, {stream_path!r}), (socket.SOCK_DGRAM, {dgram_path!r}),\n"
            f"                      (socket.SOCK_STREAM, {abstract!r})):\n"
            "    try:\n"
            "        s = socket.socket(socket.AF_UNIX, kind)\n"
            "        s.connect(address)\n"
            "        s.send(b'leaked')\n"
            "        reached.append(address)\n"
            "    except OSError as exc:\n"
            "        print('blocked', exc)\n"
            "print('reached', reached)\n"
        )
        grade_code(program, "")
        for server in servers:
            with pytest.raises(socket.timeout):
                if server.type == socket.SOCK_STREAM:
                    server.accept()
                else:
                    server.recvfrom(100)
    finally:
        for server in servers:
            server.close()


def test_total_disk_use_is_capped():
    """RLIMIT_FSIZE caps each file; the run as a whole must be capped too (was: 24 x 16 MB = 384 MB)."""
    program = (
        "total = 0\n"
        "try:\n"
        "    for i in range(24):\n"
        "        with open(f'f{i}.bin', 'wb') as f:\n"
        "            for _ in range(16):\n"
        "                f.write(b'x' * 2**20)\n"
        "                f.flush()\n"
        "                total += 2**20\n"
        "except OSError as exc:\n"
        "    print('stopped:', exc)\n"
        "print('total MB', total >> 20, flush=True)\n"
        "raise SystemExit(1)\n"
    )
    result = grade_code(program, "", timeout=20.0)
    written = re.search(r"total MB (\d+)", result.detail)
    assert written, result.detail
    assert int(written.group(1)) <= 128, result.detail
