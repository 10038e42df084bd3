# Config loading and validation, paths, resources and environments shared by every rule.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
# Rules run `python -m mpo.<module>` from the repo's src/ (also inside conda envs, where mpo is not installed).
# Without --sdm conda, `python` must be the interpreter running Snakemake (the project's .venv), not
# whatever `python` comes first on PATH.
from snakemake.settings.types import DeploymentMethod  # noqa: E402

_USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_VENV_PATH = "" if _USE_CONDA else f"export PATH='{Path(sys.executable).parent}':$PATH; "
shell.prefix(f"set -euo pipefail; {_VENV_PATH}export PYTHONPATH='{Path(workflow.basedir) / 'src'}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

import yaml  # noqa: E402
from mpo import rules as R  # noqa: E402
from mpo.config import config_hash, load_config, validate_config  # noqa: E402
from mpo.plan import check_plan  # noqa: E402

# No `configfile:` directive on purpose: Snakemake would deep-merge --configfile into the default config and
# e.g. the smoke config would inherit the default config's model. Without --configfile we load the default.
# validate_config also checks every cross-key constraint (mpo.config.check_cross_keys): a bad config stops here,
# before any job, naming the key.
if not config:
    config.update(load_config("config/config.yaml"))
else:
    validate_config(config, source="--configfile/--config")
# Configs that train on GPUs with resources.gpu.gpu_mem_gb set: every training run's estimated per-GPU peak must fit
# (mpo.plan; `python -m mpo.plan --config CONFIG` prints the whole plan).
if config["device"] == "cuda" and (config["resources"].get("gpu") or {}).get("gpu_mem_gb"):
    check_plan(config)

RESULTS = f"results/{config['name']}"
MODELS = list(config["models"])
DATASETS = list(config["datasets"])
FIRST_MODEL = MODELS[0]

# The validated config with defaults: every CLI reads this file. Written when the workflow starts running jobs
# (onstart: not on --dry-run, not inside remote jobs) and only when it changed.
CONFIG_FILE = f"{RESULTS}/config.resolved.yaml"


onstart:
    R.write_resolved_config(config, CONFIG_FILE)


def env(group):
    """Conda environment file of a rule group (the CUDA build's when the config runs on CUDA), see mpo.rules."""
    return R.env_file(config, group)


def section_hash(*keys):
    """Hash of a config sub-tree: a rule param, so editing that part of the config reruns the rule."""
    return R.section_hash(config, *keys)


# variant: zero_shot (evaluate only) or a variant that trains (aliases are read through their target's directory)
wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(DATASETS),
    variant=R.variant_pattern(config),
    K=r"[2-9]|[1-9][0-9]+",


ALL_TARGETS = []
