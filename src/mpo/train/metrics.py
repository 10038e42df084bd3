"""The per-step metrics row of ``metrics.jsonl`` (docs/method.md §7) and the run summary.

:class:`UpdateLog` collects what the update phase produces (weighted means, the log ratios of every counted token,
gradient norms); :func:`update_metrics` pools it over processes; :func:`step_metrics` adds the rollout and scoring
statistics. Estimators (approx-KL, explained variance, variances) are ``mpo.algos``'s.
"""

from __future__ import annotations

import resource

import numpy as np
import torch

from mpo import algos


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class UpdateLog:
    """Accumulators of one update phase (all epochs, all mini-batches) on this process."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.policy_log_ratio: list[torch.Tensor] = []  # the ratio the loss uses (block / sequence / token)
        self.token_log_ratio: list[torch.Tensor] = []  # the backbone's per-token log ratio
        self.seq_log_ratio: list[torch.Tensor] = []  # GSPO: per row
        self.first_dev: dict[str, float] = {}  # max |r - 1| over the first mini-batch of the update
        self.grad_norms: list[float] = []
        self.mtp_norms: list[float] = []
        self.critic_norms: list[float] = []

    def add(self, name: str, value, weight: float = 1.0) -> None:
        """A weighted observation of ``name`` (pooled later as sum(value * weight) / sum(weight))."""
        self.sums[name] = self.sums.get(name, 0.0) + float(value) * float(weight)
        self.weights[name] = self.weights.get(name, 0.0) + float(weight)

    def add_ratios(self, mask: torch.Tensor, policy_log_ratio: torch.Tensor, token_log_ratio: torch.Tensor,
                   first: bool) -> None:
        """The counted tokens' log ratios of one micro-batch (and their max deviation from 1 on the first one)."""
        m = mask.bool()
        self.policy_log_ratio.append(policy_log_ratio.detach()[m])
        self.token_log_ratio.append(token_log_ratio.detach()[m])
        if first:
            for key, val in (("token", token_log_ratio), ("block", policy_log_ratio)):
                dev = (torch.exp(val.detach()[m]) - 1).abs().max() if m.any() else torch.zeros(())
                self.first_dev[key] = max(self.first_dev.get(key, 0.0), float(dev))


def _mean_var(x: torch.Tensor) -> tuple[float, float]:
    ones = torch.ones_like(x, dtype=torch.bool)
    return float(algos.masked_mean(x, ones)), float(algos.masked_var(x, ones))


def update_metrics(log: UpdateLog, dist, ratio_kind: str) -> dict:
    """Pooled (over processes) metrics of one update: weighted means, ratio statistics, gradient norms."""
    keys = sorted(log.sums)
    device = dist.device
    sums = dist.reduce(torch.tensor([log.sums[k] for k in keys] or [0.0], device=device, dtype=torch.float64))
    ws = dist.reduce(torch.tensor([log.weights[k] for k in sorted(log.weights)] or [0.0], device=device,
                                  dtype=torch.float64))
    res = {k: (float(s / w) if w > 0 else float("nan")) for k, s, w in zip(keys, sums.tolist(), ws.tolist())}
    policy_all = dist.gather_cat(torch.cat(log.policy_log_ratio).float())
    token_all = dist.gather_cat(torch.cat(log.token_log_ratio).float())
    ratio_mean, ratio_var = _mean_var(torch.exp(token_all))
    block_mean, block_var = (ratio_mean, ratio_var) if ratio_kind == "sequence" else _mean_var(torch.exp(policy_all))
    res.update({
        "ratio_mean": ratio_mean, "ratio_var": ratio_var, "block_ratio_mean": block_mean, "block_ratio_var": block_var,
        "approx_kl": float(algos.approx_kl(token_all, torch.ones_like(token_all, dtype=torch.bool))),
        "first_minibatch_ratio_maxdev": dist.max(log.first_dev.get("token", 0.0)),
        "first_minibatch_block_ratio_maxdev": dist.max(log.first_dev.get("block", 0.0)),
        "grad_norm": float(np.mean(log.grad_norms)) if log.grad_norms else float("nan"),
        "grad_norm_max": float(np.max(log.grad_norms)) if log.grad_norms else float("nan"),
        "optimizer_steps": len(log.grad_norms),
    })
    if ratio_kind == "sequence":
        res["seq_ratio_mean"], res["seq_ratio_var"] = _mean_var(torch.exp(dist.gather_cat(torch.cat(log.seq_log_ratio).float())))
    if log.mtp_norms:
        res["mtp_grad_norm"] = float(np.mean(log.mtp_norms))
    if log.critic_norms:
        res["critic_grad_norm"] = float(np.mean(log.critic_norms))
    return res


def rollout_metrics(ro: dict, batch, sc, dist) -> dict:
    """Reward, accuracy, lengths (of the first sampling round), the trained batch's reward, the entropy, and the
    fraction of response tokens whose advantage is non-zero (``adv_nonzero_frac``: steps where it is 0 carry no policy
    signal, e.g. every group's rewards equal; the ratio statistics of Figures 4 and 6 skip them)."""
    mask = batch.resp["mask"].bool()
    g = lambda x: dist.gather_cat(x.to(dist.device))  # noqa: E731
    reward, correct, length, trunc = g(ro["reward"]), g(ro["accuracy"]), g(ro["length"]), g(ro["truncated"])
    return {
        "reward": float(reward.mean()), "reward_std": float(reward.std()) if reward.numel() > 1 else 0.0,
        "accuracy": float(correct.mean()), "batch_reward": float(g(batch.row["scores"]).mean()),
        "response_length": float(length.mean()), "response_length_max": float(length.max()),
        "truncated_frac": float(trunc.mean()), "entropy": float(g(sc.entropy[mask]).mean()),
        "adv_nonzero_frac": float(g((batch.resp["adv"][mask] != 0).float()).mean()),
    }


def critic_metrics(sc, returns: torch.Tensor, mask: torch.Tensor, dist, mixture: list[float]) -> dict:
    m = mask.bool()
    values, rets = dist.gather_cat(sc.values[m]), dist.gather_cat(returns[m])
    out = {"values_mean": float(values.mean()),
           "vf_explained_var": float(algos.explained_variance(rets, values, torch.ones_like(rets, dtype=torch.bool)))}
    if len(mixture) > 1:
        out.update({f"value_mix/k{k}": w for k, w in enumerate(mixture)})
    return out


def predictor_metrics(sc, mask: torch.Tensor, K: int, dist) -> dict:
    """Per-predictor accuracy / rank of the realised token at rollout time (Figure 7); k = 0 is the backbone."""
    out = {}
    for k in range(K):
        v = sc.valid[..., k] & mask.bool()
        top = dist.gather_cat(sc.top1[..., k][v].float())
        rk = dist.gather_cat(sc.rank[..., k][v].float())
        name_t, name_r = ("backbone_top1", "backbone_rank") if k == 0 else (f"mtp_top1/k{k}", f"mtp_rank/k{k}")
        out[name_t] = float(top.mean()) if top.numel() else float("nan")
        out[name_r] = float(rk.mean()) if rk.numel() else float("nan")
    return out


def dynamic_sampling_metrics(ro: dict, dist) -> dict:
    return {"ds_rounds": ro["ds_rounds"], "ds_resample_rounds": ro["ds_rounds"] - 1,
            "ds_dropped_groups": int(dist.sum(ro["ds_dropped"])), "ds_filled_groups": int(dist.sum(ro["ds_filled"]))}


def summarize(rows: list[dict]) -> dict:
    """Timing / memory summary of the metrics rows of a run."""
    col = lambda k: [r[k] for r in rows if k in r]  # noqa: E731
    return {
        "final": rows[-1] if rows else {},
        "time_step": col("time_step"), "time_rollout": col("time_rollout"),
        "time_old_logprob": col("time_old_logprob"), "time_update": col("time_update"),
        "median_time_step": float(np.median(col("time_step"))) if col("time_step") else None,
        "mean_time": {k: float(np.mean(col(k))) if col(k) else None
                      for k in ("time_rollout", "time_old_logprob", "time_update", "time_step")},
        "peak_mem_mb": max(col("peak_mem_mb"), default=None),
    }
