"""The code sandbox's child side: ``python -I -B code_harness.py CONFIG`` (standard library only).

Three processes, so that the candidate never shares an interpreter, an object or a writable channel with the
verdict:

* the **supervisor** (this script's process, started by :func:`mpo.graders.code.grade_code`) reads the program
  from stdin, installs the shared layers (:class:`~code_sandbox.Sandbox`: namespaces + tmpfs, rlimits, Landlock,
  no capabilities), forks the candidate, only *then* reads the tests and the run's token, forks the verifier,
  enforces the deadline, kills and reaps both, and writes the report (with the token) to the result pipe that
  only it holds;
* the **candidate** closes stdin and the result pipe, installs seccomp and the Python guard, runs the program,
  and then serves calls of its functions over a pipe, sending results back as plain data: built-in scalars and
  containers are copied; any other object (a class the candidate defined, a subclass of ``int``/``str``/...)
  stays in the candidate and is represented by an opaque :class:`RemoteRef` that equals only itself;
* the **verifier** runs the tests (``check(entry_point)`` / ``assert`` lines) in its own interpreter, where the
  program's functions are stubs that call into the candidate.  It decodes the candidate's replies with an
  unpickler that can build nothing but built-in values, so no candidate code ever runs in it.

The verdict is the verifier's; the candidate can crash, hang or lie about return values, but cannot see the
tests, the token, the verifier's frames or the result pipe.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import sys
import time

_DETAIL = 2000


def _load(name: str):
    """Sibling module *name* of this file, by path (``-I``: this directory is not on ``sys.path``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_mpo_" + name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_sandbox = _load("code_sandbox")
_remote = _load("code_remote")
recv_block, send_block = _remote.recv_block, _remote.send_block
_PRELOAD = ("faulthandler", "shutil", "subprocess", "typing", "re", "math", "random", "collections", "itertools",
            "functools", "heapq", "bisect", "string", "hashlib", "copy", "fractions", "decimal")


# --------------------------------------------------------------------------- #
# Supervisor
# --------------------------------------------------------------------------- #
def _dir_usage(path: str, limit_entries: int = 100_000) -> int:
    """Bytes allocated under *path* (no symlinks followed); the disk watch where no tmpfs could be mounted."""
    total, stack, seen = 0, [path], 0
    while stack and seen < limit_entries:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    info = entry.stat(follow_symlinks=False)
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


class Supervisor:
    """Owns the run: shared sandbox layers, the two forks, the deadline, the report."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.sandbox = _sandbox.Sandbox(config)
        self.result_fd = int(config["result_fd"])

    def report(self, status: str, message: str, **extra) -> None:
        payload = {"status": status, "message": message[-_DETAIL:], "layers": self.sandbox.layers,
                   "notes": self.sandbox.notes, **extra}
        send_block(self.result_fd, json.dumps(payload).encode())

    def setup(self) -> None:
        workdir = os.getcwd()
        sandbox = self.sandbox
        sandbox.undumpable()
        sandbox.isolate(workdir)
        sandbox.set_rlimits()
        sandbox.landlock(workdir)
        sandbox.drop_capabilities()

    def run(self) -> int:
        program = recv_block(0).decode("utf-8", errors="replace")
        try:
            self.setup()
        except Exception as exc:  # noqa: BLE001 - report sandbox failures, never run unsandboxed
            self.report("error", f"sandbox setup failed: {exc!r}")
            return 0
        candidate_in, verifier_out = os.pipe()  # verifier -> candidate: calls
        verifier_in, candidate_out = os.pipe()  # candidate -> verifier: replies
        me = os.getpid()
        candidate = os.fork()
        if candidate == 0:
            self._child(me, (candidate_in, candidate_out), self._run_candidate, program, candidate_in, candidate_out)
        job = json.loads(recv_block(0))  # tests and token: read only after the candidate has been forked
        verdict_read, verdict_write = os.pipe()
        verifier = os.fork()
        if verifier == 0:
            self._child(me, (verifier_in, verifier_out, verdict_write), self._run_verifier, job,
                        verifier_in, verifier_out, verdict_write)
        for fd in (candidate_in, verifier_out, verifier_in, candidate_out, verdict_write):
            os.close(fd)
        verdict, why = self._await(verdict_read, candidate)
        statuses = {}
        for name, pid in (("candidate", candidate), ("verifier", verifier)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            statuses[name] = os.waitpid(pid, 0)[1]
        self._final_report(verdict, why, statuses, job["token"])
        return 0

    def _child(self, parent: int, keep: tuple, body, *args) -> None:
        """Run *body* in a forked child that holds only stdout/stderr and *keep*; never returns."""
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            for fd in range(3, 64):
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self.sandbox.die_with_parent(parent)
            body(*args)
        finally:
            os._exit(0)

    def _run_candidate(self, program: str, fd_in: int, fd_out: int) -> None:
        require = bool(self.config["require_sandbox"])
        _remote.Candidate(self.sandbox, _sandbox.python_guard, require, fd_in, fd_out).run(program)

    def _run_verifier(self, job: dict, fd_in: int, fd_out: int, verdict_fd: int) -> None:
        self.sandbox.seccomp()
        _remote.Verifier(_remote.Channel(fd_out, fd_in), verdict_fd).run(job["tests"], job["entry_point"])

    def _await(self, fd: int, candidate: int) -> tuple[dict, str]:
        """Wait for the verifier's verdict until the deadline; ``({}, reason)`` if none came."""
        deadline = float(self.config["deadline"])
        watch_disk = "tmpfs" not in self.sandbox.layers
        disk_limit = int(self.config["disk_mb"]) * 1024 * 1024
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {}, "timeout"
            ready, _, _ = select.select([fd], [], [], min(left, 0.05) if watch_disk else left)
            if ready:
                try:
                    verdict = json.loads(recv_block(fd, 1 << 20))
                except (EOFError, ValueError, OSError):
                    return {}, "the verifier ended without a verdict"
                return (verdict if isinstance(verdict, dict) else {}), ""
            if watch_disk and _dir_usage(os.getcwd()) > disk_limit:
                return {}, f"disk limit exceeded ({self.config['disk_mb']} MB)"

    def _final_report(self, verdict: dict, why: str, statuses: dict, token: str) -> None:
        layers = verdict.get("candidate_layers")
        if isinstance(layers, list):
            self.sandbox.layers = [*dict.fromkeys([*self.sandbox.layers, *map(str, layers)])]
        if why == "timeout":
            self.report("timeout", "")
            return
        status, message = verdict.get("status"), str(verdict.get("message", why))
        if status == "passed":
            self.report("passed", message, token=token)
            return
        if status == "error":
            self.report("error", message)
            return
        code = statuses.get("candidate", 0)
        if verdict.get("candidate_gone") and os.WIFSIGNALED(code):
            signum = os.WTERMSIG(code)
            if signum in (signal.SIGXCPU, signal.SIGKILL):
                self.report("timeout", "CPU time limit")
                return
            message += f"\ncandidate killed by signal {signal.Signals(signum).name}"
        elif verdict.get("candidate_gone") and os.WIFEXITED(code):
            message += f"\ncandidate exited with code {os.WEXITSTATUS(code)} before the tests completed"
        self.report("failed", message)


def serve(sock_fd: int) -> int:
    """Fork server: pre-imported, forks one supervisor per request (``code_zygote`` is the client).

    A request is a JSON config with four descriptors (stdin, stdout, stderr, result pipe); the reply carries a
    pidfd of the new supervisor (none if it already ended).  The server ignores SIGCHLD and is a child
    subreaper, so supervisors and any orphaned candidate/verifier are reaped by the kernel.  It exits when the
    grader's end of the socket closes.
    """
    import socket

    for name in _PRELOAD:  # warm for every run: what the guard, HumanEval prompts and tests import most
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    _sandbox.Sandbox({}).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    sock = socket.socket(fileno=sock_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
        except OSError:
            return 0
        if not message or len(fds) != 4:
            return 0
        config = json.loads(message)
        pid = os.fork()
        if pid == 0:
            _supervise_forked(sock, config, fds)
        for fd in fds:
            os.close(fd)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # already ended (and reaped)
            sock.send(b"gone")
            continue
        socket.send_fds(sock, [b"ok"], [pidfd])
        os.close(pidfd)


def _supervise_forked(sock, config: dict, fds: list[int]) -> None:
    """In a child of the fork server: take the request's descriptors as 0-3 and run a :class:`Supervisor`."""
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        moved = [os.dup(fd) for fd in fds]  # above 3, so that the dup2s below cannot clobber each other
        for target, fd in enumerate(moved):
            os.dup2(fd, target)
        for fd in {*fds, *moved} - {0, 1, 2, 3}:
            os.close(fd)
        os.chdir(config["workdir"])
        os.environ.clear()
        os.environ.update(config["env"])
        code = Supervisor({**config, "result_fd": 3}).run()
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--serve":
        return serve(int(argv[1]))
    return Supervisor(json.loads(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
