# Dataset preparation: one uniform JSONL schema per dataset (train/test), see mpo.data.


rule prepare_data:
    output:
        train=f"{RESULTS}/data/{{dataset}}/train.jsonl",
        test=f"{RESULTS}/data/{{dataset}}/test.jsonl",
        stats=f"{RESULTS}/data/{{dataset}}/stats.json",
    params:
        config=CONFIG_FILE,
        outdir=lambda wc: f"{RESULTS}/data/{wc.dataset}",
        cfg=lambda wc: section_hash("datasets", wc.dataset),
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/prepare_data/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/rules/prepare_data/{{dataset}}.tsv"
    threads: res()["threads"]
    resources:
        mem_mb=res()["mem_mb"],
        runtime=res()["runtime"],
    conda:
        env("data")
    shell:
        "python -m mpo.data.prepare --config {params.config} --dataset {wildcards.dataset}"
        " --outdir {params.outdir} --threads {threads} > {log} 2>&1"


rule data:
    input:
        expand(f"{RESULTS}/data/{{dataset}}/stats.json", dataset=DATASETS),


ALL_TARGETS += rules.data.input
