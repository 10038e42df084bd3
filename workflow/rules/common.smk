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
from mpo.config import config_hash, load_config, validate_config  # noqa: E402

# No `configfile:` directive on purpose: Snakemake would deep-merge --configfile into the default config and
# e.g. the smoke config would inherit the default config's model. Without --configfile we load the default.
if not config:
    config.update(load_config("config/config.yaml"))
else:
    validate_config(config, source="--configfile/--config")

RESULTS = f"results/{config['name']}"
MODELS = list(config["models"])
DATASETS = list(config["datasets"])
FIRST_MODEL = MODELS[0]

# The validated config with defaults, written once per change: every CLI reads this file.
CONFIG_FILE = f"{RESULTS}/config.resolved.yaml"
_resolved = yaml.safe_dump(dict(config), sort_keys=False)
if not Path(CONFIG_FILE).is_file() or Path(CONFIG_FILE).read_text() != _resolved:
    Path(CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
    Path(CONFIG_FILE).write_text(_resolved)

ENV_DIR = "envs/gpu" if config["device"] == "cuda" else "envs"


def env(group):
    """Conda environment file of a rule group (GPU lock when the config runs on CUDA).

    Snakemake resolves a relative `conda:` path against the file that holds the rule (workflow/rules/*.smk), so the
    path climbs to the repository root; with `envs/...` it would look for workflow/rules/envs/ and every finished job
    would fail while recording its metadata.
    """
    return f"../../{ENV_DIR}/{group}.yaml"


def res(kind="default"):
    """Resources of a rule group from config `resources` (`gpu` falls back to `default`)."""
    r = config["resources"].get(kind) or config["resources"]["default"]
    return r


def section_hash(*keys):
    """Hash of a config sub-tree: a rule param, so editing that part of the config reruns the rule."""
    node = config
    for k in keys:
        node = node[k]
    return config_hash(node)


wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(DATASETS),


ALL_TARGETS = []
