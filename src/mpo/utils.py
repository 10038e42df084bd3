"""Small runtime helpers shared by every CLI: threads, seeds, device and dtype resolution, JSON IO."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np


def set_threads(n: int) -> None:
    """Honour Snakemake's `threads:` for torch and BLAS, and tune the allocator (:func:`tune_malloc`); every heavy
    CLI calls this first."""
    import torch

    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    tune_malloc()


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {"trim_threshold": 1 << 30, "top_pad": 256 << 20, "mmap_threshold": 512 << 20}


def tune_malloc() -> bool:
    """glibc: keep freed memory in the process (``M_TRIM_THRESHOLD`` 1 GiB, ``M_TOP_PAD`` 256 MiB) and serve blocks
    up to 512 MiB from the heap (``M_MMAP_THRESHOLD``; untuned, glibc mmaps every block above 32 MiB afresh, e.g. the
    [vocab, d] embedding gradient), instead of handing memory back to the kernel after every large free and
    page-faulting fresh zeroed pages for the next update's param-sized temporaries.
    Measured (PPO update, SmolLM2-135M, CPU, 1 thread): 0.2-0.5 M minor page faults and 0.2-0.8 s of system time
    per update -> ~0, wall time -6 %, peak RSS unchanged (5.27 vs 5.30 GB). Returns whether it was applied;
    ``MPO_MALLOC_TUNING=0`` turns it off (non-glibc platforms are left alone)."""
    if os.environ.get("MPO_MALLOC_TUNING", "1") == "0":
        return False
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only; musl has no mallopt tunables of these numbers)
    except (OSError, AttributeError):
        return False
    codes = {"trim_threshold": _M_TRIM_THRESHOLD, "top_pad": _M_TOP_PAD, "mmap_threshold": _M_MMAP_THRESHOLD}
    return all(libc.mallopt(codes[k], v) == 1 for k, v in MALLOC_SETTINGS.items())


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is available")
    return name


def resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def write_atomic(path: str | Path, text: str, durable: bool = False) -> None:
    """Write ``text`` to ``path`` so that a reader sees either the old file or the whole new one (a temporary file
    beside it, renamed over it). ``durable``: also fsync the file and its directory before returning, so the new
    content survives a power loss (checkpoint manifests); off for ordinary outputs, where it would cost an fsync each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{path.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_json(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=float))


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
