"""The algorithm registries (verl ``core_algos.py`` style), re-exported by ``mpo.algos``.

* :data:`ADV_ESTIMATORS` (``register_adv_estimator``): a variant's ``advantage`` -> its estimator, called with
  keyword arguments (scores, token_rewards, values, mask, gamma, lam, group_size) -> (advantages [B, T], returns
  [B, T] or None).
* :data:`LOG_RATIOS` (``register_log_ratio``): a ratio kind -> (logp, old_logp [B, T, K], mask, weights=, form=) ->
  the log ratio [B, T] the policy loss uses.
* :data:`POLICY_LOSSES` (``register_policy_loss``): a ratio kind (token: PPO, GRPO, DAPO; block: MPO; sequence:
  GSPO) -> (logp, old_logp, mask, advantages, eps_low=, eps_high=, agg=, weights=, form=) -> (loss, metrics,
  log ratio).

The names are ``mpo.enums``'s; the formulas are ``mpo.algos``'s.
"""

from __future__ import annotations

from typing import Callable

import torch

from mpo.enums import RATIO_KINDS

ADV_ESTIMATORS: dict[str, Callable] = {}
LOG_RATIOS: dict[str, Callable] = {}
POLICY_LOSSES: dict[str, Callable] = {}


def _registrar(table: dict, what: str):
    def register(name: str):
        def decorate(fn: Callable) -> Callable:
            if name in table and table[name] is not fn:
                raise ValueError(f"{what} {name!r} is already registered ({table[name].__name__})")
            table[name] = fn
            return fn

        return decorate

    return register


def _lookup(table: dict, what: str, name: str) -> Callable:
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; registered: {sorted(table)}")
    return table[name]


register_adv_estimator = _registrar(ADV_ESTIMATORS, "advantage estimator")
register_log_ratio = _registrar(LOG_RATIOS, "log ratio")
register_policy_loss = _registrar(POLICY_LOSSES, "policy loss")


def get_adv_estimator(name: str) -> Callable:
    return _lookup(ADV_ESTIMATORS, "advantage estimator", name)


def get_policy_loss(name: str) -> Callable:
    return _lookup(POLICY_LOSSES, "policy loss", name)


# The registered adapters. mpo.algos imports the machinery above at its end; importing it here, after the
# machinery, works whichever of the two modules is imported first.
from mpo import algos  # noqa: E402


@register_adv_estimator("gae")
def gae_advantage_return(*, token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                         lam: float, **_) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO / MPO: :func:`gae` over per-token rewards and the critic's values; (advantages, returns) [B, T]."""
    return algos.gae(token_rewards, values.float(), algos._bool(mask), gamma, lam)


@register_adv_estimator("grpo")
def grpo_outcome_advantage(*, scores: torch.Tensor, mask: torch.Tensor, group_size: int, **_) -> tuple[torch.Tensor, None]:
    """GRPO, DAPO, GSPO: :func:`group_advantages` of the outcome scores [B], broadcast over each row's tokens
    (zero on padding); no returns."""
    adv = algos.group_advantages(scores.float(), int(group_size))
    return torch.where(algos._bool(mask), adv[:, None].expand(mask.shape), torch.zeros((), device=adv.device)), None


@register_adv_estimator("tempo")
def tempo_outcome_advantage(*, scores: torch.Tensor, mask: torch.Tensor, group_size: int, token_ids: torch.Tensor,
                            scale: bool = True, **_) -> tuple[torch.Tensor, None]:
    """TEMPO: :func:`mpo.algos.tempo_advantages` of the outcome scores [B] over the groups' prefix trees of the
    response ``token_ids`` [B, T] (per token, zero on padding); no returns (docs/method.md §8)."""
    return algos.tempo_advantages(token_ids, algos._bool(mask), scores.float(), int(group_size), scale=scale), None


register_log_ratio("token")(algos.token_log_ratio)


@register_log_ratio("block")
def _block_log_ratio(logp, old_logp, mask, *, weights: torch.Tensor, form: str = "weighted_log_sum", **_):
    """MPO: :func:`block_log_ratio` over the K predictors."""
    return algos.block_log_ratio(logp, old_logp, algos._bool(mask), weights.to(logp.device), form=form)


@register_log_ratio("sequence")
def _sequence_log_ratio(logp, old_logp, mask, **_):
    """GSPO: the row's mean token log ratio, broadcast to its tokens."""
    m = algos._bool(mask)
    return algos.sequence_ratio_as_tokens(algos.sequence_log_ratio(logp[..., 0], old_logp[..., 0], m), m)


def _clipped_loss_with(kind: str) -> Callable:
    def policy_loss(logp, old_logp, mask, advantages, *, eps_low: float, eps_high: float, agg: str,
                    weights: torch.Tensor | None = None, form: str = "weighted_log_sum"):
        log_ratio = LOG_RATIOS[kind](logp, old_logp, mask, weights=weights, form=form)
        loss, metrics = algos.clipped_policy_loss(log_ratio, advantages, mask, eps_low, eps_high, agg=agg)
        return loss, metrics, log_ratio

    policy_loss.__name__ = f"{kind}_clipped_policy_loss"
    policy_loss.__doc__ = (f"The clipped surrogate (:func:`clipped_policy_loss`) with the {kind} log ratio "
                           f"(``LOG_RATIOS['{kind}']``); logp, old_logp [B, T, K]. Returns (loss, metrics, log ratio).")
    return policy_loss


for _kind in RATIO_KINDS:
    register_policy_loss(_kind)(_clipped_loss_with(_kind))
