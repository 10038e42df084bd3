"""Helpers of workflow/rules/train.smk (kept out of the rule file, as Snakemake's linter wants), and the launcher of
a training job: ``python -m mpo.train.smk launch --config CFG --model M --gpus N -- -m mpo.train ...`` runs the
command under plain ``python`` or ``accelerate launch`` with the run's strategy (config/accelerate/<strategy>.yaml)
on the GPUs the job actually got (the rule's ``gpu`` resource, after any cap of a profile), and across nodes when the
SLURM allocation has several: one ``accelerate launch`` per node through ``srun``, rank = ``SLURM_NODEID``,
rendezvous at the first host of ``scontrol show hostnames $SLURM_JOB_NODELIST``.

Pure Python, no torch: the Snakefile imports it at parse time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping

from mpo.config import config_hash
from mpo.train import variants
from mpo.train.variants import canonical_variant, mtp_dir_for, resolve_variant, trained_variants


def variant_pattern(config: dict) -> str:
    """Wildcard constraint: only variants that train (aliases are read through their target's directory)."""
    names = trained_variants(config)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def run_dir(results: str, model: str, dataset: str, variant: str, config: dict) -> str:
    """:func:`mpo.train.variants.run_dir` as the string Snakemake paths want."""
    return str(variants.run_dir(results, model, dataset, variant, config))


def inputs(config: dict, results: str):
    """Input function of rule train: base model, train split, and the warm-up modules MPO (K > 1) starts from."""

    def files(wc):
        out = {"base": f"{results}/models/{wc.model}/base", "data": f"{results}/data/{wc.dataset}/train.jsonl"}
        mtp = mtp_dir_for(results, wc.model, resolve_variant(config, wc.variant))
        if mtp is not None:
            out["mtp"] = str(mtp)
        return out

    return files


def cli_args(config_file: str, results: str):
    """Param function of rule train: ``launch`` arguments (the job's GPUs, after any cap of a profile) and then the
    ``python -m mpo.train`` arguments of the run (``--mtp`` for MPO with K > 1)."""

    def args(wc, input, resources) -> str:
        mtp = f" --mtp {input.mtp}" if "mtp" in input.keys() else ""
        return (f"--config {config_file} --model {wc.model} --gpus {resources.gpu} -- -m mpo.train"
                f" --config {config_file} --model {wc.model} --dataset {wc.dataset} --variant {wc.variant}"
                f" --base {input.base}{mtp} --data-root {results}/data"
                f" --out {results}/runs/{wc.model}/{wc.dataset}/{wc.variant}")

    return args


def run_hash(config: dict, model: str, dataset: str, variant: str) -> str:
    """What a run depends on besides its input files (a rule param: editing it reruns the run)."""
    train = {k: v for k, v in config["train"].items() if k not in ("main_dataset", "main_variants", "tensorboard")}
    return config_hash({"train": train, "spec": resolve_variant(config, variant), "seed": config["seed"],
                        "device": config["device"], "dtype": config["dtype"], "model": config["models"][model]})


RDZV_PORT = 29500
NESTED = "MPO_LAUNCH_NODE"  # set by our own srun: this process is one node's launcher


def accelerate_config(config: dict, model: str) -> str:
    """config/accelerate/<name>.yaml of a model's run: train.strategy[model], else train.accelerate_config."""
    t = config["train"]
    return f"config/accelerate/{t['strategy'].get(model) or t['accelerate_config']}.yaml"


def uses_accelerate(config: dict, gpus: int) -> bool:
    """``train.launcher``: auto = accelerate when the job has more than one GPU (on CUDA)."""
    t = config["train"]
    return t["launcher"] == "accelerate" or (t["launcher"] == "auto" and config["device"] == "cuda" and gpus > 1)


def slurm_hostnames(nodelist: str) -> list[str]:
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def launch_argv(config: dict, config_path: str, model: str, gpus: int, command: list[str],
                env: Mapping[str, str] | None = None, hostnames: Callable[[str], list[str]] = slurm_hostnames,
                python: str = sys.executable) -> list[str]:
    """The argv that runs ``python <command>`` for a training job of ``gpus`` GPUs (all nodes together);
    ``config_path`` is the file ``config`` was read from (the per-node launchers read it again)."""
    env = os.environ if env is None else env
    gpus = max(int(gpus), 1)
    if not uses_accelerate(config, gpus):
        return [python, *command]
    nodes = int(env.get("SLURM_NNODES", "1") or 1)
    if nodes > 1 and not env.get(NESTED):
        # one launcher per node: this same command again, inside an srun step of one task per node
        return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                f"--export=ALL,{NESTED}=1", python, "-m", "mpo.train.smk", "launch", "--config", config_path,
                "--model", model, "--gpus", str(gpus), "--", *command]
    argv = [python, "-m", "accelerate.commands.launch", "--config_file", accelerate_config(config, model),
            "--num_processes", str(gpus)]
    if (config["train"]["strategy"].get(model) or config["train"]["accelerate_config"]) == "fsdp":
        fsdp = config["train"]["fsdp"]
        argv += ["--fsdp_reshard_after_forward", str(fsdp["reshard"]).lower(),
                 "--mixed_precision", "bf16" if fsdp["mixed_precision"] == "bf16" else "no"]
    if nodes > 1:
        if gpus % nodes:
            raise ValueError(f"{gpus} GPUs do not split evenly over {nodes} nodes (config resources.gpu.gpus / nodes)")
        master = hostnames(env["SLURM_JOB_NODELIST"])[0]
        argv += ["--num_machines", str(nodes), "--machine_rank", str(int(env["SLURM_NODEID"])),
                 "--main_process_ip", master, "--main_process_port", str(RDZV_PORT), "--rdzv_backend", "static"]
    return [*argv, *command]


def main_runs(config: dict, results: str) -> list[str]:
    """summary.json of the `train_main` target: train.main_variants x every model on train.main_dataset."""
    ds = config["train"]["main_dataset"]
    if ds not in config["datasets"]:
        return []
    variants = dict.fromkeys(canonical_variant(config, v) for v in config["train"]["main_variants"])
    return [f"{results}/runs/{m}/{ds}/{v}/summary.json" for m in config["models"] for v in variants]


def main(argv=None) -> int:
    """``launch ... -- <python arguments>``: exec the training command under the launcher of the job's GPUs and
    nodes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, command = argv[:split], argv[split + 1:]
    ap = argparse.ArgumentParser(prog="python -m mpo.train.smk", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["launch"])
    ap.add_argument("--config", required=True, help="resolved config (results/<name>/config.resolved.yaml)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--gpus", type=int, required=True, help="GPUs of the job (the rule's gpu resource)")
    args = ap.parse_args(own)
    if not command:
        ap.error("no command after `--` (e.g. -- -m mpo.train --config ...)")
    from mpo.config import load_config

    full = launch_argv(load_config(args.config), args.config, args.model, args.gpus, command)
    print("launch: " + " ".join(full[:12]) + (" ..." if len(full) > 12 else ""), file=sys.stderr, flush=True)
    os.execvp(full[0], full)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
