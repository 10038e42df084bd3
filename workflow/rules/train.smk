# RL training: one run per (model, dataset, variant) -> results/<name>/runs/<model>/<dataset>/<variant>/.
# Variants are named in the config (`variants:`; mpo.train.variants resolves them); an alias (e.g. mpo_k5 -> mpo)
# reads its target's run, so every distinct variant trains once and is shared by every table. MPO with K > 1 starts
# from the warmed-up modules models/<model>/mtp_k<K>. A killed run resumes from its last checkpoint when rerun.
# mpo.train.smk launches it on the GPUs the job got (plain python, accelerate with the model's train.strategy, or one
# accelerate per node under a multi-node SLURM allocation).
from mpo.train import smk as _train


rule train:
    input:
        unpack(_train.inputs(config, RESULTS)),
    output:
        summary=f"{RESULTS}/runs/{{model}}/{{dataset}}/{{variant}}/summary.json",
        metrics=f"{RESULTS}/runs/{{model}}/{{dataset}}/{{variant}}/metrics.jsonl",
        policy=directory(f"{RESULTS}/runs/{{model}}/{{dataset}}/{{variant}}/policy"),
    params:
        args=_train.cli_args(CONFIG_FILE, RESULTS),
        cfg=lambda wc: _train.run_hash(config, wc.model, wc.dataset, wc.variant),
    log: f"{RESULTS}/logs/train/{{model}}/{{dataset}}/{{variant}}.log",
    benchmark: f"{RESULTS}/benchmarks/rules/train/{{model}}/{{dataset}}/{{variant}}.tsv"
    threads: R.threads(config, "gpu")
    resources: **R.resources(config, "gpu")
    conda: env("train")
    shell: "python -m mpo.train.smk launch {params.args} --threads {threads} > {log} 2>&1"


rule train_main:
    input:
        _train.main_runs(config, RESULTS),
