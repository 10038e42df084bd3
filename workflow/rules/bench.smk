# Benchmarks (mpo.bench): the update step of PPO, GRPO and MPO K = 2, 3, 5 on one identical batch (time and peak
# memory; feeds Tables 2 and 3), rollout throughput, MTP warm-up step time, and the per-rule wall times of the
# pipeline (from every rule's `benchmark:` file). `make bench` or `snakemake --cores all bench`.
_BENCH_RES = config["resources"].get("bench") or (res("gpu") if config["device"] == "cuda" else res())
# torch threads: bench.threads when set (the rule may hold more cores than it times with), else the rule's threads
_BENCH_TORCH_THREADS = config["bench"]["threads"] or _BENCH_RES["threads"]
_BENCH_DATASET = "gsm8k" if "gsm8k" in DATASETS else DATASETS[0]
# warmed-up modules of the benchmarked K that the config builds anyway; other K get freshly initialised modules
# inside the benchmark (their timing does not depend on training; update_step.json says which)
_BENCH_MTP_K = [k for k in (2, 3, 5) if k in MTP_K]


rule bench_update_step:
    input:
        base=f"{RESULTS}/models/{FIRST_MODEL}/base",
        train=f"{RESULTS}/data/{_BENCH_DATASET}/train.jsonl",
        mtp=expand(f"{RESULTS}/models/{FIRST_MODEL}/mtp_k{{K}}", K=_BENCH_MTP_K),
    output:
        f"{RESULTS}/benchmarks/update_step.json",
    params:
        torch_threads=_BENCH_TORCH_THREADS,
        config=CONFIG_FILE,
        model=FIRST_MODEL,
        dataset=_BENCH_DATASET,
        mtp_root=lambda wc, input: os.path.dirname(input.base),
        data_root=lambda wc, input: os.path.dirname(os.path.dirname(input.train)),
        cfg=lambda wc: config_hash([config["bench"], config["train"], config["variants"], config["mtp"]]),
    log:
        f"{RESULTS}/logs/bench/update_step.log",
    threads: _BENCH_RES["threads"]
    resources:
        mem_mb=_BENCH_RES["mem_mb"],
        runtime=_BENCH_RES["runtime"],
        gpu=min(1, _BENCH_RES["gpus"]),
    conda:
        env("train")
    shell:
        "python -m mpo.bench update-step --config {params.config} --model {params.model} --dataset {params.dataset}"
        " --base {input.base} --mtp-root {params.mtp_root} --data-root {params.data_root} --threads {params.torch_threads}"
        " --json {output} > {log} 2>&1"


ALL_TARGETS += rules.bench_update_step.output


rule bench_rollout:
    input:
        base=f"{RESULTS}/models/{FIRST_MODEL}/base",
        train=f"{RESULTS}/data/{_BENCH_DATASET}/train.jsonl",
    output:
        f"{RESULTS}/benchmarks/rollout.json",
    params:
        torch_threads=_BENCH_TORCH_THREADS,
        config=CONFIG_FILE,
        model=FIRST_MODEL,
        dataset=_BENCH_DATASET,
        data_root=lambda wc, input: os.path.dirname(os.path.dirname(input.train)),
        cfg=lambda wc: config_hash([config["bench"], config["train"]]),
    log:
        f"{RESULTS}/logs/bench/rollout.log",
    threads: _BENCH_RES["threads"]
    resources:
        mem_mb=_BENCH_RES["mem_mb"],
        runtime=_BENCH_RES["runtime"],
        gpu=min(1, _BENCH_RES["gpus"]),
    conda:
        env("train")
    shell:
        "python -m mpo.bench rollout --config {params.config} --model {params.model} --dataset {params.dataset}"
        " --base {input.base} --data-root {params.data_root} --threads {params.torch_threads} --json {output} > {log} 2>&1"


rule bench_warmup_step:
    input:
        base=f"{RESULTS}/models/{FIRST_MODEL}/base",
        train=expand(f"{RESULTS}/data/{{dataset}}/train.jsonl", dataset=WARMUP_DATASETS),
    output:
        f"{RESULTS}/benchmarks/warmup_step.json",
    params:
        torch_threads=_BENCH_TORCH_THREADS,
        config=CONFIG_FILE,
        model=FIRST_MODEL,
        data_root=lambda wc, input: os.path.dirname(os.path.dirname(input.train[0])),
        cfg=lambda wc: config_hash([config["bench"], config["warmup"]]),
    log:
        f"{RESULTS}/logs/bench/warmup_step.log",
    threads: _BENCH_RES["threads"]
    resources:
        mem_mb=_BENCH_RES["mem_mb"],
        runtime=_BENCH_RES["runtime"],
        gpu=min(1, _BENCH_RES["gpus"]),
    conda:
        env("train")
    shell:
        "python -m mpo.bench warmup-step --config {params.config} --model {params.model} --K 5"
        " --base {input.base} --data-root {params.data_root} --threads {params.torch_threads} --json {output} > {log} 2>&1"


rule bench:
    input:
        rules.bench_update_step.output,
        rules.bench_rollout.output,
        rules.bench_warmup_step.output,


# Not part of `all` (it summarises whatever has run so far; run it after the pipeline): always reruns.
rule pipeline_times:
    output:
        md=f"{RESULTS}/benchmarks/pipeline.md",
        csv=f"{RESULTS}/benchmarks/pipeline.csv",
    params:
        results=lambda wc, output: os.path.dirname(os.path.dirname(output.md)),
    log:
        f"{RESULTS}/logs/bench/pipeline.log",
    conda:
        env("report")
    shell:
        "python -m mpo.bench pipeline --results {params.results} --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"
