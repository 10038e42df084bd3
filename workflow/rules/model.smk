# Model preparation: every configured model becomes a plain Hugging Face directory (see mpo.model_prep).


rule prepare_model:
    output:
        directory(f"{RESULTS}/models/{{model}}/base"),
    params:
        config=CONFIG_FILE,
        cfg=lambda wc: section_hash("models", wc.model),
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/prepare_model/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/rules/prepare_model/{{model}}.tsv"
    threads: res()["threads"]
    resources:
        mem_mb=res()["mem_mb"],
        runtime=res()["runtime"],
    conda:
        env("data")
    shell:
        "python -m mpo.model_prep --config {params.config} --model {wildcards.model} --out {output} --threads {threads}"
        " > {log} 2>&1"


rule models:
    input:
        expand(f"{RESULTS}/models/{{model}}/base", model=MODELS),


ALL_TARGETS += rules.models.input
