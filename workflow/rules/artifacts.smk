# Paper artifacts: every table (Markdown + CSV) and figure (PNG + PDF + the CSV behind it), the paper's numbers beside
# ours. One rule per entry of the registry mpo.artifacts.registry.ARTIFACTS (rule name = artifact name, `beyond`'s
# table: beyond_table), one per named group (main_results, efficiency, ablation_k, ..., beyond, artifacts).
# Tables: `python -m mpo.artifacts <table>`; figures: the parameterised notebooks in notebooks/, run by papermill
# (executed copies under results/<name>/notebooks/). Which runs each artifact needs is its registry entry, expanded
# by mpo.artifacts.smk, so `snakemake table5a` trains only the ablation_k runs.
# `snakemake --report results/<name>/report.html` collects them all with the captions in workflow/report/.
from mpo.artifacts import registry as _registry
from mpo.artifacts import smk as _art


report: "../report/workflow.rst"


_ART_CFG = _art.settings_hash(config)


for _a in _registry.ARTIFACTS:

    rule:
        name:
            _a.rule_name
        input:
            unpack(_art.artifact_inputs(config, RESULTS, _a.name, workflow)),
        output:
            **_art.outputs(RESULTS, _a.name),
        params:
            cmd=_art.command(_a.name, RESULTS, CONFIG_FILE),
            cfg=_ART_CFG,
        log:
            f"{RESULTS}/logs/artifacts/{_a.name}.log",
        resources:
            **R.resources(config),
        conda:
            env("report")
        shell:
            "{params.cmd}"


for _group in _registry.groups():

    rule:
        name:
            _group
        input:
            _art.group_inputs(RESULTS, _group),


ALL_TARGETS += rules.artifacts.input
ALL_TARGETS += rules.beyond.input
