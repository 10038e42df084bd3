# Model preparation: every configured model becomes a plain Hugging Face directory (see mpo.model_prep).


rule prepare_model:
    output:
        directory(f"{RESULTS}/models/{{model}}/base"),
    params:
        args=R.model_args(CONFIG_FILE),
        cfg=lambda wc: config_hash([config["models"][wc.model], config["seed"]]),
    log: f"{RESULTS}/logs/prepare_model/{{model}}.log",
    benchmark: f"{RESULTS}/benchmarks/rules/prepare_model/{{model}}.tsv"
    threads: R.threads(config)
    resources: **R.resources(config)
    conda: env("data")
    shell: "python -m mpo.model_prep {params.args} --threads {threads} > {log} 2>&1"


rule models:
    input:
        expand(f"{RESULTS}/models/{{model}}/base", model=MODELS),


ALL_TARGETS += rules.models.input
