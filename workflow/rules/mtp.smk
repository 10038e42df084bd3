# MTP modules (mpo.mtp): warm-up on the frozen backbone, one job per model and K (mpo.warmup). (Table 7, the model
# size of backbone + K-1 modules, is a rule of artifacts.smk.)
# Output: results/<name>/models/<model>/mtp_k<K>/ = mtp.safetensors + mtp_config.json + metrics.json + provenance;
# rule train reads that directory. Trainer checkpoints live outside it (checkpoints/mtp_warmup/<model>/k<K>) so a
# killed warm-up resumes from its last checkpoint when rerun (Snakemake clears outputs, not that directory).
MTP_K = [int(k) for k in config["mtp"]["K_values"]]


rule mtp_warmup:
    input:
        **R.warmup_inputs(config, RESULTS),
    output:
        directory(f"{RESULTS}/models/{{model}}/mtp_k{{K}}"),
    params:
        args=R.warmup_args(CONFIG_FILE, RESULTS),
        cfg=lambda wc: R.warmup_hash(config, wc.model),
    log: f"{RESULTS}/logs/mtp_warmup/{{model}}_k{{K}}.log",
    benchmark: f"{RESULTS}/benchmarks/rules/mtp_warmup/{{model}}_k{{K}}.tsv"
    threads: R.threads(config, "gpu")
    resources: **R.resources(config, "gpu", max_gpus=1)
    conda: env("train")
    shell: "python -m mpo.warmup {params.args} --threads {threads} > {log} 2>&1"


rule mtp:
    input:
        expand(f"{RESULTS}/models/{{model}}/mtp_k{{K}}", model=MODELS, K=MTP_K),


ALL_TARGETS += rules.mtp.input
