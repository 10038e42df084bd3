"""The one source of truth for the training enums (pure Python, no torch: the Snakefile may import it).

``mpo.algos`` and ``mpo.train.variants`` read these; the config schema (``workflow/schemas/config.schema.yaml``)
and ``mpo.mtp`` must list the same values, which ``tests/test_enums.py`` checks.
"""

from __future__ import annotations

METHODS = ("ppo", "grpo", "dapo", "mpo", "gspo", "tempo", "mot_grpo")  # variant key `method`
ADV_ESTIMATOR_NAMES = ("gae", "grpo", "tempo")  # variant key `advantage`; keys of mpo.algos.ADV_ESTIMATORS
GROUP_ADVANTAGES = ("grpo", "tempo")  # estimators over groups of G responses per prompt (no critic)
RATIO_KINDS = ("token", "block", "sequence")  # PPO/GRPO/DAPO, MPO, GSPO; keys of mpo.algos.POLICY_LOSSES
RATIO_FORMS = ("weighted_log_sum", "product")  # variant key `ratio_form` (MPO's block ratio, docs/method.md §3)
LOSS_AGGS = ("token-mean", "seq-mean-token-mean")  # variant key `loss_agg`
MTP_GRAD_MODES = ("hidden", "detach", "joint")  # variant key `mtp_grad` (docs/method.md §4)
KL_KINDS = ("k1", "k2", "k3")  # train key `kl_estimator`
# MoT-G (docs/method.md §9; mpo.mot): keys of the config's `mot` section
MOT_SUPPORTS = ("topk", "sample")  # mot.support
MOT_WEIGHTINGS = ("prob", "nucleus", "dirichlet")  # mot.weighting
MOT_COMBINES = ("sum", "max")  # mot.combine
MOT_SWITCH_RULES = ("argmax", "sampled")  # mot.switch
MOT_ACTION_LOGPS = ("sampled", "topk_weighted", "topk_mass")  # mot.form; keys of mpo.mot.ACTION_LOGPS

# schema location (variant properties unless noted) -> the tuple it must equal
SCHEMA_ENUMS = {
    "method": METHODS,
    "advantage": ADV_ESTIMATOR_NAMES,
    "ratio_form": RATIO_FORMS,
    "loss_agg": LOSS_AGGS,
    "mtp_grad": MTP_GRAD_MODES,
    "train.kl_estimator": KL_KINDS,
    "mot.support": MOT_SUPPORTS,
    "mot.weighting": MOT_WEIGHTINGS,
    "mot.combine": MOT_COMBINES,
    "mot.switch": MOT_SWITCH_RULES,
    "mot.form": MOT_ACTION_LOGPS,
}
