# mpo-repro: reproduce "Beyond Token-Level Policy Gradients for Complex Reasoning with LLMs" (MPO) end to end.
#   snakemake --cores all                                  # default config (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml   # CI scale
#   snakemake --configfile config/paper.yaml --workflow-profile profiles/slurm   # paper scale
# All logic lives in the `mpo` package (src/mpo); rules only call its CLIs.
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/mtp.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/artifacts.smk"
include: "workflow/rules/bench.smk"


rule all:
    default_target: True
    input:
        # config `targets` (e.g. the default config: the main comparison only); null: everything
        _art.default_targets(config, RESULTS, ALL_TARGETS, list(rules.data.input) + list(rules.models.input)),
