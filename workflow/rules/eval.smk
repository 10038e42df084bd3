# Evaluation: pass@1 (and pass@k) of a model on a test set -> results/<name>/eval/<model>/<dataset>/<variant>/.
# variant `zero_shot` evaluates the untrained base model; any other (trained, canonical: aliases are read through
# their target's directory, as mpo.artifacts does) evaluates the policy of runs/<model>/<dataset>/<variant>
# (code: trained on the code dataset's train split, MBPP or its stand-in; evaluated on its test split, HumanEval).
# The backbone alone is evaluated (policy/ is a plain HF directory). Settings: config section `eval`.


rule evaluate:
    input:
        test=f"{RESULTS}/data/{{dataset}}/test.jsonl",
        model=R.eval_model(RESULTS),
    output:
        summary=f"{RESULTS}/eval/{{model}}/{{dataset}}/{{variant}}/summary.json",
        completions=f"{RESULTS}/eval/{{model}}/{{dataset}}/{{variant}}/completions.jsonl",
    params:
        args=R.eval_args(CONFIG_FILE, RESULTS),
        cfg=lambda wc: config_hash([config["eval"], config["seed"]]),
    log: f"{RESULTS}/logs/eval/{{model}}/{{dataset}}/{{variant}}.log",
    benchmark: f"{RESULTS}/benchmarks/rules/eval/{{model}}/{{dataset}}/{{variant}}.tsv"
    threads: R.threads(config, "gpu")
    resources: **R.resources(config, "gpu", max_gpus=1)  # one vLLM engine on one GPU
    conda: env("eval")
    shell: "python -m mpo.evaluate {params.args} --threads {threads} > {log} 2>&1"


rule eval_zero_shot:
    input:
        expand(f"{RESULTS}/eval/{{model}}/{{dataset}}/zero_shot/summary.json", model=MODELS, dataset=DATASETS),


ALL_TARGETS += rules.eval_zero_shot.input
