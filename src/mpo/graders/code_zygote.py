"""Grader side of the code sandbox's fork server (``code_harness.py --serve``).

Starting ``python -I -B`` and importing the harness costs tens of milliseconds per program; the fork server
pays it once.  It is a trusted process that never runs candidate code: for each run it forks a supervisor
(see :mod:`mpo.graders.code_harness`) with the run's descriptors, which then builds the same sandbox as a cold
start.  One server per grader process, started lazily and restarted if it dies; :func:`spawn` returns a pidfd
of the supervisor, or raises ``OSError`` so the caller can fall back to a cold start.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import threading

_HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "code_harness.py")
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}


class _Server:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", _HARNESS, "--serve", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                env=_ENV, start_new_session=True, close_fds=True, pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self.sock = ours

    def spawn(self, config: dict, fds: list[int]) -> int | None:
        socket.send_fds(self.sock, [json.dumps(config).encode()], fds)
        reply, pidfds, _, _ = socket.recv_fds(self.sock, 16, 1)
        if reply == b"ok" and pidfds:
            return pidfds[0]
        if reply == b"gone":
            return None
        raise OSError("code fork server closed")

    def close(self) -> None:
        self.sock.close()  # the server exits on EOF
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_lock = threading.Lock()
_server: _Server | None = None


def spawn(config: dict, fds: list[int]) -> int | None:
    """Start a supervisor for one run via the fork server; its pidfd, or ``None`` if it already ended."""
    global _server
    with _lock:
        if _server is None or _server.proc.poll() is not None:
            if _server is not None:
                _server.close()
            _server = _Server()
        try:
            return _server.spawn(config, fds)
        except OSError:
            _server.close()
            _server = None
            raise


@atexit.register
def shutdown() -> None:
    """Stop the fork server (also happens when this process ends: the server sees EOF)."""
    global _server
    with _lock:
        if _server is not None:
            _server.close()
            _server = None
