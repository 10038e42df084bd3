"""How the terms of one micro-batch's loss are weighted and summed (pure functions, no state).

Gradient accumulation must reproduce the gradient of the loss over the whole mini-batch, on every process. A
micro-batch's mean-type loss is therefore scaled by its *share*: the fraction of the mini-batch it holds (tokens for
a token-mean aggregation, rows for a seq-mean-token-mean one), times ``world * accum`` because ``accelerate``
divides by the accumulation steps in backward and DDP averages over processes.
"""

from __future__ import annotations

import torch


def loss_shares(micro_tokens: float, micro_rows: float, mini_tokens: float, mini_rows: float, world: int,
                accum: int) -> tuple[float, float]:
    """(token share, row share) of a micro-batch in its mini-batch (``mini_*`` summed over processes)."""
    token_share = micro_tokens / mini_tokens * world * accum
    row_share = micro_rows / mini_rows * world * accum
    return token_share, row_share


def module_token_counts(mask: torch.Tensor, K: int) -> torch.Tensor:
    """[K-1] float64: for MTP module k = 1 .. K-1, the response tokens t with a target t + k < L (its CE terms)."""
    lengths = mask.bool().sum(-1)
    return torch.stack([(lengths - k).clamp(min=0).sum() for k in range(1, K)]).double() if K > 1 \
        else torch.zeros(0, dtype=torch.float64, device=mask.device)


def aux_lambdas(lambdas: list[float], micro_counts: torch.Tensor, mini_counts: torch.Tensor, world: int,
                accum: int) -> list[float]:
    """The auxiliary CE weights for one micro-batch: lambda_k times module k's token share of the mini-batch.

    ``MTPModel`` returns sum_k lambda_k CE_k with CE_k a mean over the micro-batch's tokens; with these weights
    (and ``aux_share = 1`` in :func:`compose_loss`) the accumulated loss is sum_k lambda_k (token mean of CE_k over
    the whole mini-batch), whatever the micro-batch size. ``mini_counts``: summed over processes.
    """
    scale = world * accum
    return [lam * (float(n) / float(total) * scale if total > 0 else 0.0)
            for lam, n, total in zip(lambdas, micro_counts.tolist(), mini_counts.tolist())]


def compose_loss(*, policy: torch.Tensor | None = None, kl: torch.Tensor | None = None,
                 aux: torch.Tensor | None = None, value: torch.Tensor | None = None, token_share: float,
                 row_share: float, aux_share: float, row_agg: bool, kl_coef: float,
                 aux_coef: float) -> dict[str, torch.Tensor]:
    """The actor's and the critic's loss of one micro-batch.

    actor  = share * policy + kl_coef * kl * share + aux_coef * aux * aux_share   (share: row share for
             seq-mean-token-mean, token share for token-mean; docs/method.md §1, §6; ``aux``: the MTP modules'
             auxiliary cross-entropy sum_k lambda_k CE_k, §2)
    critic = token_share * value   (token-mean value loss, §1)

    Terms that are None are left out; an entry is returned for each model that has a term.
    """
    share = row_share if row_agg else token_share
    out = {}
    if policy is not None:
        loss = policy * share
        if kl is not None:
            loss = loss + kl_coef * kl * share
        if aux is not None:
            loss = loss + aux_coef * aux * aux_share
        out["actor"] = loss
    if value is not None:
        out["critic"] = value * token_share
    return out
