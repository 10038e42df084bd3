# Paper artifacts: every table (Markdown + CSV) and figure (PNG + PDF + the CSV behind it), the paper's numbers beside
# ours. Tables: `python -m mpo.artifacts <table>`; figures: the parameterised notebooks in notebooks/, run by papermill
# (executed copies under results/<name>/notebooks/). Which runs each artifact needs is the config's `experiments`
# section, expanded by mpo.artifacts.common, so `snakemake table5a` trains only the ablation_k runs.
# `snakemake --report results/<name>/report.html` collects them all with the captions in workflow/report/.
from mpo.artifacts import smk as _art


report: "../report/workflow.rst"


_ART_PARAMS = dict(
    config=CONFIG_FILE,
    results=_art.results_param,
    artifact=_art.artifact_param,
    cfg=_art.settings_hash(config),
)


rule table1:
    input:
        evals=_art.inputs(config, RESULTS, "main", "evals", datasets=["code"], zero_shot=True),
    output:
        **_art.table_outputs(RESULTS, "table1", "Paper tables", "Main results"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table1.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule fig3:
    input:
        nb="notebooks/fig3.ipynb",
        evals=_art.inputs(config, RESULTS, "main", "evals", datasets=["gsm8k", "math"], zero_shot=True),
    output:
        **_art.figure_outputs(RESULTS, "fig3", "Paper figures", "Main results"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/fig3.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.NOTEBOOK_CMD


rule table2:
    input:
        runs=_art.inputs(config, RESULTS, "efficiency", "runs"),
        bench=_art.bench_input(RESULTS, workflow),
    output:
        **_art.table_outputs(RESULTS, "table2", "Paper tables", "Efficiency"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table2.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule table3:
    input:
        runs=_art.inputs(config, RESULTS, "efficiency", "runs"),
        bench=_art.bench_input(RESULTS, workflow),
    output:
        **_art.table_outputs(RESULTS, "table3", "Paper tables", "Efficiency"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table3.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule table5:
    output:
        **_art.table_outputs(RESULTS, "table5", "Paper tables", "Hyperparameters"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table5.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule table5a:
    input:
        evals=_art.inputs(config, RESULTS, "ablation_k", "evals"),
    output:
        **_art.table_outputs(RESULTS, "table5a", "Paper tables", "Ablations"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table5a.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule table5b:
    input:
        evals=_art.inputs(config, RESULTS, "ablation_grid", "evals"),
    output:
        **_art.table_outputs(RESULTS, "table5b", "Paper tables", "Ablations"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table5b.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule table6:
    input:
        evals=_art.inputs(config, RESULTS, "value_heads", "evals"),
    output:
        **_art.table_outputs(RESULTS, "table6", "Paper tables", "Ablations"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/table6.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.TABLE_CMD


rule fig4:
    input:
        nb="notebooks/fig4.ipynb",
        runs=_art.inputs(config, RESULTS, "mtp_share", "runs"),
    output:
        **_art.figure_outputs(RESULTS, "fig4", "Paper figures", "Training stability"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/fig4.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.NOTEBOOK_CMD


rule fig6:
    input:
        nb="notebooks/fig6.ipynb",
        runs=_art.inputs(config, RESULTS, "mtp_share", "runs"),
        evals=_art.inputs(config, RESULTS, "mtp_share", "evals"),
    output:
        **_art.figure_outputs(RESULTS, "fig6", "Paper figures", "Training stability"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/fig6.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.NOTEBOOK_CMD


rule fig7:
    input:
        nb="notebooks/fig7.ipynb",
        runs=_art.inputs(config, RESULTS, "mtp_noise", "runs"),
        warmups=_art.inputs(config, RESULTS, "mtp_noise", "warmups"),
    output:
        **_art.figure_outputs(RESULTS, "fig7", "Paper figures", "MTP noise"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/fig7.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.NOTEBOOK_CMD


rule curves:
    input:
        nb="notebooks/curves.ipynb",
        runs=_art.inputs(config, RESULTS, "curves", "runs"),
    output:
        **_art.figure_outputs(RESULTS, "curves", "Beyond the paper", "Training curves"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/curves.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.NOTEBOOK_CMD


rule regimes:
    input:
        nb="notebooks/regimes.ipynb",
        runs=_art.inputs(config, RESULTS, "regimes", "runs"),
        evals=_art.inputs(config, RESULTS, "regimes", "evals"),
    output:
        **_art.figure_outputs(RESULTS, "regimes", "Beyond the paper", "MTP gradient regimes"),
    params:
        **_ART_PARAMS,
    log:
        f"{RESULTS}/logs/artifacts/regimes.log",
    threads: 1
    conda:
        env("report")
    shell:
        _art.NOTEBOOK_CMD


# ---- named groups of artifacts ----


rule main_results:
    input:
        rules.table1.output,
        rules.fig3.output,


rule ablation_k:
    input:
        rules.table5a.output,


rule ablation_grid:
    input:
        rules.table5b.output,


rule value_heads:
    input:
        rules.table6.output,


rule efficiency:
    input:
        rules.table2.output,
        rules.table3.output,


# Beyond the paper: GRPO vs TEMPO vs MoT-G GRPO (with PPO and MPO K=5) -- the runs and evaluations of the `beyond`
# experiment (no figure of its own yet; the runs' metrics.jsonl and evaluation summaries are the comparison).
rule beyond:
    input:
        _art.inputs(config, RESULTS, "beyond", "runs"),
        _art.inputs(config, RESULTS, "beyond", "evals"),


rule artifacts:
    input:
        rules.table1.output,
        rules.fig3.output,
        rules.table2.output,
        rules.table3.output,
        rules.table5.output,
        rules.table5a.output,
        rules.table5b.output,
        rules.table6.output,
        rules.fig4.output,
        rules.fig6.output,
        rules.fig7.output,
        rules.curves.output,
        rules.regimes.output,


ALL_TARGETS += rules.artifacts.input
ALL_TARGETS += rules.beyond.input
