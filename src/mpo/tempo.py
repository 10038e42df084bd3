"""TEMPO's token advantages: GRPO's group-relative outcome term plus a temporal-difference correction along the
prefix tree of a group's responses (docs/method.md §8). Re-exported as ``mpo.algos.tempo_advantages`` and registered
as the advantage estimator ``tempo`` (``mpo.algos_registry``)."""

from __future__ import annotations

import torch


def tempo_advantages(
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    group_size: int,
    *,
    scale: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """TEMPO token advantages: GRPO's group-relative term plus the prefix tree's TD correction.

    The G responses of a group form a prefix tree; V(s) is the mean reward of the responses whose first
    tokens are s (Prefix-to-Tree). With u_{i,t} the prefix of response i up to and including token t:
        A_{i,t} = ( r_i - mean_G r + V(u_{i,t}) - V(u_{i,t-1}) ) / ( std_G r + eps ),   V(u_{i,-1}) = mean_G r
    std is the unbiased group std; ``scale=False`` drops the division. Response j shares u_{i,t} when
    its tokens 0..t are counted (mask) and equal to i's. Once i is alone in its branch both values are
    r_i and the TD term is 0 (plain GRPO there). ``token_ids``, ``mask``: [B, T] with the G rows of a
    group contiguous (as in ``group_advantages``); ``rewards``: [B]. ``group_size == 1`` gives 0.
    Cost O(B G T): a [G, G, T] shared-prefix table per group. Returns [B, T], zero where mask is 0.
    """
    B, T = token_ids.shape
    if group_size < 1 or B % group_size != 0 or rewards.shape != (B,) or mask.shape != (B, T):
        raise ValueError(f"tempo_advantages: token_ids {tuple(token_ids.shape)}, mask {tuple(mask.shape)}, rewards "
                         f"{tuple(rewards.shape)} are not [B, T], [B, T], [B] with B a multiple of {group_size}")
    m = mask.bool()
    r = rewards.reshape(-1, group_size)  # [n, G]
    if group_size == 1:
        return torch.zeros(token_ids.shape, dtype=rewards.dtype, device=rewards.device)
    tok, mk = token_ids.reshape(-1, group_size, 1, T), m.reshape(-1, group_size, 1, T)
    same = (tok == tok.transpose(1, 2)) & mk & mk.transpose(1, 2)  # [n, G, G, T]: token t of i and j equal
    shared = torch.cummin(same.to(torch.uint8), dim=-1).values.to(r.dtype)  # j shares i's prefix through t
    v_incl = torch.einsum("nijt,nj->nit", shared, r) / shared.sum(2).clamp(min=1)  # V(u_{i,t})
    mean = r.mean(1, keepdim=True)
    v_excl = torch.cat([mean[..., None].expand(-1, group_size, 1), v_incl[..., :-1]], dim=-1)  # V(u_{i,t-1})
    adv = r[..., None] - mean[..., None] + v_incl - v_excl
    if scale:
        adv = adv / (r.std(1, keepdim=True)[..., None] + eps)
    adv = adv.reshape(B, T)
    return torch.where(m, adv, torch.zeros((), dtype=adv.dtype, device=adv.device))
