"""Scoring a rollout batch without gradients, in one pass per micro-batch: the policy's log-probs of the realised
tokens for all K predictors (the "old" log-probs), the entropy and per-predictor top-1 / rank of the realised token;
the reference log-probs (only when a KL coefficient is non-zero) and the critic's values (PPO, MPO).

MoT-G GRPO (``mot`` given): the policy's and the reference's log-probs are those of the backbone on the recorded
mixture inputs (``mixture.py``, K = 1), and entropy / top-1 / rank come from the same logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpo.train import mixture
from mpo.train.batch import Batch, micro_batches


@dataclass
class Scores:
    """Response-aligned [N, T] / [N, T, K] tensors of one rollout batch."""

    old_logp: torch.Tensor  # [N, T, K]
    entropy: torch.Tensor  # [N, T]
    valid: torch.Tensor  # [N, T, K] bool: predictor k has a target at token t
    top1: torch.Tensor  # [N, T, K] bool
    rank: torch.Tensor  # [N, T, K]
    ref_logp: torch.Tensor | None  # [N, T] (backbone) or None without a reference model
    values: torch.Tensor | None  # [N, T] or None without a critic


@torch.no_grad()
def score_batch(batch: Batch, actor, *, ref=None, critic=None, K: int, micro: int, temperature: float,
                autocast, mot=None) -> Scores:
    """``actor`` / ``critic``: unwrapped models; ``ref``: the frozen reference (or None); ``autocast``: () -> context;
    ``mot``: a ``mixture.MoTSetup`` for mixture-of-token rollouts (else None)."""
    N, T = batch.size, batch.response_len
    dev = batch.resp["mask"].device
    old = torch.zeros(N, T, K, device=dev)
    entropy = torch.zeros(N, T, device=dev)
    valid = torch.zeros(N, T, K, dtype=torch.bool, device=dev)
    top1 = torch.zeros(N, T, K, dtype=torch.bool, device=dev)
    rank = torch.zeros(N, T, K, dtype=torch.long, device=dev)
    ref_lp = torch.zeros(N, T, device=dev) if ref is not None else None
    values = torch.zeros(N, T, device=dev) if critic is not None else None
    for idx in micro_batches(N, micro):
        mb = batch.select(idx)
        ids, am, lpm = mb.seq["input_ids"], mb.seq["attention_mask"], mb.logprob_mask()
        t = mb.response_len
        with autocast():
            if mot is None:
                out = actor(ids, am, logprob_mask=lpm, return_entropy=True, return_stats=True, temperature=temperature)
                old[idx, :t] = mb.response_view(out.logprobs).float()
                entropy[idx, :t] = mb.response_view(out.entropy).float()
                valid[idx, :t] = mb.response_view(out.valid)
                top1[idx, :t] = mb.response_view(out.top1)
                rank[idx, :t] = mb.response_view(out.rank)
            else:
                st = mixture.score_stats(actor.backbone, mb, mot, temperature)
                old[idx, :t], entropy[idx, :t] = st["logp"], st["entropy"]
                valid[idx, :t, 0], top1[idx, :t, 0], rank[idx, :t, 0] = mb.resp["mask"].bool(), st["top1"], st["rank"]
            if ref is not None and mot is None:
                r = ref.realized_token_logprobs(ids, am, logprob_mask=lpm, temperature=temperature)
                ref_lp[idx, :t] = mb.response_view(r)[..., 0].float()
            elif ref is not None:
                ref_lp[idx, :t] = mixture.actor_logprobs(ref.backbone, mb, mot, temperature)[..., 0]
            if critic is not None:
                values[idx, :t] = mb.response_view(critic(ids, am)).float()
    return Scores(old, entropy, valid, top1, rank, ref_lp, values)
