"""Shared pieces of the benchmarks: input paths, spread statistics, memory probes, the prepared tokenizer."""

from __future__ import annotations

import os
import statistics
from pathlib import Path


def bench_paths(cfg: dict, args) -> dict:
    from mpo.config import results_dir

    root = results_dir(cfg)
    model = args.model or next(iter(cfg["models"]))
    if model not in cfg["models"]:
        raise SystemExit(f"--model {model!r} is not in the config's `models` ({', '.join(cfg['models'])})")
    dataset = args.dataset or ("gsm8k" if "gsm8k" in cfg["datasets"] else next(iter(cfg["datasets"])))
    return {"model": model, "dataset": dataset,
            "base": Path(args.base or root / "models" / model / "base"),
            "mtp_root": Path(args.mtp_root or root / "models" / model),
            "data_root": Path(args.data_root or root / "data")}


def check_inputs(p: dict) -> None:
    if not (p["base"] / "config.json").is_file():
        raise SystemExit(f"no prepared model at {p['base']}: build it first "
                         f"(snakemake --cores all {p['base']} --configfile CONFIG)")
    train = p["data_root"] / p["dataset"] / "train.jsonl"
    if not train.is_file():
        raise SystemExit(f"no train split at {train}: build it first (snakemake --cores all {train} --configfile CONFIG)")


def spread(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "iqr_s": q[2] - q[0],
            "times_s": times}


def device_total_mem_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")



def setup_inputs(args) -> tuple[dict, dict, str, object]:
    """Shared start of the `rollout` and `warmup-step` commands: config, torch threads, checked input paths,
    device and the prepared model's tokenizer (pad = eos where it has none)."""
    from transformers import AutoTokenizer

    from mpo.config import load_config
    from mpo.utils import resolve_device, set_threads

    cfg = load_config(args.config)
    set_threads(args.threads or cfg["bench"]["threads"] or os.cpu_count() or 1)
    p = bench_paths(cfg, args)
    check_inputs(p)
    tok = AutoTokenizer.from_pretrained(p["base"])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return cfg, p, resolve_device(cfg["device"]), tok
