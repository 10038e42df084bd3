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
    return cfg


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
