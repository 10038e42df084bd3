"""Algorithm core: the pure tensor functions behind PPO, GRPO, DAPO, GSPO and MPO.

Every formula here is written down in ``docs/method.md`` (§1, §3, §4, §6); the docstrings
restate it next to the code. The functions are small, pure (no module state, no in-place writes to
their inputs) and take / return torch tensors.

Conventions (shapes use B = rows in the mini-batch, T = padded response length, K = predictors):

* Rows are *response aligned*: column t of a [B, T] tensor belongs to response token t of that row.
* ``mask[b, t]`` is 1 for t < L_b and 0 after, where L_b = ``mask[b].sum()`` is the response length
  of row b (EOS included). Any dtype works (bool / int / float); it is read as ``mask != 0``.
* Values at masked positions are never trusted: they are selected away with ``torch.where`` (never
  multiplied by 0), so junk such as ``-inf`` or ``nan`` in the padding cannot leak into results or
  gradients.
* Losses are to be *minimised*; metrics are detached 0-dim tensors (no host sync here; call
  ``.item()`` when logging).

Layout, top to bottom: masked statistics -> advantages (GAE, group) -> reward shaping (DAPO) ->
MPO block ratio -> GSPO sequence ratio -> losses (policy, value, KL) -> entropy -> registries.

Registries (verl ``core_algos.py`` style, defined in ``mpo.algos_registry`` and re-exported here):
:data:`ADV_ESTIMATORS` (``register_adv_estimator``) maps a variant's ``advantage`` to its estimator,
:data:`LOG_RATIOS` / :data:`POLICY_LOSSES` (``register_log_ratio`` / ``register_policy_loss``) map a ratio kind
(token: PPO, GRPO, DAPO; block: MPO; sequence: GSPO) to its log ratio and clipped policy loss. The names are
``mpo.enums``'s.
"""

from __future__ import annotations

import torch

from mpo.enums import KL_KINDS, LOSS_AGGS, RATIO_FORMS  # the single definitions (re-exported here)

__all__ = [
    "masked_sum", "masked_mean", "masked_var", "masked_whiten", "gae", "group_advantages", "dynamic_sampling_keep",
    "overlong_penalty", "mtp_weights", "block_log_ratio", "sequence_log_ratio", "sequence_ratio_as_tokens",
    "aggregate_loss", "clipped_policy_loss", "clipped_value_loss", "kl_penalty", "approx_kl", "explained_variance",
    "entropy_from_logits", "RATIO_FORMS", "LOSS_AGGS", "KL_KINDS", "ADV_ESTIMATORS", "register_adv_estimator",
    "get_adv_estimator", "LOG_RATIOS", "register_log_ratio", "POLICY_LOSSES", "register_policy_loss",
    "get_policy_loss", "token_log_ratio",
]



# ---------------------------------------------------------------------------------------------------
# Masked statistics
# ---------------------------------------------------------------------------------------------------


def _bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum(x[mask])`` over ``dim`` (all dims when None); masked entries are selected away, not multiplied."""
    x = torch.where(_bool(mask), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum(x * mask) / max(sum(mask), 1)`` over ``dim`` (all dims when None).

    An empty mask gives 0 (not nan), as TRL's ``clamp(min=1)`` does, so an all-padding row or
    mini-batch contributes a zero loss with a zero (finite) gradient.
    """
    count = _bool(mask).sum() if dim is None else _bool(mask).sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x[mask]`` (a 0-dim tensor).

    ``unbiased=True`` applies Bessel's correction n / (n - 1) as verl's ``masked_var`` does. Unlike verl,
    which raises, fewer than two counted elements give 0 (a metric-friendly convention; a single sample
    has no spread to measure).
    """
    m = _bool(mask)
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    if unbiased:
        n = m.sum()
        var = torch.where(n > 1, var * n / (n - 1).clamp(min=1), torch.zeros_like(var))
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the counted entries (unbiased var); zero where mask is 0.

    With ``shift_mean=False`` the mean is added back (scale only), as in verl / TRL PPO.
    """
    m = _bool(mask)
    mean, var = masked_mean(x, m), masked_var(x, m)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------------


def gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (docs/method.md §1).

    For each row, with V_{L} = 0 after the last response token:
        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}          (A_L = 0)
        R_t     = A_t + V_t                                 (the value target)

    Args: token_rewards, values, mask: [B, T]. Rows may have different lengths; positions with
    mask 0 are skipped (the running value and advantage are carried through them, so beyond L_b the
    next value is 0). No whitening (use ``masked_whiten`` for that).
    Returns: (advantages, returns), each [B, T], zero where mask is 0. Callers pass detached values
    (advantages are targets, not differentiated through).
    """
    m = _bool(mask)
    zero = torch.zeros_like(values[:, 0])
    next_value, next_adv = zero, zero
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        next_adv = torch.where(m[:, t], adv_t, next_adv)
        next_value = torch.where(m[:, t], values[:, t], next_value)
        advantages[:, t] = torch.where(m[:, t], adv_t, zero)
    returns = torch.where(m, advantages + values, torch.zeros_like(values))
    return advantages, returns


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    scale: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """GRPO advantages (docs/method.md §6): ``A_i = (R_i - mean_g R) / (std_g R + eps)``.

    ``rewards`` is [N] with the G = ``group_size`` samples of a prompt consecutive (N = n_prompts * G);
    std is the unbiased sample std of the group. ``scale=False`` gives ``R_i - mean_g R`` (Dr. GRPO).
    ``group_size == 1``: the advantage is 0 (a lone sample has no baseline to beat; TRL does the same
    by taking std = 0 there). Returns [N], the same dtype as rewards (floating).
    """
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"group_advantages: {rewards.numel()} rewards are not a whole number of groups of {group_size}"
        )
    r = rewards.reshape(-1, group_size)
    if group_size == 1:
        return torch.zeros_like(rewards)
    centered = r - r.mean(dim=1, keepdim=True)
    if scale:
        centered = centered / (r.std(dim=1, keepdim=True) + eps)
    return centered.reshape(rewards.shape)


def dynamic_sampling_keep(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling filter: keep the groups whose values (DAPO: accuracies) are not all equal.

    ``rewards`` is [N] in consecutive groups of ``group_size``. Returns a bool tensor [N] (one value
    repeated over each group): True where the group has max > min, i.e. a non-zero GRPO advantage.
    """
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"dynamic_sampling_keep: {rewards.numel()} rewards are not a whole number of groups of {group_size}"
        )
    r = rewards.reshape(-1, group_size)
    keep = r.amax(dim=1) > r.amin(dim=1)
    return keep.repeat_interleave(group_size)


# ---------------------------------------------------------------------------------------------------
# Reward shaping (DAPO)
# ---------------------------------------------------------------------------------------------------


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO soft overlong punishment, added to the outcome reward.

        p(L) = 0                                      if L <= max_len - buffer
             = -factor * (L - (max_len - buffer)) / buffer   if max_len - buffer < L <= max_len
             = -factor                                if L > max_len

    ``lengths``: [N] response lengths. ``buffer == 0`` gives the hard step (0 up to max_len, then
    -factor). Returns a float tensor [N].
    """
    if not 0 <= buffer <= max_len:
        raise ValueError(f"overlong_penalty: need 0 <= buffer <= max_len, got buffer={buffer}, max_len={max_len}")
    lengths = lengths.to(torch.get_default_dtype() if not lengths.is_floating_point() else lengths.dtype)
    start = max_len - buffer
    if buffer == 0:
        return torch.where(lengths > max_len, -factor, 0.0).to(lengths.dtype)
    return (-factor * (lengths - start) / buffer).clamp(min=-factor, max=0.0)


# ---------------------------------------------------------------------------------------------------
# MPO: the block-level ratio (docs/method.md §3)
# ---------------------------------------------------------------------------------------------------


def mtp_weights(
    K: int,
    gamma: float,
    *,
    w1: float | None = None,
    total: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Weights of the K log-ratio terms (paper Eq. 10).

        w_k = w1 * gamma^(k-1)   for k = 1 .. K-1,     w_0 = 1 - sum_{k>=1} w_k.

    Give exactly one of ``w1`` or ``total`` (the cumulative MTP share W = sum_{k>=1} w_k); from W,
    w1 = W (1 - gamma) / (1 - gamma^(K-1)), or W / (K-1) when gamma == 1. ``K == 1`` gives [1.0]
    (the value of w1 / total is then irrelevant). ``total == 0`` or ``w1 == 0`` gives exactly
    [1, 0, ..., 0], which makes MPO reproduce PPO bit for bit. Arithmetic is done in Python floats
    (double) and cast once. Raises ValueError on a bad argument combination or any negative weight.
    Returns a tensor [K].
    """
    if (w1 is None) == (total is None):
        raise ValueError("mtp_weights: give exactly one of w1= or total= (the cumulative MTP share)")
    if K < 1 or int(K) != K:
        raise ValueError(f"mtp_weights: K must be a positive integer, got {K!r}")
    if K == 1:
        return torch.ones(1, dtype=dtype)
    if gamma < 0:
        raise ValueError(f"mtp_weights: gamma must be >= 0, got {gamma}")
    if total is not None:
        if gamma == 1:
            w1 = total / (K - 1)
        else:
            w1 = total * (1 - gamma) / (1 - gamma ** (K - 1))
    mtp = [w1 * gamma ** (k - 1) for k in range(1, K)]
    w0 = 1.0 - (total if total is not None else sum(mtp))
    if abs(w0) < 1e-12:  # W == 1 up to rounding: the backbone term gets exactly 0
        w0 = 0.0
    weights = [w0, *mtp]
    if any(w < 0 for w in weights):
        raise ValueError(
            f"mtp_weights: negative weight in {weights} (K={K}, gamma={gamma}, w1={w1}, total={total}); "
            "w_0 = 1 - sum_k>=1 w_k must be >= 0, i.e. the MTP share cannot exceed 1"
        )
    return torch.tensor(weights, dtype=dtype)


def _valid_terms(mask: torch.Tensor, K: int) -> torch.Tensor:
    """valid[b, t, k] = (t + k < L_b), L_b = mask[b].sum(): term k of token t exists inside the response."""
    T = mask.shape[-1]
    lengths = _bool(mask).sum(-1)  # [B]
    t = torch.arange(T, device=mask.device)[:, None]
    k = torch.arange(K, device=mask.device)[None, :]
    return (t + k)[None] < lengths[:, None, None]  # [B, T, K]


def block_log_ratio(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    form: str = "weighted_log_sum",
) -> torch.Tensor:
    """MPO's block-level log ratio log rtilde_t (paper Eq. 8 / 9, docs/method.md §3).

    ``logp``, ``old_logp``: [B, T, K]. Entry [b, t, k] is the log-prob of token t+k under predictor k
    (k = 0: the backbone, k >= 1: MTP module k) at the position that predicts token t, under the
    current / rollout policy. ``mask``: [B, T]. ``weights``: [K] from ``mtp_weights``.

    With l_{t,k} = logp[t, k] - old_logp[t, k], counted only where t + k < L_b:
        weighted_log_sum:  log rtilde_t = sum_k wt_{t,k} l_{t,k},
                           wt_{t,k} = w_k [t+k<L] / sum_j w_j [t+j<L]    (renormalised near the end)
        product:           log rtilde_t = sum_k [t+k<L] l_{t,k}        (the K-step joint ratio)
    If every counted term has weight 0 (only possible when w_0 == 0, at the last token), the counted
    terms are averaged with equal weights instead, so rtilde_t is always defined.

    Bit-exactness: with weights [1, 0, ..., 0] the result equals ``where(mask, logp[..., 0] -
    old_logp[..., 0], 0)`` to the bit (the extra terms are exact zeros and the normaliser is exactly 1),
    and so do its gradients; MPO with K = 1 or W = 0 is PPO. Returns [B, T], zero where mask is 0.
    """
    if form not in RATIO_FORMS:
        raise ValueError(f"block_log_ratio: unknown form {form!r}; expected one of {RATIO_FORMS}")
    K = logp.shape[-1]
    if old_logp.shape != logp.shape or weights.shape != (K,) or mask.shape != logp.shape[:-1]:
        raise ValueError(
            f"block_log_ratio: shapes logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
            f"mask {tuple(mask.shape)}, weights {tuple(weights.shape)} do not match [B, T, K], [B, T], [K]"
        )
    valid = _valid_terms(mask, K)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    terms = torch.where(valid, logp - old_logp, zero)  # [B, T, K]; junk (even -inf) never leaks
    if form == "product":
        out = terms.sum(-1)
    else:
        w = torch.where(valid, weights.to(device=logp.device, dtype=logp.dtype), zero)
        norm = w.sum(-1, keepdim=True)
        w = torch.where(norm > 0, w, valid.to(logp.dtype))  # all-zero weights -> equal weights
        norm = w.sum(-1)
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))  # padding: avoid 0/0 (also in backward)
        out = (terms * w).sum(-1) / norm
    return torch.where(_bool(mask), out, zero)


# ---------------------------------------------------------------------------------------------------
# GSPO: the sequence-level ratio (docs/method.md §6)
# ---------------------------------------------------------------------------------------------------


def token_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
    """The backbone's per-token log r_t = logp - old_logp ([B, T, K] inputs, column 0), zero on padding
    (PPO, GRPO, DAPO; ``LOG_RATIOS["token"]``)."""
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    return torch.where(_bool(mask), logp[..., 0] - old_logp[..., 0], zero)


def sequence_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's log s_i = mean_t (logp_t - old_logp_t) over the response tokens of row i.

    ``logp``, ``old_logp``, ``mask``: [B, T]. Returns [B] (0 for an empty row). Differentiable in logp.
    """
    return masked_mean(logp - old_logp, mask, dim=-1)


def sequence_ratio_as_tokens(seq_log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sequence log ratio [B] to the tokens [B, T] (zero where mask is 0).

    ``clipped_policy_loss(sequence_ratio_as_tokens(s, mask), A, mask, eps, eps, agg="seq-mean-token-mean")``
    is GSPO's objective  -mean_i min(s_i A_i, clip(s_i, 1-eps, 1+eps) A_i)  (each row's token mean of a
    constant is that constant), with the gradient of the sequence ratio itself (not GSPO-token). It is
    what TRL computes with ``importance_sampling_level="sequence", loss_type="grpo"``.
    """
    out = seq_log_ratio[:, None].expand(mask.shape)
    return torch.where(_bool(mask), out, torch.zeros((), dtype=out.dtype, device=out.device))


# ---------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, agg: str = "token-mean") -> torch.Tensor:
    """Reduce a per-token loss [B, T] to a scalar.

    ``token-mean``: mean over all counted tokens of the mini-batch (PPO, DAPO; TRL "bnpo"/"dapo").
    ``seq-mean-token-mean``: mean over each row's tokens, then mean over rows (GRPO, GSPO; TRL "grpo").
    """
    if agg == "token-mean":
        return masked_mean(per_token, mask)
    if agg == "seq-mean-token-mean":
        return masked_mean(per_token, mask, dim=-1).mean()
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {LOSS_AGGS}")


def clipped_policy_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (docs/method.md §1; MPO Eq. 11 with the block ratio as ``log_ratio``).

        r_t = exp(log_ratio_t),    loss = agg_t  -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t)

    ``log_ratio``, ``mask``: [B, T]; ``advantages``: [B, T], or [B] (one per row, broadcast over tokens).
    Masked positions are selected away before ``exp``.

    Metrics (detached 0-dim tensors, over counted tokens):
      clip_frac       share of tokens where the clipped term is the one taken, i.e. strictly
                      clip(r) A < r A (the gradient through r is cut there); equals verl's pg_clipfrac.
      clip_frac_low   share with r < 1 - eps_low and A < 0;  clip_frac_high: r > 1 + eps_high and A > 0
                      (TRL's clip_ratio/low_mean and /high_mean).
      ratio_mean, ratio_var  mean and unbiased variance of r.
      approx_kl       mean of the k3 estimator (r - 1) - log r of KL(pi_old || pi_theta) (>= 0, 0 at r = 1).
    """
    m = _bool(mask)
    zero = torch.zeros((), dtype=log_ratio.dtype, device=log_ratio.device)
    log_ratio = torch.where(m, log_ratio, zero)
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    advantages = advantages.expand(log_ratio.shape)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages
    loss = aggregate_loss(-torch.minimum(unclipped, clipped), m, agg)

    with torch.no_grad():
        ratio_d, adv_d = ratio.detach(), advantages.detach()
        metrics = {
            "clip_frac": masked_mean((clipped.detach() < unclipped.detach()).to(ratio_d.dtype), m),
            "clip_frac_low": masked_mean(((ratio_d < 1 - eps_low) & (adv_d < 0)).to(ratio_d.dtype), m),
            "clip_frac_high": masked_mean(((ratio_d > 1 + eps_high) & (adv_d > 0)).to(ratio_d.dtype), m),
            "ratio_mean": masked_mean(ratio_d, m),
            "ratio_var": masked_var(ratio_d, m),
            "approx_kl": approx_kl(log_ratio.detach(), m),
        }
    return loss, metrics


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (docs/method.md §1; verl ``compute_value_loss``).

        v_clip = clip(v, v_old - c, v_old + c)
        loss   = 0.5 * token-mean( max((v - R)^2, (v_clip - R)^2) )

    All inputs [B, T]. Metrics: ``vf_clip_frac`` = share of counted tokens where the value moved by more than
    the clip range, ``|v - v_old| > c`` (comparing the two errors instead would count rounding in
    ``v_old + (v - v_old)`` as clipping); ``vf_explained_var`` = 1 - Var(R - v) / Var(R).
    """
    m = _bool(mask)
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    err1 = (values - returns) ** 2
    err2 = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err1, err2), m)
    with torch.no_grad():
        metrics = {
            "vf_clip_frac": masked_mean(((values - old_values).detach().abs() > clip).to(values.dtype), m),
            "vf_explained_var": explained_variance(returns.detach(), values.detach(), m),
        }
    return loss, metrics


def approx_kl(log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean k3 estimate ``(r - 1) - log r`` of KL(pi_old || pi_theta) over the counted tokens, r = exp(log_ratio)
    (>= 0, 0 at r = 1)."""
    return masked_mean((torch.exp(log_ratio) - 1) - log_ratio, mask)


def explained_variance(returns: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(R - v) / Var(R)`` over the counted entries (Var(R) clamped at 1e-8): 1 for a perfect critic."""
    return 1 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp(min=1e-8)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta (Schulman's estimators).

    With d = ref_logp - logp:
        k1 = -d = logp - ref_logp         (unbiased, high variance, can be negative)
        k2 = 0.5 * d^2                    (biased, low variance)
        k3 = exp(d) - d - 1               (unbiased, >= 0; GRPO's KL term, identical to TRL's per_token_kl)
    Elementwise, any shape; no masking (mask in the aggregation).
    """
    d = ref_logp - logp
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d**2
    if kind == "k3":
        return torch.exp(d) - d - 1
    raise ValueError(f"kl_penalty: unknown kind {kind!r}; expected one of {KL_KINDS}")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: H = -sum_v p_v log p_v, p = softmax(z).

    Computed as ``-sum p * log_softmax(z)``, which equals logsumexp(z) - sum_v p_v z_v but has no
    cancellation between two large numbers when the logits are large. [..., V] -> [...]. Stable for
    ``-inf`` entries (masked vocabulary): their 0 * (-inf) products are selected away, also in backward.
    Callers upcast to float32 if logits are low precision, and chunk over rows if [..., V] is large.
    """
    logp = torch.log_softmax(logits, dim=-1)
    p = torch.exp(logp)
    logp = torch.where(p > 0, logp, torch.zeros((), dtype=logp.dtype, device=logp.device))
    return -(p * logp).sum(-1)


# ---------------------------------------------------------------------------------------------------
# Registries (verl core_algos.py style): defined in mpo.algos_registry, re-exported here, so that
# ``algos.register_adv_estimator("name")`` decorates a function written below this line too.
# ---------------------------------------------------------------------------------------------------

from mpo.tempo import tempo_advantages  # noqa: E402 - TEMPO (docs/method.md §8), re-exported

__all__ += ["tempo_advantages"]

from mpo.algos_registry import (  # noqa: E402 - after the formulas the registered adapters call
    ADV_ESTIMATORS, LOG_RATIOS, POLICY_LOSSES, get_adv_estimator, get_policy_loss, register_adv_estimator,
    register_log_ratio, register_policy_loss,
)
