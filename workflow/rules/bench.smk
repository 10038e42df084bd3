# Benchmarks (mpo.bench): the update step of PPO, GRPO and MPO K = 2, 3, 5 on one identical batch (time and peak
# memory; feeds Tables 2 and 3), rollout throughput, MTP warm-up step time, and the per-rule wall times of the
# pipeline (from every rule's `benchmark:` file). `make bench` or `snakemake --cores all bench`.
# Resources: config resources.bench, else resources.gpu on CUDA (one GPU), else default (mpo.rules.resources);
# arguments shared by the three CLIs: mpo.rules.bench_args (first model, its base, data root, torch threads).
_BENCH_ARGS = R.bench_args(config, CONFIG_FILE, RESULTS)
_BENCH_DATASET = R.bench_dataset(config)
_BENCH_BASE = f"{RESULTS}/models/{FIRST_MODEL}/base"
_UPDATE_ARGS = f"{_BENCH_ARGS} --dataset {_BENCH_DATASET} --mtp-root {RESULTS}/models/{FIRST_MODEL}"


rule bench_update_step:
    input:
        base=_BENCH_BASE,
        train=f"{RESULTS}/data/{_BENCH_DATASET}/train.jsonl",
        mtp=expand(f"{RESULTS}/models/{FIRST_MODEL}/mtp_k{{K}}", K=R.bench_mtp_k(config)),
    output:
        f"{RESULTS}/benchmarks/update_step.json",
    params:
        cfg=config_hash([config["bench"], config["train"], config["variants"], config["mtp"]]),
    log:
        f"{RESULTS}/logs/bench/update_step.log",
    threads: R.threads(config, "bench")
    resources: **R.resources(config, "bench", max_gpus=1)
    conda: env("train")
    shell: f"python -m mpo.bench update-step {_UPDATE_ARGS}" + " --json {output} > {log} 2>&1"


ALL_TARGETS += rules.bench_update_step.output


rule bench_rollout:
    input:
        base=_BENCH_BASE,
        train=f"{RESULTS}/data/{_BENCH_DATASET}/train.jsonl",
    output:
        f"{RESULTS}/benchmarks/rollout.json",
    params:
        cfg=config_hash([config["bench"], config["train"]]),
    log:
        f"{RESULTS}/logs/bench/rollout.log",
    threads: R.threads(config, "bench")
    resources: **R.resources(config, "bench", max_gpus=1)
    conda: env("train")
    shell: f"python -m mpo.bench rollout {_BENCH_ARGS} --dataset {_BENCH_DATASET}" + " --json {output} > {log} 2>&1"


rule bench_warmup_step:
    input:
        base=_BENCH_BASE,
        train=expand(f"{RESULTS}/data/{{dataset}}/train.jsonl", dataset=config["warmup"]["datasets"]),
    output:
        f"{RESULTS}/benchmarks/warmup_step.json",
    params:
        cfg=config_hash([config["bench"], config["warmup"]]),
    log:
        f"{RESULTS}/logs/bench/warmup_step.log",
    threads: R.threads(config, "bench")
    resources: **R.resources(config, "bench", max_gpus=1)
    conda: env("train")
    shell: f"python -m mpo.bench warmup-step {_BENCH_ARGS} --K 5" + " --json {output} > {log} 2>&1"


rule bench_graders:
    output:
        f"{RESULTS}/benchmarks/graders.json",
    log:
        f"{RESULTS}/logs/bench/graders.log",
    threads: 1
    resources: **R.resources(config)
    conda: env("eval")
    shell: "python -m mpo.bench graders --json {output} > {log} 2>&1"


rule bench:
    input:
        rules.bench_update_step.output,
        rules.bench_rollout.output,
        rules.bench_warmup_step.output,
        rules.bench_graders.output,


# Not part of `all` (it summarises whatever has run so far; run it after the pipeline): always reruns.
rule pipeline_times:
    output:
        md=f"{RESULTS}/benchmarks/pipeline.md",
        csv=f"{RESULTS}/benchmarks/pipeline.csv",
    log:
        f"{RESULTS}/logs/bench/pipeline.log",
    resources: **R.resources(config)
    conda: env("report")
    shell: f"python -m mpo.bench pipeline --results {RESULTS}" + " --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"
