"""mpo.enums is the one source of truth: the config schema, mpo.mtp and the algos registries list the same values."""

import yaml

from mpo import algos, enums
from mpo.train import variants

SCHEMA = "workflow/schemas/config.schema.yaml"


def _property_enums(node, path=()):
    """(dotted path, enum list) of every schema property that has an ``enum``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and "enum" in value:
                yield ".".join((*path, key)), list(value["enum"])
            yield from _property_enums(value, (*path, key) if key not in ("properties", "additionalProperties",
                                                                           "items", "oneOf", "anyOf") else path)
    elif isinstance(node, list):
        for item in node:
            yield from _property_enums(item, path)


def test_schema_enums_equal_the_source_of_truth(repo):
    found = list(_property_enums(yaml.safe_load((repo / SCHEMA).read_text())))
    for where, values in enums.SCHEMA_ENUMS.items():
        section, _, key = where.rpartition(".")
        hits = [v for p, v in found if p.split(".")[-1] == key and (not section or f".{section}." in f".{p}")]
        assert hits, f"{SCHEMA} has no enum for '{where}'"
        for v in hits:
            assert tuple(v) == values, f"{SCHEMA}: '{where}' lists {v}, mpo.enums has {list(values)}"


def test_mtp_gradient_regimes_equal_the_source_of_truth():
    from mpo import mtp

    assert tuple(mtp.MTP_GRAD_MODES) == enums.MTP_GRAD_MODES


def test_registries_and_variants_use_the_enums():
    assert tuple(sorted(algos.ADV_ESTIMATORS)) == tuple(sorted(enums.ADV_ESTIMATOR_NAMES))
    assert tuple(sorted(algos.POLICY_LOSSES)) == tuple(sorted(enums.RATIO_KINDS))
    assert tuple(sorted(algos.LOG_RATIOS)) == tuple(sorted(enums.RATIO_KINDS))
    assert algos.RATIO_FORMS is enums.RATIO_FORMS and algos.LOSS_AGGS is enums.LOSS_AGGS
    assert algos.KL_KINDS is enums.KL_KINDS and variants.METHODS is enums.METHODS
    # every method's default ratio / advantage / aggregation is a registered name
    for d in variants.METHOD_DEFAULTS.values():
        assert d["ratio"] in enums.RATIO_KINDS and d["advantage"] in algos.ADV_ESTIMATORS
        assert d["loss_agg"] in enums.LOSS_AGGS


def test_mot_settings_equal_the_source_of_truth():
    from mpo import mot

    assert mot.SUPPORTS is enums.MOT_SUPPORTS and mot.WEIGHTINGS is enums.MOT_WEIGHTINGS
    assert mot.COMBINES is enums.MOT_COMBINES and mot.SWITCH_RULES is enums.MOT_SWITCH_RULES
    assert tuple(mot.ACTION_LOGPS) == enums.MOT_ACTION_LOGPS
