"""Training variants: a named method plus overrides, resolved into one flat, validated spec.

This module is pure Python (no torch): the Snakefile imports it to know which inputs a run needs.

Resolution order (later wins): the method's defaults (:data:`METHOD_DEFAULTS`) < the config's ``train`` section
(keys shared by every method: lr, group_size, kl_coef, ...) < the variant's own keys. A variant may instead be an
``alias`` of another variant (same run directory, trained once; e.g. ``mpo_k5`` is an alias of ``mpo``):
:func:`canonical_variant` follows aliases and :func:`run_dir` gives the directory every consumer should read.

What differs between methods (docs/method.md §1, §3, §6) -- and nothing else does:

========  ==========  ==========  =======  ================  ==================  ===========  ==============
method    advantage   ratio       critic   clip low / high   loss aggregation    KL           extras
========  ==========  ==========  =======  ================  ==================  ===========  ==============
ppo       gae         token       yes      0.2 / 0.2         token-mean          reward (0)   --
mpo       gae|grpo    block       gae      0.2 / 0.2         token-mean          reward (0)   MTP modules
grpo      grpo        token       no       0.2 / 0.2         seq-mean-token-mean loss k3 1e-3 group sampling
dapo      grpo        token       no       0.2 / 0.28        token-mean          none         dynamic sampling, overlong
gspo      grpo        sequence    no       3e-4 / 4e-4       seq-mean-token-mean none         sequence ratio
tempo     tempo       token       no       0.2 / 0.2         seq-mean-token-mean loss k3 1e-3 prefix-tree TD
mot_grpo  grpo        token       no       0.2 / 0.2         seq-mean-token-mean loss k3 1e-3 mixture rollout
========  ==========  ==========  =======  ================  ==================  ===========  ==============

Beyond the paper: ``tempo`` is GRPO with TEMPO's per-token advantages (docs/method.md §8); ``mot_grpo`` is GRPO on
mixture-of-token rollouts (MoT-G, §9; the config's ``mot`` section; ``spec["rollout"] == "mot"``, hf engine only).

Batch sizes count *sampled responses* (``train.batch_unit: responses``, the default): every method samples and
updates on the same number of responses per step (compute-matched), a group method with group size G drawing
batch_size / G prompts. ``batch_unit: prompts`` counts prompts instead (the verl convention, where a group method
samples G times as many responses).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from mpo.enums import ADV_ESTIMATOR_NAMES, GROUP_ADVANTAGES, LOSS_AGGS, METHODS, MTP_GRAD_MODES, RATIO_FORMS

__all__ = ["METHODS", "METHOD_DEFAULTS", "VARIANT_KEYS", "VariantError", "canonical_variant", "mtp_dir_for",
           "resolve_variant", "run_dir", "seeds_of", "all_seeds", "trained_variants", "variants_of"]

# Per-method defaults. `None` = take the train section's value.
_GRPO_DEFAULTS = dict(advantage="grpo", ratio="token", clip_low=0.2, clip_high=0.2, loss_agg="seq-mean-token-mean",
                      kl_loss_coef=1e-3, group_size=None, dynamic_sampling=False, overlong_shaping=False)
METHOD_DEFAULTS: dict[str, dict] = {
    "ppo": dict(advantage="gae", ratio="token", clip_low=0.2, clip_high=0.2, loss_agg="token-mean",
                kl_loss_coef=0.0, group_size=1, dynamic_sampling=False, overlong_shaping=False),
    "mpo": dict(advantage="gae", ratio="block", clip_low=0.2, clip_high=0.2, loss_agg="token-mean",
                kl_loss_coef=0.0, group_size=1, dynamic_sampling=False, overlong_shaping=False,
                K=5, gamma=0.7, mtp_share=0.2, mtp_grad="hidden", ratio_form="weighted_log_sum"),
    "grpo": _GRPO_DEFAULTS,
    "dapo": dict(advantage="grpo", ratio="token", clip_low=0.2, clip_high=0.28, loss_agg="token-mean",
                 kl_loss_coef=0.0, group_size=None, dynamic_sampling=True, overlong_shaping=True),
    "gspo": dict(advantage="grpo", ratio="sequence", clip_low=3e-4, clip_high=4e-4, loss_agg="seq-mean-token-mean",
                 kl_loss_coef=0.0, group_size=None, dynamic_sampling=False, overlong_shaping=False),
    # beyond the paper: GRPO with TEMPO's per-token advantages; GRPO on mixture-of-token rollouts
    "tempo": {**_GRPO_DEFAULTS, "advantage": "tempo"},
    "mot_grpo": dict(_GRPO_DEFAULTS),
}
# methods whose advantages come from groups of responses (no critic)
GROUP_METHODS = ("grpo", "dapo", "gspo", "tempo", "mot_grpo")

# Keys a variant may set (the schema lists the same ones); values None mean "not set here".
VARIANT_KEYS = (
    "method", "alias", "K", "gamma", "mtp_share", "w1", "mtp_grad", "ratio_form", "value_heads", "advantage",
    "group_size", "lr", "critic_lr", "clip_low", "clip_high", "kl_coef", "kl_loss_coef", "loss_agg", "mtp_aux_coef",
    "temperature", "dynamic_sampling", "overlong_shaping",
)
# Keys of the train section that a variant (or method default) can override.
TRAIN_OVERRIDABLE = ("group_size", "lr", "critic_lr", "kl_coef", "mtp_aux_coef", "temperature")


_SEED_SUFFIX = re.compile(r"^(?P<base>.+)_seed(?P<seed>\d+)$")


class VariantError(ValueError):
    """A variant is unknown or inconsistent."""


def variants_of(cfg: dict) -> dict[str, dict]:
    return dict(cfg.get("variants") or {})


def seeds_of(cfg: dict, experiment: str | None = None) -> list[int]:
    """Training seeds: ``seeds`` when the config lists several (the first is ``seed``), else [``seed``].

    With `experiment`, that experiment's own ``experiments.<name>.seeds`` when set (e.g. three seeds for the main
    comparison while the ablations keep one), else the config's."""
    own = ((cfg.get("experiments") or {}).get(experiment) or {}).get("seeds") if experiment else None
    return [int(s) for s in (own or cfg.get("seeds") or [cfg["seed"]])]


def all_seeds(cfg: dict) -> list[int]:
    """Every seed some run trains with: the config's seeds, then each experiment's own, in config order."""
    out = seeds_of(cfg)
    for name in cfg.get("experiments") or {}:
        out += [s for s in seeds_of(cfg, name) if s not in out]
    return out


def split_seed(cfg: dict, name: str) -> tuple[str, int | None]:
    """``ppo_seed7`` -> (``ppo``, 7) when ``ppo`` is a variant and 7 one of the config's further seeds; else (name, None).

    Run names: the config's ``seed`` trains ``<variant>``; every further seed ``s`` of ``seeds`` (or of an
    experiment's ``seeds``: :func:`all_seeds`) trains ``<variant>_seed<s>`` beside it, with the same spec and ``s``
    as its seed."""
    m = _SEED_SUFFIX.match(name)
    if m and m["base"] in variants_of(cfg) and int(m["seed"]) in all_seeds(cfg) and int(m["seed"]) != int(cfg["seed"]):
        return m["base"], int(m["seed"])
    return name, None


def canonical_variant(cfg: dict, name: str) -> str:
    """Follow ``alias`` links to the variant that actually trains (a seed suffix is kept: mpo_k5_seed7 -> mpo_seed7)."""
    name, seed = split_seed(cfg, name)
    seen = []
    variants = variants_of(cfg)
    while True:
        if name not in variants:
            raise VariantError(f"variant '{name}' is not defined in the config's 'variants' (known: {sorted(variants)})")
        seen.append(name)
        target = (variants[name] or {}).get("alias")
        if not target:
            return name if seed is None else f"{name}_seed{seed}"
        if target in seen:
            raise VariantError(f"variant alias cycle: {' -> '.join(seen + [target])}")
        name = target


def trained_variants(cfg: dict) -> list[str]:
    """Run names that train: every non-alias variant, in config order, then each with every further seed."""
    names = [n for n, v in variants_of(cfg).items() if not (v or {}).get("alias")]
    extra = [s for s in all_seeds(cfg) if s != int(cfg["seed"])]
    return names + [f"{n}_seed{s}" for s in extra for n in names]


def run_dir(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None) -> Path:
    """``<results>/runs/<model>/<dataset>/<canonical variant>`` (aliases resolved when ``cfg`` is given)."""
    name = canonical_variant(cfg, variant) if cfg is not None else variant
    return Path(results) / "runs" / model / dataset / name


def _check_enum(name: str, spec: dict, key: str, allowed: tuple) -> None:
    if spec[key] not in allowed:
        raise VariantError(f"variant '{name}': {key} must be {'|'.join(allowed)}, got {spec[key]!r}")


def resolve_variant(cfg: dict, name: str) -> dict:
    """The flat spec of a variant: method defaults < ``train`` section < variant keys, checked for consistency.
    A seed run (``<variant>_seed<s>``, :func:`split_seed`) gets its variant's spec plus ``seed: s``."""
    base, seed = split_seed(cfg, name)
    if seed is not None:
        return {**resolve_variant(cfg, base), "seed": seed}
    name = canonical_variant(cfg, name)
    raw = {k: v for k, v in (variants_of(cfg)[name] or {}).items() if v is not None}
    unknown = set(raw) - set(VARIANT_KEYS)
    if unknown:
        raise VariantError(f"variant '{name}': unknown keys {sorted(unknown)}")
    method = raw.get("method")
    if method not in METHODS:
        raise VariantError(f"variant '{name}': method must be one of {METHODS}, got {method!r}")
    train = cfg.get("train") or {}
    spec = copy.deepcopy(METHOD_DEFAULTS[method])
    for key in TRAIN_OVERRIDABLE:
        if spec.get(key) is None:
            spec[key] = train.get(key)
    spec.setdefault("kl_coef", train.get("kl_coef", 0.0))
    spec.setdefault("mtp_aux_coef", train.get("mtp_aux_coef", 0.0))
    spec.update(raw)
    spec.pop("alias", None)
    spec["name"] = name
    spec["method"] = method

    # MTP settings: only MPO has modules; everything else is K = 1.
    if method == "mpo":
        spec["K"] = int(spec["K"])
        if spec["K"] < 1:
            raise VariantError(f"variant '{name}': K must be >= 1")
        if spec.get("w1") is not None and "mtp_share" in raw:
            raise VariantError(f"variant '{name}': give mtp_share or w1, not both")
        if spec.get("w1") is not None:
            spec["mtp_share"] = None
        _check_enum(name, spec, "mtp_grad", MTP_GRAD_MODES)
        _check_enum(name, spec, "ratio_form", RATIO_FORMS)
    else:
        for key in ("K", "gamma", "mtp_share", "w1", "mtp_grad", "ratio_form", "value_heads"):
            if key in raw and key != "value_heads":
                raise VariantError(f"variant '{name}': '{key}' only applies to method mpo")
        spec.update(K=1, gamma=None, mtp_share=0.0, w1=None, mtp_grad=None, ratio_form="weighted_log_sum")
    spec["value_heads"] = bool(spec.get("value_heads", False))
    if spec["value_heads"] and (method != "mpo" or spec["K"] < 2):
        raise VariantError(f"variant '{name}': value_heads needs method mpo with K >= 2")

    _check_enum(name, spec, "advantage", ADV_ESTIMATOR_NAMES)
    group = spec["advantage"] in GROUP_ADVANTAGES
    if group and method in ("ppo",):
        raise VariantError(f"variant '{name}': ppo uses GAE advantages (use method grpo for group advantages)")
    if not group and method in GROUP_METHODS:
        raise VariantError(f"variant '{name}': {method} uses group advantages "
                           f"(advantage: {'|'.join(GROUP_ADVANTAGES)})")
    spec["critic"] = spec["advantage"] == "gae"
    if spec["value_heads"] and not spec["critic"]:
        raise VariantError(f"variant '{name}': value_heads needs a critic (advantage: gae)")
    if group and method == "mpo" and spec.get("group_size") in (None, 1):
        spec["group_size"] = train.get("group_size")
    if spec["advantage"] == "gae" and "group_size" not in raw:
        spec["group_size"] = 1
    spec["group_size"] = int(spec["group_size"])
    if spec["group_size"] < 1 or (group and spec["group_size"] < 2):
        raise VariantError(f"variant '{name}': group methods need group_size >= 2, got {spec['group_size']}")
    _check_enum(name, spec, "loss_agg", LOSS_AGGS)
    if spec.get("critic_lr") is None:
        spec["critic_lr"] = 10.0 * float(spec["lr"])
    spec["needs_ref"] = float(spec["kl_coef"]) > 0 or float(spec["kl_loss_coef"]) > 0
    spec["uses_mtp_modules"] = method == "mpo" and spec["K"] > 1
    spec["rollout"] = "mot" if method == "mot_grpo" else "sample"  # mixture-of-token rollouts (the `mot` section)
    return spec


def mtp_dir_for(results: str | Path, model: str, spec: dict) -> Path | None:
    """The warm-up output the variant needs: ``<results>/models/<model>/mtp_k<K>`` (None without modules)."""
    if not spec["uses_mtp_modules"]:
        return None
    return Path(results) / "models" / model / f"mtp_k{spec['K']}"
