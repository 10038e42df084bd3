"""Configuration: load a YAML config, validate it against workflow/schemas/config.schema.yaml, fill defaults.

Every entry point (the Snakefile and each `python -m mpo.<module>` CLI) goes through `load_config`, so a
wrong key or type stops everything with a message that names the key, e.g.
``config error in config/smoke.yaml at 'datasets.gsm8k.train.source': 'rg_foo' is not one of [...]``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config file is missing, unreadable, or does not match the schema."""


def _extend_with_defaults(validator_class):
    """A validator that fills in `default` values of object properties while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema and prop not in instance:
                    instance[prop] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft202012Validator)


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        if extra and error.schema.get("additionalProperties") is False:
            parts.append(extra[0])
    return ".".join(parts) or "<top level>"


def validate_config(cfg: dict, source: str = "<config>") -> dict:
    """Validate `cfg` in place (defaults filled in twice so that defaults of defaults apply) and return it."""
    schema = load_schema()
    validator = _DefaultFillingValidator(schema)
    for _ in range(2):
        errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
        if errors:
            lines = [f"  at '{_key_path(e)}': {e.message}" for e in errors[:10]]
            raise ConfigError(f"config error in {source}:\n" + "\n".join(lines))
    try:
        check_cross_keys(cfg)
    except ConfigError as e:
        raise ConfigError(f"config error in {source}:\n  {e}") from None
    return cfg


# ------------------------------------------------------------------------------------------------ cross-key checks
def train_world(cfg: dict) -> int:
    """Processes of a training run: the train rule's GPUs on CUDA (accelerate launches one per GPU), else 1."""
    t = cfg["train"]
    if cfg["device"] != "cuda" or t["launcher"] == "python":
        return 1
    r = cfg["resources"].get("gpu") or cfg["resources"]["default"]
    return max(int(r["gpus"]), 1)


def batch_sizes(tcfg: dict, group_size: int, world: int, where: str = "train") -> dict:
    """Split of one training step over `world` processes (pure; the trainer's sizes): prompts, responses, per-process
    mini batch and gradient-accumulation steps. Raises ConfigError naming the key whose value does not divide."""
    G = int(group_size)
    if tcfg["batch_unit"] == "responses":
        responses, mini = tcfg["batch_size"], tcfg["mini_batch_size"]
        if responses % G:
            raise ConfigError(f"at '{where}.batch_size': {responses} responses is not a multiple of group_size={G}")
        prompts = responses // G
    else:
        prompts, responses, mini = tcfg["batch_size"], tcfg["batch_size"] * G, tcfg["mini_batch_size"] * G
    if prompts % world:
        raise ConfigError(f"at '{where}.batch_size': {prompts} prompts per step do not split over {world} processes")
    if responses % mini:
        raise ConfigError(f"at '{where}.mini_batch_size': a mini batch of {mini} responses does not divide the batch "
                          f"of {responses}")
    if mini % world:
        raise ConfigError(f"at '{where}.mini_batch_size': a mini batch of {mini} responses does not split over "
                          f"{world} processes")
    micro = tcfg["micro_batch_size"]
    if (mini // world) % micro:
        raise ConfigError(f"at '{where}.micro_batch_size': {micro} does not divide the per-process mini batch "
                          f"{mini // world}")
    return {"prompts": prompts, "responses": responses, "prompts_local": prompts // world,
            "responses_local": responses // world, "mini_local": mini // world, "micro": micro,
            "accum": mini // world // micro, "n_mini": responses // mini}


def _check_names(cfg: dict) -> None:
    """Names one section uses must be defined in another (datasets, models, variants); ``seeds`` holds ``seed``."""
    if cfg.get("seeds") and int(cfg["seed"]) not in [int(x) for x in cfg["seeds"]]:
        raise ConfigError(f"at 'seeds': {cfg['seeds']} does not contain 'seed' ({cfg['seed']}), whose runs are the "
                          "plain <variant> runs")
    if cfg.get("targets"):
        from mpo.artifacts.registry import ARTIFACT_NAMES, groups

        known = list(groups()) + ARTIFACT_NAMES
        for t in cfg["targets"]:
            if t not in known:
                raise ConfigError(f"at 'targets': '{t}' is not a named target (known: {', '.join(known)})")
    for name, e in (cfg.get("experiments") or {}).items():
        own = (e or {}).get("seeds")
        if own and int(cfg["seed"]) not in [int(x) for x in own]:
            raise ConfigError(f"at 'experiments.{name}.seeds': {own} does not contain 'seed' ({cfg['seed']}), whose "
                              "runs are the plain <variant> runs every experiment shares")
    for d in cfg["warmup"]["datasets"]:
        if d not in cfg["datasets"]:
            raise ConfigError(f"at 'warmup.datasets': '{d}' is not a configured dataset ({list(cfg['datasets'])})")
    variants = cfg.get("variants") or {}
    for v in cfg["train"]["main_variants"]:
        if v not in variants:
            raise ConfigError(f"at 'train.main_variants': '{v}' is not defined in 'variants' ({sorted(variants)})")
    for m in cfg["train"]["strategy"]:
        if m not in cfg["models"]:
            raise ConfigError(f"at 'train.strategy': '{m}' is not a configured model ({list(cfg['models'])})")
    for name, exp in (cfg.get("experiments") or {}).items():
        for m in exp.get("models") or []:
            if m not in cfg["models"]:
                raise ConfigError(f"at 'experiments.{name}.models': '{m}' is not a configured model "
                                  f"({list(cfg['models'])})")
        for v in exp["variants"]:
            if v not in variants:
                raise ConfigError(f"at 'experiments.{name}.variants': '{v}' is not defined in 'variants' "
                                  f"({sorted(variants)})")


def check_cross_keys(cfg: dict) -> None:
    """Constraints between keys that the schema cannot express: names that must exist, batch / group / mini-batch
    divisibility for every trained variant on the run's processes, MTP depth K against the response budget."""
    from mpo.train.variants import VariantError, resolve_variant, trained_variants

    _check_names(cfg)
    t, world = cfg["train"], train_world(cfg)
    for k in cfg["mtp"]["K_values"]:
        if k > t["max_response_length"]:
            raise ConfigError(f"at 'mtp.K_values': K={k} exceeds train.max_response_length={t['max_response_length']}")
    for v in trained_variants(cfg):
        try:
            spec = resolve_variant(cfg, v)
        except VariantError as e:
            raise ConfigError(f"at 'variants.{v}': {e}") from None
        if spec["K"] > t["max_response_length"]:
            raise ConfigError(f"at 'variants.{v}.K': K={spec['K']} exceeds train.max_response_length="
                              f"{t['max_response_length']} (a block of K tokens must fit in the response)")
        try:
            batch_sizes(t, spec["group_size"], world)
        except ConfigError as e:
            raise ConfigError(f"{e} (variant '{v}', group_size={spec['group_size']})") from None


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config file, apply `overrides` (deep-merged), validate and fill defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {path} must contain a mapping at top level")
    if overrides:
        cfg = deep_merge(cfg, overrides)
    return validate_config(cfg, source=str(path))


def deep_merge(base: dict, update: dict) -> dict:
    """Return a copy of `base` with `update` merged in recursively (update wins)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (used as a Snakemake param so edits rerun rules)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def results_dir(cfg: dict) -> Path:
    return Path("results") / cfg["name"]
