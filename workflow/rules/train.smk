# RL training: one run per (model, dataset, variant) -> results/<name>/runs/<model>/<dataset>/<variant>/.
# Variants are named in the config (`variants:`; mpo.train.variants resolves them); an alias (e.g. mpo_k5 -> mpo)
# reads its target's run, so every distinct variant trains once and is shared by every table. MPO with K > 1 starts
# from the warmed-up modules models/<model>/mtp_k<K>. A killed run resumes from its last checkpoint when rerun.
from mpo.train import smk as _train

_TRAIN_RES = res("gpu") if config["device"] == "cuda" else res()


rule train:
    input:
        unpack(_train.inputs(config, RESULTS)),
    output:
        summary=f"{RESULTS}/runs/{{model}}/{{dataset}}/{{variant}}/summary.json",
        metrics=f"{RESULTS}/runs/{{model}}/{{dataset}}/{{variant}}/metrics.jsonl",
        policy=directory(f"{RESULTS}/runs/{{model}}/{{dataset}}/{{variant}}/policy"),
    wildcard_constraints:
        variant=_train.variant_pattern(config),
    params:
        config=CONFIG_FILE,
        out=lambda wc: f"{RESULTS}/runs/{wc.model}/{wc.dataset}/{wc.variant}",
        data_root=f"{RESULTS}/data",
        mtp=lambda wc, input: f"--mtp {input.mtp}" if "mtp" in input.keys() else "",
        launcher=_train.launcher(config, _TRAIN_RES["gpus"]),
        cfg=lambda wc: _train.run_hash(config, wc.model, wc.dataset, wc.variant),
    log:
        f"{RESULTS}/logs/train/{{model}}/{{dataset}}/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/rules/train/{{model}}/{{dataset}}/{{variant}}.tsv"
    threads: _TRAIN_RES["threads"]
    resources:
        mem_mb=_TRAIN_RES["mem_mb"],
        runtime=_TRAIN_RES["runtime"],
        gpu=_TRAIN_RES["gpus"],
    conda:
        env("train")
    shell:
        "{params.launcher} -m mpo.train --config {params.config} --model {wildcards.model}"
        " --dataset {wildcards.dataset} --variant {wildcards.variant} --base {input.base} {params.mtp}"
        " --data-root {params.data_root} --out {params.out} --threads {threads} > {log} 2>&1"


rule train_main:
    input:
        _train.main_runs(config, RESULTS),
