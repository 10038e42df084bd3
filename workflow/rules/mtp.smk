# MTP modules (mpo.mtp): warm-up on the frozen backbone, one job per model and K (mpo.warmup). (Table 7, the model
# size of backbone + K-1 modules, is a rule of artifacts.smk.)
# Output: results/<name>/models/<model>/mtp_k<K>/ = mtp.safetensors + mtp_config.json + metrics.json + provenance;
# rule train reads that directory. Trainer checkpoints live outside it (checkpoints/mtp_warmup/<model>/k<K>) so a
# killed warm-up resumes from its last checkpoint when rerun (Snakemake clears outputs, not that directory).
_MTP_RES = res("gpu") if config["device"] == "cuda" else res()
MTP_K = [int(k) for k in config["mtp"]["K_values"]]
WARMUP_DATASETS = list(config["warmup"]["datasets"])


rule mtp_warmup:
    input:
        base=f"{RESULTS}/models/{{model}}/base",
        train=expand(f"{RESULTS}/data/{{dataset}}/train.jsonl", dataset=WARMUP_DATASETS),
        stats=expand(f"{RESULTS}/data/{{dataset}}/stats.json", dataset=WARMUP_DATASETS),
    output:
        directory(f"{RESULTS}/models/{{model}}/mtp_k{{K}}"),
    wildcard_constraints:
        K=r"[2-9]|[1-9][0-9]+",
    params:
        config=CONFIG_FILE,
        data_root=lambda wc, input: os.path.dirname(os.path.dirname(input.train[0])),
        ckpt=lambda wc: f"{RESULTS}/checkpoints/mtp_warmup/{wc.model}/k{wc.K}",
        # what a warm-up depends on besides its input files (K_values only selects jobs, it is left out)
        cfg=lambda wc: config_hash([{k: v for k, v in config["mtp"].items() if k != "K_values"}, config["warmup"],
                                    config["models"][wc.model], config["seed"], config["device"], config["dtype"]]),
    log:
        f"{RESULTS}/logs/mtp_warmup/{{model}}_k{{K}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/rules/mtp_warmup/{{model}}_k{{K}}.tsv"
    threads: _MTP_RES["threads"]
    resources:
        mem_mb=_MTP_RES["mem_mb"],
        runtime=_MTP_RES["runtime"],
        gpu=min(1, _MTP_RES["gpus"]),
    conda:
        env("train")
    shell:
        "python -m mpo.warmup --config {params.config} --model {wildcards.model} --K {wildcards.K}"
        " --backbone {input.base} --data-root {params.data_root} --out {output} --threads {threads}"
        " --checkpoint-dir {params.ckpt} > {log} 2>&1"


rule mtp:
    input:
        expand(f"{RESULTS}/models/{{model}}/mtp_k{{K}}", model=MODELS, K=MTP_K),


ALL_TARGETS += rules.mtp.input
