# Paper tables rendered from pipeline outputs (Markdown + CSV, the paper's numbers side by side).


rule table4:
    input:
        stats=expand(f"{RESULTS}/data/{{dataset}}/stats.json", dataset=DATASETS),
        tokenizer=f"{RESULTS}/models/{FIRST_MODEL}/base",
    output:
        md=f"{RESULTS}/tables/table4.md",
        csv=f"{RESULTS}/tables/table4.csv",
    params:
        config=CONFIG_FILE,
        data_root=lambda wc, input: str(Path(input.stats[0]).parent.parent),
    log:
        f"{RESULTS}/logs/tables/table4.log",
    conda:
        env("report")
    shell:
        "python -m mpo.artifacts.table4 --config {params.config} --data-root {params.data_root}"
        " --tokenizer {input.tokenizer} --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


ALL_TARGETS += rules.table4.output
