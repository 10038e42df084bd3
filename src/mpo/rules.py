"""Helpers of the rule files workflow/rules/{common,data,model,mtp,eval,bench}.smk: resources, input functions and
CLI arguments, so that every rule is a short declaration that calls the package (training: mpo.train.smk).

Pure Python, no torch: the Snakefile imports it at parse time. Every function takes the validated config.
"""

from __future__ import annotations

from pathlib import Path

from mpo.config import config_hash

ZERO_SHOT = "zero_shot"


# ------------------------------------------------------------------------------------------------ resources
def resource_set(config: dict, kind: str = "default") -> dict:
    """The config `resources` entry of a rule group: `default` (CPU rules); `gpu` (warm-up, training, evaluation:
    resources.gpu on CUDA, else default); `bench` (resources.bench, else as `gpu`)."""
    res = config["resources"]
    cuda = config["device"] == "cuda"
    if kind == "bench" and res.get("bench"):
        return res["bench"]
    if kind in ("gpu", "bench") and cuda and res.get("gpu"):
        return res["gpu"]
    return res["default"]


def resources(config: dict, kind: str = "default", max_gpus: int | None = None) -> dict:
    """Snakemake `resources:` of a rule group: mem_mb, runtime (minutes), gpu (capped at max_gpus), and for SLURM
    the partition the group's resources name (omitted when null: the profile's default applies) and, for a job
    spanning nodes, nodes and one task per node (the launcher starts one process group per node)."""
    r = resource_set(config, kind)
    gpus = int(r["gpus"]) if max_gpus is None else min(int(r["gpus"]), max_gpus)
    out = {"mem_mb": int(r["mem_mb"]), "runtime": int(r["runtime"]), "gpu": gpus}
    if r.get("slurm_partition"):
        out["slurm_partition"] = r["slurm_partition"]
    nodes = int(r.get("nodes") or 1)
    if max_gpus is None and nodes > 1:
        out.update(nodes=nodes, tasks=nodes)
    return out


def threads(config: dict, kind: str = "default") -> int:
    return int(resource_set(config, kind)["threads"])


def variant_pattern(config: dict) -> str:
    """Wildcard constraint of `variant`: zero_shot or a variant that trains (rule train's input function rejects
    zero_shot)."""
    from mpo.train.smk import variant_pattern as trained

    return f"{ZERO_SHOT}|{trained(config)}"


def env_file(config: dict, group: str) -> str:
    """Conda environment of a rule group, relative to workflow/rules/ (where Snakemake resolves `conda:` paths):
    workflow/envs/<group>.yaml on CPU, workflow/envs/<cuda_build>/<group>.yaml on CUDA."""
    sub = f"{config['cuda_build']}/" if config["device"] == "cuda" else ""
    return f"../envs/{sub}{group}.yaml"


def section_hash(config: dict, *keys: str) -> str:
    """Hash of a config sub-tree: a rule param, so editing that part of the config reruns the rule."""
    node = config
    for k in keys:
        node = node[k]
    return config_hash(node)


# ------------------------------------------------------------------------------------------------ data / warm-up
def warmup_inputs(config: dict, results: str) -> dict:
    """Inputs of mtp_warmup: the backbone and the train splits (and stats) of warmup.datasets."""
    ds = config["warmup"]["datasets"]
    return {"base": f"{results}/models/{{model}}/base",
            "train": [f"{results}/data/{d}/train.jsonl" for d in ds],
            "stats": [f"{results}/data/{d}/stats.json" for d in ds]}


def warmup_hash(config: dict, model: str) -> str:
    """What a warm-up depends on besides its input files (K_values only selects jobs, it is left out)."""
    mtp = {k: v for k, v in config["mtp"].items() if k != "K_values"}
    return config_hash([mtp, config["warmup"], config["models"][model], config["seed"], config["device"],
                        config["dtype"]])


def data_root(results: str) -> str:
    return f"{results}/data"


# ------------------------------------------------------------------------------------------------ evaluation
def eval_model(results: str):
    """Input function of evaluate: the base model (zero_shot) or the trained run's summary.json."""

    def model(wc) -> str:
        if wc.variant == ZERO_SHOT:
            return f"{results}/models/{wc.model}/base"
        return f"{results}/runs/{wc.model}/{wc.dataset}/{wc.variant}/summary.json"

    return model


def eval_model_dir(wc, input) -> str:
    """The directory evaluate loads: the base model, or the run's policy/ next to its summary.json."""
    return input.model if wc.variant == ZERO_SHOT else str(Path(input.model).parent / "policy")


# ------------------------------------------------------------------------------------------------ benchmarks
def bench_dataset(config: dict) -> str:
    return "gsm8k" if "gsm8k" in config["datasets"] else next(iter(config["datasets"]))


def bench_threads(config: dict) -> int:
    """torch threads of a benchmark: bench.threads when set (a rule may hold more cores than it times with)."""
    return int(config["bench"]["threads"] or threads(config, "bench"))


def bench_mtp_k(config: dict) -> list[int]:
    """Warmed-up modules of the benchmarked K (2, 3, 5) that the config builds anyway; other K get freshly
    initialised modules inside the benchmark (their timing does not depend on training)."""
    return [k for k in (2, 3, 5) if k in [int(x) for x in config["mtp"]["K_values"]]]


def bench_args(config: dict, config_file: str, results: str) -> str:
    """Arguments every `python -m mpo.bench <command>` of the pipeline shares."""
    model = next(iter(config["models"]))
    return (f"--config {config_file} --model {model} --base {results}/models/{model}/base"
            f" --data-root {results}/data --threads {bench_threads(config)}")


def write_resolved_config(config: dict, path: str | Path) -> bool:
    """Write the validated config (defaults filled in) that every CLI reads; only when it changed (returns True)."""
    import yaml

    text = yaml.safe_dump(dict(config), sort_keys=False)
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


# ------------------------------------------------------------------------------------------------ CLI arguments
def data_args(config_file: str, results: str):
    """Param function of prepare_data: ``python -m mpo.data.prepare`` arguments."""
    return lambda wc: f"--config {config_file} --dataset {wc.dataset} --outdir {results}/data/{wc.dataset}"


def model_args(config_file: str):
    """Param function of prepare_model: ``python -m mpo.model_prep`` arguments."""
    return lambda wc, output: f"--config {config_file} --model {wc.model} --out {output[0]}"


def warmup_args(config_file: str, results: str):
    """Param function of mtp_warmup: ``python -m mpo.warmup`` arguments (checkpoints outside the output, so a killed
    warm-up resumes)."""

    def args(wc, input, output) -> str:
        return (f"--config {config_file} --model {wc.model} --K {wc.K} --backbone {input.base}"
                f" --data-root {results}/data --out {output[0]}"
                f" --checkpoint-dir {results}/checkpoints/mtp_warmup/{wc.model}/k{wc.K}")

    return args


def eval_args(config_file: str, results: str):
    """Param function of evaluate: ``python -m mpo.evaluate`` arguments."""

    def args(wc, input) -> str:
        return (f"--config {config_file} --model-dir {eval_model_dir(wc, input)} --dataset {wc.dataset}"
                f" --data-root {results}/data --out {results}/eval/{wc.model}/{wc.dataset}/{wc.variant}"
                f" --model {wc.model} --variant {wc.variant}")

    return args
