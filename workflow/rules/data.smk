# Dataset preparation: one uniform JSONL schema per dataset (train/test), see mpo.data.


rule prepare_data:
    output:
        train=f"{RESULTS}/data/{{dataset}}/train.jsonl",
        test=f"{RESULTS}/data/{{dataset}}/test.jsonl",
        stats=f"{RESULTS}/data/{{dataset}}/stats.json",
    params:
        args=R.data_args(CONFIG_FILE, RESULTS),
        cfg=lambda wc: config_hash([config["datasets"][wc.dataset], config["seed"]]),
    log: f"{RESULTS}/logs/prepare_data/{{dataset}}.log",
    benchmark: f"{RESULTS}/benchmarks/rules/prepare_data/{{dataset}}.tsv"
    threads: R.threads(config)
    resources: **R.resources(config)
    conda: env("data")
    shell: "python -m mpo.data.prepare {params.args} --threads {threads} > {log} 2>&1"


rule data:
    input:
        expand(f"{RESULTS}/data/{{dataset}}/stats.json", dataset=DATASETS),


ALL_TARGETS += rules.data.input
