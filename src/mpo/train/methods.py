"""What differs between PPO, GRPO, DAPO, GSPO, MPO, TEMPO and MoT-G GRPO: advantages, the ratio, and the policy loss.

Everything else (rollouts, rewards, batching, optimisation, logging) is shared by the trainer. The formulas are
``mpo.algos``'s; this module looks them up in its registries by the resolved variant spec
(``mpo.train.variants.resolve_variant``): ``spec["advantage"]`` in ``algos.ADV_ESTIMATORS``, ``spec["ratio"]`` in
``algos.LOG_RATIOS`` / ``algos.POLICY_LOSSES``. Tensors are response aligned ([N, T] / [N, T, K], see ``batch.py``).
"""

from __future__ import annotations

import torch

from mpo import algos


def mtp_weights_for(spec: dict) -> torch.Tensor:
    """w_0 .. w_{K-1} of the block ratio (paper Eq. 10); [1.] for K = 1 / non-MPO methods."""
    if spec["method"] != "mpo" or spec["K"] == 1:
        return torch.ones(1, dtype=torch.float32)
    if spec.get("w1") is not None:
        return algos.mtp_weights(spec["K"], float(spec["gamma"]), w1=float(spec["w1"]))
    return algos.mtp_weights(spec["K"], float(spec["gamma"]), total=float(spec["mtp_share"]))


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None, kl_coef: float) -> torch.Tensor:
    """Outcome reward on each response's last token, minus ``kl_coef * kl`` on every token (PPO / MPO)."""
    m = mask.bool()
    lengths = m.sum(-1)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=scores.device)
    rows = torch.arange(mask.shape[0], device=scores.device)
    out[rows, (lengths - 1).clamp(min=0)] = scores.float() * (lengths > 0).float()
    if kl is not None and kl_coef > 0:
        out = out - kl_coef * torch.where(m, kl.float(), torch.zeros((), device=kl.device))
    return out


def advantages(spec: dict, train_cfg: dict, *, scores: torch.Tensor, mask: torch.Tensor,
               values: torch.Tensor | None, kl: torch.Tensor | None, whiten=None,
               token_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Advantages [N, T] with the variant's estimator (and, with a critic, its returns and the token rewards).

    ``token_ids``: the response tokens [N, T] (TEMPO's prefix trees, docs/method.md §8; the rows of a group
    contiguous, as ``sampling.collect_batch`` lays them out).

    Critic methods (GAE): per-token rewards (outcome on the last token, minus the reward KL), whitened advantages
    when ``train.whiten_advantages``. ``whiten``: callable (x, mask) -> whitened x (the trainer passes a version
    that pools statistics across processes); defaults to ``algos.masked_whiten``.
    """
    m = mask.bool()
    estimator = algos.get_adv_estimator(spec["advantage"])
    rewards = token_rewards(scores, mask, kl, float(spec["kl_coef"])) if spec["critic"] else None
    adv, ret = estimator(scores=scores, token_rewards=rewards, values=values, mask=m,
                         gamma=float(train_cfg["gamma_rl"]), lam=float(train_cfg["lambda_gae"]),
                         group_size=int(spec["group_size"]), token_ids=token_ids)
    if not spec["critic"]:
        return {"advantages": adv}
    if train_cfg["whiten_advantages"]:
        adv = (whiten or algos.masked_whiten)(adv, m)
    return {"advantages": adv, "returns": ret, "token_rewards": rewards}


def log_ratios(spec: dict, logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
               weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy log ratio: the one the loss uses [N, T], token log ratio: the backbone's log r_t [N, T]).

    token (PPO, GRPO, DAPO): log r_t; block (MPO): log rtilde_t over the K predictors (Eq. 8 / 9);
    sequence (GSPO): the row's mean token log ratio broadcast to its tokens.
    """
    m = mask.bool()
    policy = algos.LOG_RATIOS[spec["ratio"]](logp, old_logp, m, weights=weights, form=spec["ratio_form"])
    return policy, algos.token_log_ratio(logp, old_logp, m)


def policy_loss(spec: dict, *, logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                advantages: torch.Tensor, weights: torch.Tensor, ref_logp: torch.Tensor | None = None):
    """The method's policy objective on one micro-batch:
    (pg_loss, kl_loss | None, metrics, policy log ratio, token log ratio).

    pg_loss = ``algos.POLICY_LOSSES[spec["ratio"]]``: the clipped surrogate with the method's ratio, clip range and
    aggregation; kl_loss (GRPO) = the k3 estimate of KL(pi_theta || pi_ref), aggregated the same way (the trainer
    adds ``kl_loss_coef *`` it, ``loss.compose_loss``).
    """
    m = mask.bool()
    loss, metrics, policy_lr = algos.get_policy_loss(spec["ratio"])(
        logp, old_logp, m, advantages, eps_low=float(spec["clip_low"]), eps_high=float(spec["clip_high"]),
        agg=spec["loss_agg"], weights=weights, form=spec["ratio_form"])
    kl_loss = None
    if float(spec["kl_loss_coef"]) > 0:
        kl_loss = algos.aggregate_loss(algos.kl_penalty(logp[..., 0], ref_logp, "k3"), m, spec["loss_agg"])
    return loss, kl_loss, metrics, policy_lr, algos.token_log_ratio(logp, old_logp, m)
