# Evaluation: pass@1 (and pass@k) of a model on a test set -> results/<name>/eval/<model>/<dataset>/<variant>/.
# variant `zero_shot` evaluates the untrained base model; any other (trained, canonical: aliases are read through
# their target's directory, as mpo.artifacts does) evaluates the policy of runs/<model>/<dataset>/<variant>
# (code: trained on the code dataset's train split, MBPP or its stand-in; evaluated on its test split, HumanEval).
# The backbone alone is evaluated (policy/ is a plain HF directory). Settings: config section `eval`.
from mpo.train.smk import variant_pattern as _eval_trained_variants

_EVAL_RES = res("gpu") if config["device"] == "cuda" else res()


rule evaluate:
    input:
        test=f"{RESULTS}/data/{{dataset}}/test.jsonl",
        model=lambda wc: (
            f"{RESULTS}/models/{wc.model}/base"
            if wc.variant == "zero_shot"
            else f"{RESULTS}/runs/{wc.model}/{wc.dataset}/{wc.variant}/summary.json"
        ),
    output:
        summary=f"{RESULTS}/eval/{{model}}/{{dataset}}/{{variant}}/summary.json",
        completions=f"{RESULTS}/eval/{{model}}/{{dataset}}/{{variant}}/completions.jsonl",
    wildcard_constraints:
        variant=f"zero_shot|{_eval_trained_variants(config)}",
    params:
        config=CONFIG_FILE,
        model_dir=lambda wc, input: (
            input.model if wc.variant == "zero_shot" else str(Path(input.model).parent / "policy")
        ),
        data_root=lambda wc, input: str(Path(input.test).parent.parent),
        out=lambda wc, output: str(Path(output.summary).parent),
        cfg=section_hash("eval"),
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/eval/{{model}}/{{dataset}}/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/rules/eval/{{model}}/{{dataset}}/{{variant}}.tsv"
    threads: _EVAL_RES["threads"]
    resources:
        mem_mb=_EVAL_RES["mem_mb"],
        runtime=_EVAL_RES["runtime"],
        gpu=min(_EVAL_RES["gpus"], 1),  # one vLLM engine on one GPU
    conda:
        env("eval")
    shell:
        "python -m mpo.evaluate --config {params.config} --model-dir {params.model_dir}"
        " --dataset {wildcards.dataset} --data-root {params.data_root} --out {params.out}"
        " --model {wildcards.model} --variant {wildcards.variant} --threads {threads} > {log} 2>&1"


rule eval_zero_shot:
    input:
        expand(f"{RESULTS}/eval/{{model}}/{{dataset}}/zero_shot/summary.json", model=MODELS, dataset=DATASETS),


ALL_TARGETS += rules.eval_zero_shot.input
