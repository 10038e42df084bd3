"""Realised-token log-probs without a ``[B, S, vocab]`` tensor (docs/method.md §2-§3).

:func:`chunked_token_logprobs`: rows of valid positions -> head -> log_softmax -> gather of the realised token,
``chunk_size`` rows at a time, under ``torch.utils.checkpoint`` when grad is enabled (only the rows are kept for
backward). :func:`const_head_logprobs`: the same for a head whose output weight is a constant (module heads in
the "hidden" regime, a shared head outside "joint"): the gradient w.r.t. its input is computed in the forward, so
no logits are kept or recomputed.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 1024


def checkpoint_wanted(rows: torch.Tensor, head: nn.Module, checkpoint_min_mb: float) -> bool:
    """Checkpoint the chunks when grad is on, unless all of this predictor's logits (and their log_softmax)
    would fit in ``checkpoint_min_mb`` (0: always checkpoint)."""
    if not torch.is_grad_enabled():
        return False
    if checkpoint_min_mb <= 0:
        return True
    vocab = head.weight.shape[0]  # an nn.Linear or an MTPHead (own or shared weight)
    return rows.shape[0] * vocab * 4 * 2 > checkpoint_min_mb * 2**20


def _chunk_fn(
    head_fn: Callable[[torch.Tensor], torch.Tensor],
    rows: torch.Tensor,
    targets: torch.Tensor,
    inv_temp: float,
    want_entropy: bool,
    want_stats: bool,
):
    logits = head_fn(rows).float()
    if inv_temp != 1.0:
        logits = logits * inv_temp
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1) if want_entropy else None
    if want_stats:
        with torch.no_grad():
            tgt_logit = logits.gather(-1, targets[:, None])
            rank = (logits > tgt_logit).sum(-1)
            top1 = logits.argmax(-1) == targets
    else:
        rank = top1 = None
    return logp, ent, rank, top1


def _cat(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(xs) if len(xs) > 1 else xs[0]


def chunked_token_logprobs(
    head_fn: Callable[[torch.Tensor], torch.Tensor],
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    temperature: float = 1.0,
    want_entropy: bool = False,
    want_stats: bool = False,
    use_checkpoint: bool | None = None,
):
    """log_softmax(head_fn(rows) / temperature)[i, targets[i]] for rows [M, d], `chunk_size` rows at a time.

    Returns (logp [M], entropy [M] | None, rank [M] | None, top1 [M] | None). With grad enabled each chunk runs
    under a non-reentrant checkpoint, so only the rows (not the [chunk, vocab] logits) are kept for backward.
    """
    M = rows.shape[0]
    if use_checkpoint is None:
        use_checkpoint = torch.is_grad_enabled()
    inv_temp = 1.0 / float(temperature)
    if M == 0:
        z = rows[:, 0].float() * 0.0  # empty, but still attached to the graph of `rows`
        zl = torch.zeros(0, dtype=torch.long, device=rows.device)
        return z, (z if want_entropy else None), (zl if want_stats else None), (zl.bool() if want_stats else None)
    lps, ents, ranks, tops = [], [], [], []
    for a in range(0, M, chunk_size):
        r, t = rows[a : a + chunk_size], targets[a : a + chunk_size]
        if use_checkpoint:
            lp, ent, rk, tp = checkpoint(
                _chunk_fn, head_fn, r, t, inv_temp, want_entropy, want_stats, use_reentrant=False, preserve_rng_state=False
            )
        else:
            lp, ent, rk, tp = _chunk_fn(head_fn, r, t, inv_temp, want_entropy, want_stats)
        lps.append(lp)
        ents.append(ent)
        ranks.append(rk)
        tops.append(tp)
    return (
        _cat(lps),
        _cat(ents) if want_entropy else None,
        _cat(ranks) if want_stats else None,
        _cat(tops) if want_stats else None,
    )


class _ConstHeadLogp(torch.autograd.Function):
    """Realised-token log-probs through a CONSTANT output layer, with the input gradient computed in the forward.

    ``logp_i = log_softmax((x_i W^T + b) / T)[t_i]`` is one scalar per row, so its gradient w.r.t. ``x_i`` is the
    [d] vector ``v_i = (W[t_i] - p_i W) / T`` (p_i: the softmax), whatever the loss above it: the forward keeps
    ``v`` ([M, d]) and the backward is one broadcast multiply. No [M, vocab] tensor outlives a chunk, nothing is
    recomputed (the checkpointed path runs the head matmul twice), and one forward serves any number of
    backward routes (the fused policy + auxiliary pass). The same idea as fused linear cross-entropy kernels, for
    the case where W and b get no gradient: MTP heads in the "hidden" regime and a shared LM head outside "joint".
    """

    @staticmethod
    def forward(ctx, x, weight, bias, targets, inv_temp: float, chunk: int):
        lps, vs = [], []
        for a in range(0, x.shape[0], chunk):
            t = targets[a : a + chunk]
            logits = F.linear(x[a : a + chunk], weight, bias).float()
            if inv_temp != 1.0:
                logits = logits * inv_temp
            logp_all = torch.log_softmax(logits, dim=-1)
            lps.append(logp_all.gather(-1, t[:, None]).squeeze(-1))
            p = logp_all.exp_()  # in place: the [chunk, vocab] log-probs are not needed any more
            v = weight.index_select(0, t).float() - torch.mm(p.to(weight.dtype), weight).float()
            vs.append(v * inv_temp if inv_temp != 1.0 else v)
        ctx.save_for_backward(_cat(vs))
        ctx.x_dtype = x.dtype
        return _cat(lps)

    @staticmethod
    def backward(ctx, grad_logp):
        (v,) = ctx.saved_tensors
        return (grad_logp.float()[:, None] * v).to(ctx.x_dtype), None, None, None, None, None


def const_head_logprobs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, *,
                        temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """``log_softmax(F.linear(x, weight, bias) / temperature)[i, targets[i]]`` ([M]) for a head whose weight and
    bias are constants (detached here); differentiable w.r.t. ``x`` through :class:`_ConstHeadLogp`."""
    if x.shape[0] == 0:
        return x[:, 0].float() * 0.0
    b = bias.detach() if bias is not None else None
    return _ConstHeadLogp.apply(x, weight.detach(), b, targets, 1.0 / float(temperature), int(chunk_size))
