"""Integrity of what a training run writes: checkpoint manifests, one writer per run folder, finite weights.

- A checkpoint is *complete* only when its manifest exists. The manifest (``COMPLETE``, JSON) is written last,
  atomically (temporary file, fsync, rename), and lists the SHA-256 and size of every other file in the
  checkpoint. :func:`verify_checkpoint` recomputes them; a checkpoint whose files were truncated, zeroed or
  replaced fails verification and is never called "good".
- :class:`RunLock` holds an exclusive ``fcntl.flock`` on ``<run>/.lock`` for the trainer's lifetime, so a second
  trainer on the same run folder (an orphan left by a killed Snakemake, a duplicate submission) stops at once.
- :func:`nonfinite_parameters` names the parameters holding NaN or inf.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

import torch

from mpo import utils

MANIFEST = "COMPLETE"
_CHUNK = 1 << 20


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _payload_files(ckpt: Path) -> list[Path]:
    return sorted(p for p in ckpt.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.startswith(".tmp"))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and durably (fsync'd file and directory): :func:`mpo.utils.write_atomic`."""
    utils.write_atomic(path, text, durable=True)


def write_manifest(ckpt: Path, **extra) -> dict:
    """Hash every file of ``ckpt`` and write the manifest last; returns it."""
    files = {str(p.relative_to(ckpt)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in _payload_files(ckpt)}
    manifest = {**extra, "files": files}
    write_atomic(ckpt / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_checkpoint(ckpt: Path) -> list[str]:
    """The problems found in ``ckpt`` (empty when every file matches its manifest)."""
    mpath = ckpt / MANIFEST
    if not mpath.is_file():
        return [f"no manifest ({MANIFEST}): the checkpoint was never completed"]
    try:
        files = json.loads(mpath.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        return [f"unreadable manifest {mpath}: {e}"]
    problems = []
    for rel, want in files.items():
        p = ckpt / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_size != want["bytes"]:
            problems.append(f"{rel}: {p.stat().st_size} bytes, manifest says {want['bytes']}")
        elif sha256_file(p) != want["sha256"]:
            problems.append(f"{rel}: SHA-256 differs from the manifest")
    extra = sorted(str(p.relative_to(ckpt)) for p in _payload_files(ckpt))
    problems += [f"{rel}: not in the manifest" for rel in extra if rel not in files]
    return problems


def newest_verified(ckpts: list[Path]) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """Walk ``ckpts`` newest first; return the first that verifies and the damaged ones passed on the way."""
    damaged = []
    for ckpt in sorted(ckpts, reverse=True):
        problems = verify_checkpoint(ckpt)
        if not problems:
            return ckpt, damaged
        damaged.append((ckpt, problems))
    return None, damaged


class RunLock:
    """Exclusive, non-blocking ``flock`` on ``folder/<name>``, held until :meth:`release` (or process exit)."""

    def __init__(self, folder: Path, name: str = ".lock"):
        self.path = Path(folder) / name
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"another trainer ({holder}) is writing {self.path.parent}; two writers would interleave "
                f"metrics.jsonl and checkpoints. Stop it (or wait for it) and rerun.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def nonfinite_parameters(*models: torch.nn.Module, limit: int = 5) -> list[str]:
    """Names (at most ``limit``) of parameters that hold a NaN or an inf, over all ``models`` (sharded parameters: the
    local shard; the caller reduces over processes)."""
    bad = []
    for model in models:
        if model is None:
            continue
        for name, p in model.named_parameters():
            local = p.detach()
            local = local.to_local() if hasattr(local, "to_local") else local  # FSDP2 DTensor: this process's shard
            if not torch.isfinite(local).all():
                bad.append(name)
                if len(bad) >= limit:
                    return bad
    return bad
