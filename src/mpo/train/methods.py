"""What differs between PPO, GRPO, DAPO, GSPO and MPO: advantages, the ratio, and the policy loss.

Everything else (rollouts, rewards, batching, optimisation, logging) is shared by the trainer. The formulas are
``mpo.algos``'s; this module only chooses between them according to a resolved variant spec
(``mpo.train.variants.resolve_variant``). Tensors are response aligned ([N, T] / [N, T, K], see ``batch.py``).
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
               values: torch.Tensor | None, kl: torch.Tensor | None, whiten=None) -> dict[str, torch.Tensor]:
    """Advantages [N, T] (and returns for the critic): GAE with the critic, or group-normalised scores.

    ``whiten``: callable (x, mask) -> whitened x (the trainer passes a version that pools statistics across
    processes); defaults to ``algos.masked_whiten``.
    """
    m = mask.bool()
    if spec["advantage"] == "gae":
        rewards = token_rewards(scores, mask, kl, float(spec["kl_coef"]))
        adv, ret = algos.gae(rewards, values.float(), m, float(train_cfg["gamma_rl"]), float(train_cfg["lambda_gae"]))
        if train_cfg["whiten_advantages"]:
            adv = (whiten or algos.masked_whiten)(adv, m)
        return {"advantages": adv, "returns": ret, "token_rewards": rewards}
    adv = algos.group_advantages(scores.float(), int(spec["group_size"]))
    return {"advantages": torch.where(m, adv[:, None].expand(mask.shape), torch.zeros((), device=adv.device))}


def log_ratios(spec: dict, logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
               weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log ratio the loss uses [N, T], token log ratio [N, T]).

    token (PPO, GRPO, DAPO): log r_t; block (MPO): log rtilde_t over the K predictors (Eq. 8 / 9);
    sequence (GSPO): the row's mean token log ratio broadcast to its tokens.
    """
    m = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    token = torch.where(m, logp[..., 0] - old_logp[..., 0], zero)
    if spec["ratio"] == "block":
        used = algos.block_log_ratio(logp, old_logp, m, weights.to(logp.device), form=spec["ratio_form"])
    elif spec["ratio"] == "sequence":
        used = algos.sequence_ratio_as_tokens(algos.sequence_log_ratio(logp[..., 0], old_logp[..., 0], m), m)
    else:
        used = token
    return used, token


def policy_loss(spec: dict, *, logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                advantages: torch.Tensor, weights: torch.Tensor, ref_logp: torch.Tensor | None = None):
    """The method's policy objective on one micro-batch: (pg_loss, kl_loss | None, metrics, used, token).

    pg_loss = clipped surrogate with the method's ratio, clip range and aggregation; kl_loss (GRPO) = the k3
    estimate of KL(pi_theta || pi_ref), aggregated the same way (the trainer adds ``kl_loss_coef *`` it).
    """
    m = mask.bool()
    used, token = log_ratios(spec, logp, old_logp, m, weights)
    loss, metrics = algos.clipped_policy_loss(used, advantages, m, float(spec["clip_low"]), float(spec["clip_high"]),
                                              agg=spec["loss_agg"])
    kl_loss = None
    if float(spec["kl_loss_coef"]) > 0:
        kl_loss = algos.aggregate_loss(algos.kl_penalty(logp[..., 0], ref_logp, "k3"), m, spec["loss_agg"])
    return loss, kl_loss, metrics, used, token
