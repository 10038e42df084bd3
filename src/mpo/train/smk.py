"""Helpers of workflow/rules/train.smk (kept out of the rule file, as Snakemake's linter wants).

Pure Python, no torch: the Snakefile imports it at parse time.
"""

from __future__ import annotations

import re

from mpo.config import config_hash
from mpo.train.variants import canonical_variant, mtp_dir_for, resolve_variant, trained_variants


def variant_pattern(config: dict) -> str:
    """Wildcard constraint: only variants that train (aliases are read through their target's directory)."""
    names = trained_variants(config)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def run_dir(results: str, model: str, dataset: str, variant: str, config: dict) -> str:
    return f"{results}/runs/{model}/{dataset}/{canonical_variant(config, variant)}"


def inputs(config: dict, results: str):
    """Input function of rule train: base model, train split, and the warm-up modules MPO (K > 1) starts from."""

    def files(wc):
        out = {"base": f"{results}/models/{wc.model}/base", "data": f"{results}/data/{wc.dataset}/train.jsonl"}
        mtp = mtp_dir_for(results, wc.model, resolve_variant(config, wc.variant))
        if mtp is not None:
            out["mtp"] = str(mtp)
        return out

    return files


def run_hash(config: dict, model: str, dataset: str, variant: str) -> str:
    """What a run depends on besides its input files (a rule param: editing it reruns the run)."""
    train = {k: v for k, v in config["train"].items() if k not in ("main_dataset", "main_variants", "tensorboard")}
    return config_hash({"train": train, "spec": resolve_variant(config, variant), "seed": config["seed"],
                        "device": config["device"], "dtype": config["dtype"], "model": config["models"][model]})


def launcher(config: dict, gpus: int) -> str:
    """``python`` or ``accelerate launch ...`` (``train.launcher``; auto = accelerate when the rule has > 1 GPU)."""
    t = config["train"]
    use_acc = t["launcher"] == "accelerate" or (t["launcher"] == "auto" and config["device"] == "cuda" and gpus > 1)
    if not use_acc:
        return "python"
    return (f"accelerate launch --config_file config/accelerate/{t['accelerate_config']}.yaml"
            f" --num_processes {max(int(gpus), 1)}")


def main_runs(config: dict, results: str) -> list[str]:
    """summary.json of the `train_main` target: train.main_variants x every model on train.main_dataset."""
    ds = config["train"]["main_dataset"]
    if ds not in config["datasets"]:
        return []
    variants = dict.fromkeys(canonical_variant(config, v) for v in config["train"]["main_variants"])
    return [f"{results}/runs/{m}/{ds}/{v}/summary.json" for m in config["models"] for v in variants]
