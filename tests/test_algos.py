"""Tests of the algorithm core ``mpo.algos`` (formulas: docs/method.md §1, §3, §4, §6).

What is pinned:
* MPO with K = 1, or with MTP share W = 0 (any K, any gamma), is PPO to the bit: loss and gradients,
  even with junk (-inf) at the positions the block ratio must ignore.
* At the first mini-batch of an iteration (logp == old_logp) every block ratio is exactly 1.
* The renormalised weights sum to 1 at every token, and match an explicit loop implementation;
  the product form is the plain sum of the available terms.
* The weight formula of paper Eq. 10, GAE, group advantages, DAPO's overlong penalty and dynamic
  sampling filter, clipping metrics, value loss, KL estimators, entropy.
* Cross-checks with TRL 1.16.0 (see ``TestTRL``): GRPO / BNPO / DAPO / GSPO losses are compared with
  TRL's own ``GRPOTrainer._compute_loss`` *imported and called* on identical tensors (with a stub
  ``self``); the group advantage is compared with TRL's formula *reproduced* from
  ``GRPOTrainer._generate_and_score_completions`` (it lives inside a method that needs a full trainer),
  using TRL's imported ``nanstd``; the entropy with TRL's imported ``entropy_from_logits``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mpo import algos
from mpo.algos import (
    block_log_ratio,
    clipped_policy_loss,
    clipped_value_loss,
    dynamic_sampling_keep,
    entropy_from_logits,
    gae,
    group_advantages,
    kl_penalty,
    masked_mean,
    masked_var,
    masked_whiten,
    mtp_weights,
    overlong_penalty,
    sequence_log_ratio,
    sequence_ratio_as_tokens,
)

# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def make_mask(lengths, T):
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).float()


def make_block_logps(lengths, T, K, seed, scale=0.3, junk=-math.inf):
    """logp, old_logp [B, T, K] with realistic values where t + k < L_b and ``junk`` elsewhere."""
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    old = -torch.rand(B, T, K, generator=g, dtype=torch.float64).float() * 3
    new = old + scale * torch.randn(B, T, K, generator=g)
    valid = (torch.arange(T)[:, None] + torch.arange(K)[None, :])[None] < torch.tensor(lengths)[:, None, None]
    return torch.where(valid, new, junk), torch.where(valid, old, junk), valid


def ref_block_log_ratio(logp, old_logp, lengths, weights, form):
    """Loop implementation of docs/method.md §3, straight from the formula (float64)."""
    B, T, K = logp.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        L = lengths[b]
        for t in range(L):
            ks = [k for k in range(K) if t + k < L]
            terms = [float(logp[b, t, k]) - float(old_logp[b, t, k]) for k in ks]
            if form == "product":
                out[b, t] = sum(terms)
            else:
                ws = [float(weights[k]) for k in ks]
                norm = sum(ws)
                if norm == 0:
                    ws, norm = [1.0] * len(ks), float(len(ks))
                out[b, t] = sum(w * x for w, x in zip(ws, terms)) / norm
    return out


LENGTHS = [9, 1, 4, 12, 7, 2]
T = 12


# ---------------------------------------------------------------------------------------------------
# mtp_weights (paper Eq. 10)
# ---------------------------------------------------------------------------------------------------


class TestMtpWeights:
    def test_total_share_and_geometric_decay(self):
        w = mtp_weights(5, 0.5, total=0.2).double()
        assert w.shape == (5,)
        assert w[1:].sum().item() == pytest.approx(0.2, abs=1e-7)
        assert w[0].item() == pytest.approx(0.8, abs=1e-7)
        assert w.sum().item() == pytest.approx(1.0, abs=1e-7)
        np.testing.assert_allclose((w[2:] / w[1:-1]).numpy(), 0.5, rtol=1e-6)
        # w1 = W (1 - gamma) / (1 - gamma^(K-1)) = 0.2 * 0.5 / (1 - 1/16)
        assert w[1].item() == pytest.approx(0.2 * 0.5 / (1 - 0.5**4), rel=1e-6)

    def test_gamma_one_splits_share_equally(self):
        w = mtp_weights(4, 1.0, total=0.3).double()
        np.testing.assert_allclose(w.numpy(), [0.7, 0.1, 0.1, 0.1], rtol=1e-6)

    def test_given_w1(self):
        w = mtp_weights(4, 0.5, w1=0.1).double()
        np.testing.assert_allclose(w.numpy(), [0.825, 0.1, 0.05, 0.025], rtol=1e-6)

    def test_k1_and_zero_share_are_exact_ppo_weights(self):
        assert torch.equal(mtp_weights(1, 0.7, total=0.5), torch.tensor([1.0]))
        assert torch.equal(mtp_weights(1, 0.7, w1=0.2), torch.tensor([1.0]))
        for gamma in (0.0, 0.5, 1.0, 1.3):
            assert torch.equal(mtp_weights(4, gamma, total=0.0), torch.tensor([1.0, 0.0, 0.0, 0.0]))
            assert torch.equal(mtp_weights(3, gamma, w1=0.0), torch.tensor([1.0, 0.0, 0.0]))
        assert mtp_weights(3, 0.5, total=0.1).dtype == torch.float32
        assert mtp_weights(3, 0.5, total=0.1, dtype=torch.float64).dtype == torch.float64

    def test_full_share_gives_zero_backbone_weight(self):
        w = mtp_weights(3, 0.5, total=1.0)
        assert w[0].item() == 0.0 and (w >= 0).all()

    @pytest.mark.parametrize(
        "kwargs",
        [
            dict(K=4, gamma=1.0, w1=0.5),  # w0 = 1 - 1.5 < 0
            dict(K=3, gamma=0.5, total=1.2),  # share above 1
            dict(K=3, gamma=0.5, w1=-0.1),  # negative MTP weight
            dict(K=3, gamma=-0.5, total=0.2),  # alternating signs
            dict(K=3, gamma=0.5),  # neither
            dict(K=3, gamma=0.5, w1=0.1, total=0.2),  # both
            dict(K=0, gamma=0.5, total=0.2),
        ],
    )
    def test_invalid_raises(self, kwargs):
        K, gamma = kwargs.pop("K"), kwargs.pop("gamma")
        with pytest.raises(ValueError):
            mtp_weights(K, gamma, **kwargs)

    def test_negative_w0_message(self):
        with pytest.raises(ValueError, match="w_0"):
            mtp_weights(4, 1.0, w1=0.5)


# ---------------------------------------------------------------------------------------------------
# block_log_ratio (docs/method.md §3)
# ---------------------------------------------------------------------------------------------------


def ppo_and_mpo(K, weights, form, agg, seed=0):
    """(PPO loss, grad) computed from column 0 and (MPO loss, grad) through block_log_ratio."""
    logp, old, _ = make_block_logps(LENGTHS, T, K, seed)
    mask = make_mask(LENGTHS, T)
    adv = torch.randn(len(LENGTHS), T, generator=torch.Generator().manual_seed(seed + 1))

    lp_mpo = logp.clone().requires_grad_(True)
    lr_mpo = block_log_ratio(lp_mpo, old, mask, weights, form=form)
    loss_mpo, met_mpo = clipped_policy_loss(lr_mpo, adv, mask, 0.2, 0.28, agg=agg)
    loss_mpo.backward()

    lp_ppo = logp.clone().requires_grad_(True)
    lr_ppo = torch.where(mask.bool(), lp_ppo[..., 0] - old[..., 0], 0.0)  # per-token PPO log ratio
    loss_ppo, met_ppo = clipped_policy_loss(lr_ppo, adv, mask, 0.2, 0.28, agg=agg)
    loss_ppo.backward()
    return (lr_ppo, loss_ppo, lp_ppo.grad, met_ppo), (lr_mpo, loss_mpo, lp_mpo.grad, met_mpo)


class TestBlockLogRatio:
    @pytest.mark.parametrize("agg", algos.LOSS_AGGS)
    @pytest.mark.parametrize(
        "K,gamma,form",
        [
            (1, 0.5, "weighted_log_sum"),
            (1, 0.5, "product"),
            (4, 0.5, "weighted_log_sum"),
            (5, 1.0, "weighted_log_sum"),
            (3, 0.0, "weighted_log_sum"),
            (4, 1.7, "weighted_log_sum"),
        ],
    )
    def test_k1_or_zero_share_is_ppo_bit_exact(self, K, gamma, form, agg):
        weights = mtp_weights(K, gamma, total=0.0)
        (lr_p, loss_p, g_p, met_p), (lr_m, loss_m, g_m, met_m) = ppo_and_mpo(K, weights, form, agg)
        assert torch.isfinite(lr_m).all() and torch.isfinite(g_m).all()
        assert torch.equal(lr_m, lr_p)
        assert torch.equal(loss_m, loss_p)
        assert torch.equal(g_m, g_p)
        assert g_m[..., 1:].abs().sum() == 0
        assert met_p["clip_frac"] > 0  # the comparison exercises clipping
        for key in met_p:
            assert torch.equal(met_m[key], met_p[key]), key

    def test_nonzero_share_differs_from_ppo(self):
        """Guard that the bit-exact test above can fail: with W > 0 the ratio is not PPO's."""
        weights = mtp_weights(4, 0.5, total=0.2)
        (lr_p, _, g_p, _), (lr_m, _, g_m, _) = ppo_and_mpo(4, weights, "weighted_log_sum", "token-mean")
        assert not torch.equal(lr_m, lr_p) and not torch.equal(g_m, g_p)
        assert g_m[..., 1:].abs().sum() > 0  # the MTP terms carry gradient

    def test_equals_mask_multiplication_with_finite_junk(self):
        logp, old, _ = make_block_logps(LENGTHS, T, 3, seed=3, junk=-7.5)
        mask = make_mask(LENGTHS, T)
        got = block_log_ratio(logp, old, mask, mtp_weights(3, 0.9, total=0.0))
        assert torch.equal(got, (logp[..., 0] - old[..., 0]) * mask)

    @pytest.mark.parametrize("form", algos.RATIO_FORMS)
    def test_first_minibatch_ratio_is_one(self, form):
        logp, _, _ = make_block_logps(LENGTHS, T, 4, seed=4)
        mask = make_mask(LENGTHS, T)
        lr = block_log_ratio(logp, logp.clone(), mask, mtp_weights(4, 0.5, total=0.4), form=form)
        assert torch.equal(lr, torch.zeros_like(lr))
        adv = torch.randn(len(LENGTHS))
        loss, met = clipped_policy_loss(lr, adv, mask, 0.2, 0.2)
        assert met["clip_frac"].item() == 0.0
        assert met["ratio_mean"].item() == 1.0 and met["ratio_var"].item() == 0.0
        assert met["approx_kl"].item() == 0.0
        expected = -masked_mean(adv[:, None].expand(-1, T), mask)
        torch.testing.assert_close(loss, expected)

    def test_renormalised_weights_sum_to_one_at_every_token(self):
        K, weights = 5, mtp_weights(5, 0.6, total=0.5)
        mask = make_mask(LENGTHS, T)
        # A linear probe: with l_{t,k} = 1 for every k the output is sum_k wt_{t,k}.
        ones = torch.ones(len(LENGTHS), T, K)
        wsum = block_log_ratio(ones, torch.zeros_like(ones), mask, weights)
        torch.testing.assert_close(wsum, mask, rtol=0, atol=1e-6)
        # Each individual renormalised weight wt_{t,k} = w_k [t+k<L] / sum_j w_j [t+j<L].
        for k in range(K):
            probe = torch.zeros_like(ones)
            probe[..., k] = 1.0
            got = block_log_ratio(probe, torch.zeros_like(probe), mask, weights)
            for b, L in enumerate(LENGTHS):
                for t in range(T):
                    if t >= L:
                        assert got[b, t] == 0
                        continue
                    avail = [j for j in range(K) if t + j < L]
                    want = float(weights[k]) / sum(float(weights[j]) for j in avail) if k in avail else 0.0
                    assert got[b, t].item() == pytest.approx(want, abs=1e-6), (b, t, k)

    @pytest.mark.parametrize("form", algos.RATIO_FORMS)
    @pytest.mark.parametrize("total", [0.3, 1.0])
    def test_matches_loop_reference(self, form, total):
        K = 4
        weights = mtp_weights(K, 0.5, total=total)
        logp, old, _ = make_block_logps(LENGTHS, T, K, seed=5)
        mask = make_mask(LENGTHS, T)
        got = block_log_ratio(logp, old, mask, weights, form=form)
        want = ref_block_log_ratio(logp, old, LENGTHS, weights, form)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(got).all()

    def test_product_is_sum_of_available_terms(self):
        logp, old, valid = make_block_logps(LENGTHS, T, 3, seed=6)
        mask = make_mask(LENGTHS, T)
        got = block_log_ratio(logp, old, mask, mtp_weights(3, 0.5, total=0.2), form="product")
        diff = torch.where(valid, logp - old, 0.0)
        torch.testing.assert_close(got, diff.sum(-1), rtol=0, atol=1e-6)
        # product and weighted forms are different estimators
        weighted = block_log_ratio(logp, old, mask, mtp_weights(3, 0.5, total=0.2))
        assert not torch.allclose(got, weighted)

    def test_zero_backbone_weight_falls_back_at_last_token(self):
        """W = 1 (w_0 = 0): at t = L-1 only l_0 exists; it is used instead of 0 / 0."""
        logp, old, _ = make_block_logps(LENGTHS, T, 3, seed=7)
        mask = make_mask(LENGTHS, T)
        got = block_log_ratio(logp, old, mask, mtp_weights(3, 0.5, total=1.0))
        assert torch.isfinite(got).all()
        for b, L in enumerate(LENGTHS):
            assert got[b, L - 1] == logp[b, L - 1, 0] - old[b, L - 1, 0]

    def test_gradient_is_finite_with_inf_junk(self):
        logp, old, valid = make_block_logps(LENGTHS, T, 4, seed=8)
        lp = logp.clone().requires_grad_(True)
        block_log_ratio(lp, old, make_mask(LENGTHS, T), mtp_weights(4, 0.5, total=0.3)).sum().backward()
        assert torch.isfinite(lp.grad).all()
        assert (lp.grad[~valid] == 0).all() and (lp.grad[valid] > 0).all()

    def test_invalid_form_and_shapes(self):
        logp, old, _ = make_block_logps(LENGTHS, T, 2, seed=9)
        mask = make_mask(LENGTHS, T)
        with pytest.raises(ValueError, match="form"):
            block_log_ratio(logp, old, mask, mtp_weights(2, 0.5, total=0.1), form="geometric")
        with pytest.raises(ValueError):
            block_log_ratio(logp, old, mask, mtp_weights(3, 0.5, total=0.1))


# ---------------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------------


def ref_gae(rewards, values, lengths, gamma, lam):
    """Textbook GAE, one row at a time on Python lists of the row's true length."""
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=torch.float64)
    for b, L in enumerate(lengths):
        r, v = rewards[b, :L].tolist(), values[b, :L].tolist() + [0.0]
        running = 0.0
        for t in reversed(range(L)):
            running = r[t] + gamma * v[t + 1] - v[t] + gamma * lam * running
            adv[b, t] = running
    ret = adv + torch.where(make_mask(lengths, T).bool(), values.double(), 0.0)
    return adv, ret


class TestGAE:
    def test_hand_computed(self):
        nan = float("nan")
        rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 2.0, nan]])
        values = torch.tensor([[0.5, 0.6, 0.7], [0.5, 1.0, nan]])
        mask = make_mask([3, 2], 3)
        adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
        # row 0: d2 = 1 - .7 = .3; d1 = .9*.7 - .6 = .03; d0 = .9*.6 - .5 = .04; A = d + .72 A_next
        # row 1: d1 = 2 - 1 = 1; d0 = 1 + .9*1 - .5 = 1.4 -> A0 = 1.4 + .72 = 2.12
        want_adv = torch.tensor([[0.21712, 0.246, 0.3], [2.12, 1.0, 0.0]])
        want_ret = torch.tensor([[0.71712, 0.846, 1.0], [2.62, 2.0, 0.0]])
        torch.testing.assert_close(adv, want_adv)
        torch.testing.assert_close(ret, want_ret)

    @pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
    def test_against_reference_ragged(self, gamma, lam):
        g = torch.Generator().manual_seed(10)
        rewards = torch.randn(len(LENGTHS), T, generator=g)
        values = torch.randn(len(LENGTHS), T, generator=g)
        mask = make_mask(LENGTHS, T)
        adv, ret = gae(rewards, values, mask, gamma, lam)
        want_adv, want_ret = ref_gae(rewards, values, LENGTHS, gamma, lam)
        torch.testing.assert_close(adv.double(), want_adv, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ret.double(), want_ret, rtol=1e-5, atol=1e-5)
        assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()

    def test_monte_carlo_when_gamma_lam_one(self):
        g = torch.Generator().manual_seed(11)
        rewards = torch.randn(len(LENGTHS), T, generator=g)
        values = torch.randn(len(LENGTHS), T, generator=g)
        mask = make_mask(LENGTHS, T)
        adv, ret = gae(rewards, values, mask, 1.0, 1.0)
        future = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1])  # sum_{s >= t} r_s
        torch.testing.assert_close(adv, (future - values) * mask, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ret, future * mask, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# group advantages, dynamic sampling, overlong penalty
# ---------------------------------------------------------------------------------------------------


class TestGroupAndShaping:
    def test_group_advantages_against_numpy(self):
        r = torch.randn(24, generator=torch.Generator().manual_seed(12))
        r[8:12] = 1.0  # one constant group -> all zeros
        got = group_advantages(r, 4)
        g = r.numpy().reshape(-1, 4).astype(np.float64)
        want = (g - g.mean(1, keepdims=True)) / (g.std(1, ddof=1, keepdims=True) + 1e-6)
        np.testing.assert_allclose(got.numpy(), want.reshape(-1), rtol=1e-5, atol=1e-6)
        assert (got[8:12] == 0).all()
        got_ns = group_advantages(r, 4, scale=False)
        np.testing.assert_allclose(got_ns.numpy(), (g - g.mean(1, keepdims=True)).reshape(-1), rtol=1e-5, atol=1e-6)

    def test_group_size_one_and_bad_sizes(self):
        assert torch.equal(group_advantages(torch.tensor([0.0, 1.0, 5.0]), 1), torch.zeros(3))
        with pytest.raises(ValueError):
            group_advantages(torch.zeros(10), 4)
        with pytest.raises(ValueError):
            group_advantages(torch.zeros(4), 0)

    def test_dynamic_sampling_keep(self):
        r = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
        assert dynamic_sampling_keep(r, 3).tolist() == [False] * 6 + [True] * 3
        with pytest.raises(ValueError):
            dynamic_sampling_keep(r, 4)

    def test_overlong_penalty_boundaries(self):
        lengths = torch.tensor([0, 80, 81, 90, 99, 100, 101, 500])
        got = overlong_penalty(lengths, max_len=100, buffer=20, factor=1.0)
        want = torch.tensor([0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0])
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(overlong_penalty(lengths, 100, 20, factor=0.5), 0.5 * want)
        hard = overlong_penalty(lengths, max_len=100, buffer=0)
        assert hard.tolist() == [0.0] * 6 + [-1.0, -1.0]
        with pytest.raises(ValueError):
            overlong_penalty(lengths, max_len=10, buffer=20)


# ---------------------------------------------------------------------------------------------------
# losses and metrics
# ---------------------------------------------------------------------------------------------------


class TestLosses:
    def test_clipped_policy_loss_hand_example(self):
        # one row, 4 tokens: r = 1.5 (A>0, clipped high), 0.5 (A<0, clipped low), 1.5 (A<0, unclipped), 1.1 (A>0)
        ratio = torch.tensor([[1.5, 0.5, 1.5, 1.1, 9.0]])
        adv = torch.tensor([[1.0, -1.0, -2.0, 3.0, 5.0]])
        mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
        loss, met = clipped_policy_loss(ratio.log(), adv, mask, eps_low=0.2, eps_high=0.3)
        per_tok = torch.tensor([-1.3, 0.8, 3.0, -3.3])
        torch.testing.assert_close(loss, per_tok.mean())
        assert met["clip_frac"].item() == pytest.approx(0.5)
        assert met["clip_frac_low"].item() == pytest.approx(0.25)
        assert met["clip_frac_high"].item() == pytest.approx(0.25)
        r = torch.tensor([1.5, 0.5, 1.5, 1.1])
        assert met["ratio_mean"].item() == pytest.approx(r.mean().item(), rel=1e-6)
        assert met["ratio_var"].item() == pytest.approx(r.var().item(), rel=1e-5)
        assert met["approx_kl"].item() == pytest.approx(((r - 1) - r.log()).mean().item(), rel=1e-5)

    def test_aggregations_and_broadcast(self):
        g = torch.Generator().manual_seed(13)
        lr = 0.3 * torch.randn(len(LENGTHS), T, generator=g)
        adv_seq = torch.randn(len(LENGTHS), generator=g)
        mask = make_mask(LENGTHS, T)
        l_tok, _ = clipped_policy_loss(lr, adv_seq, mask, 0.2, 0.2, agg="token-mean")
        l_tok2, _ = clipped_policy_loss(lr, adv_seq[:, None].expand(-1, T), mask, 0.2, 0.2, agg="token-mean")
        torch.testing.assert_close(l_tok, l_tok2, rtol=0, atol=0)
        l_seq, _ = clipped_policy_loss(lr, adv_seq, mask, 0.2, 0.2, agg="seq-mean-token-mean")
        r = lr.exp()
        per = -torch.minimum(r * adv_seq[:, None], r.clamp(0.8, 1.2) * adv_seq[:, None])
        want_tok = (per * mask).sum() / mask.sum()
        want_seq = ((per * mask).sum(1) / mask.sum(1)).mean()
        torch.testing.assert_close(l_tok, want_tok)
        torch.testing.assert_close(l_seq, want_seq)
        assert not torch.allclose(l_tok, l_seq)
        with pytest.raises(ValueError):
            clipped_policy_loss(lr, adv_seq, mask, 0.2, 0.2, agg="sum")

    def test_gspo_sequence_ratio(self):
        g = torch.Generator().manual_seed(14)
        logp, old = torch.randn(len(LENGTHS), T, generator=g), torch.randn(len(LENGTHS), T, generator=g)
        mask = make_mask(LENGTHS, T)
        s = sequence_log_ratio(logp, old, mask)
        want = torch.tensor([(logp[b, :L] - old[b, :L]).mean().item() for b, L in enumerate(LENGTHS)])
        torch.testing.assert_close(s, want)
        tok = sequence_ratio_as_tokens(s, mask)
        assert torch.equal(tok, torch.where(mask.bool(), s[:, None].expand(-1, T), 0.0))
        # GSPO objective: -mean_i min(s_i A_i, clip(s_i) A_i)
        adv = torch.randn(len(LENGTHS), generator=g)
        loss, _ = clipped_policy_loss(0.01 * tok, adv, mask, 3e-3, 4e-3, agg="seq-mean-token-mean")
        si = (0.01 * s).exp()
        want_loss = -torch.minimum(si * adv, si.clamp(1 - 3e-3, 1 + 4e-3) * adv).mean()
        torch.testing.assert_close(loss, want_loss)

    def test_clipped_value_loss(self):
        values = torch.tensor([[1.0, 2.0, 0.0, 5.0]])
        old = torch.tensor([[0.0, 1.9, 0.0, 0.0]])
        ret = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
        mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
        loss, met = clipped_value_loss(values, old, ret, mask, clip=0.5)
        # token 0: v=1 clipped to .5 -> max(0, .25) = .25 (clip taken); token 1: v=2 in range -> 4; token 2: 1
        torch.testing.assert_close(loss, torch.tensor(0.5 * (0.25 + 4.0 + 1.0) / 3))
        assert met["vf_clip_frac"].item() == pytest.approx(1 / 3)

    def test_value_clip_frac_ignores_rounding(self):
        """Values inside the clip range are not clipped, even where old + (v - old) rounds away from v and so makes
        the 'clipped' error a hair larger than the plain one."""
        old = torch.tensor([[-0.08230451494455338, -0.041222311556339264, 0.06842248886823654, 0.0]])
        values = torch.tensor([[0.2240004688501358, 0.10156199336051941, -0.059804145246744156, 0.9]])
        ret = torch.tensor([[-0.12934696674346924, 0.7665793895721436, -0.03596699237823486, 0.0]])
        v_clip = old + torch.clamp(values - old, -0.5, 0.5)
        assert bool(((v_clip - ret) ** 2 > (values - ret) ** 2)[0, :3].all())  # rounding, not clipping
        _, met = clipped_value_loss(values, old, ret, torch.ones(1, 4), clip=0.5)
        assert met["vf_clip_frac"].item() == pytest.approx(1 / 4)  # only token 3 (|0.9 - 0| > 0.5) is clipped

    def test_kl_estimators(self):
        g = torch.Generator().manual_seed(15)
        logp, ref = -torch.rand(3, 5, generator=g), -torch.rand(3, 5, generator=g)
        d = ref - logp
        torch.testing.assert_close(kl_penalty(logp, ref, "k1"), logp - ref)
        torch.testing.assert_close(kl_penalty(logp, ref, "k2"), 0.5 * d**2)
        torch.testing.assert_close(kl_penalty(logp, ref, "k3"), d.exp() - d - 1)
        assert (kl_penalty(logp, ref, "k3") >= 0).all()
        assert torch.equal(kl_penalty(logp, logp, "k3"), torch.zeros_like(logp))
        with pytest.raises(ValueError):
            kl_penalty(logp, ref, "k4")

    def test_masked_stats(self):
        x = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [4.0, float("inf"), 0.0, 0.0]])
        mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
        vals = torch.tensor([1.0, 2.0, 3.0, 4.0])
        assert masked_mean(x, mask).item() == pytest.approx(2.5)
        torch.testing.assert_close(masked_mean(x, mask, dim=-1), torch.tensor([2.0, 4.0]))
        assert masked_var(x, mask).item() == pytest.approx(vals.var().item())
        assert masked_var(x, mask, unbiased=False).item() == pytest.approx(vals.var(unbiased=False).item())
        assert masked_var(x, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]])).item() == 0.0
        assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0
        w = masked_whiten(x, mask)
        assert torch.isfinite(w).all() and (w[mask == 0] == 0).all()
        torch.testing.assert_close(w[mask == 1], (vals - vals.mean()) / vals.std(), rtol=1e-4, atol=1e-4)
        w_noshift = masked_whiten(x, mask, shift_mean=False)
        assert masked_mean(w_noshift, mask).item() == pytest.approx(2.5, rel=1e-5)

    def test_entropy(self):
        g = torch.Generator().manual_seed(16)
        logits = 5 * torch.randn(2, 3, 11, generator=g)
        p = logits.softmax(-1)
        torch.testing.assert_close(entropy_from_logits(logits), -(p * p.log()).sum(-1))
        torch.testing.assert_close(entropy_from_logits(logits + 1e3), entropy_from_logits(logits), rtol=1e-3, atol=1e-3)
        masked = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]], requires_grad=True)
        h = entropy_from_logits(masked)
        assert h.item() == pytest.approx(math.log(2))
        h.sum().backward()
        assert torch.isfinite(masked.grad).all()


# ---------------------------------------------------------------------------------------------------
# TRL cross-checks (trl 1.16.0)
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trl_grpo():
    trl = pytest.importorskip("trl")
    if trl.__version__ != "1.16.0":
        pytest.skip(f"cross-check written against trl 1.16.0, found {trl.__version__}")
    from trl.trainer import grpo_trainer, utils

    return grpo_trainer, utils


def trl_compute_loss(grpo_trainer, *, loss_type, level, logp, old, ref, adv, mask, eps_low, eps_high, beta):
    """Call TRL's own ``GRPOTrainer._compute_loss`` (trl/trainer/grpo_trainer.py) with a stub ``self``.

    The stub provides exactly the attributes that method reads, with every optional feature off
    (no entropy masking, no off-policy mask, no vLLM correction, no entropy bonus, no aux loss);
    ``model.training = False`` makes its gradient-accumulation normalisers 1, and for 'dapo' the
    normaliser is ``num_items_in_batch`` = number of counted tokens.
    """
    B, Tc = mask.shape

    def fake_logps(model, input_ids, attention_mask, logits_to_keep, **kw):
        assert logits_to_keep == Tc
        return logp, torch.zeros_like(logp), None

    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=fake_logps,
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=False),
        current_gradient_accumulation_steps=1,
        max_completion_length=Tc,
        _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        accelerator=SimpleNamespace(num_processes=1, reduce=lambda x, reduction: x, gather=lambda x: x),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, Tc, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    loss = grpo_trainer.GRPOTrainer._compute_loss(stub, None, inputs)
    return loss, stub._metrics["eval"]


class TestTRL:
    """Our losses against TRL 1.16.0.

    Imported: ``trl.trainer.grpo_trainer.GRPOTrainer._compute_loss`` (called with a stub self; the loss
    and its gradient wrt the policy log-probs are compared), ``trl.trainer.utils.nanstd`` and
    ``trl.trainer.utils.entropy_from_logits``. Reproduced verbatim: the group-advantage lines of
    ``GRPOTrainer._generate_and_score_completions`` (``scale_rewards='group'``, one reward function).
    """

    @pytest.mark.parametrize(
        "method,loss_type,level,agg,eps_low,eps_high,beta,scale",
        [
            ("GRPO", "grpo", "token", "seq-mean-token-mean", 0.2, 0.2, 0.04, 0.3),
            ("GRPO-bnpo", "bnpo", "token", "token-mean", 0.2, 0.2, 0.0, 0.3),
            ("DAPO", "dapo", "token", "token-mean", 0.2, 0.28, 0.0, 0.3),
            ("GSPO", "grpo", "sequence", "seq-mean-token-mean", 3e-4, 4e-4, 0.0, 2e-3),
        ],
    )
    def test_policy_loss_matches_trl(self, trl_grpo, method, loss_type, level, agg, eps_low, eps_high, beta, scale):
        grpo_trainer, _ = trl_grpo
        g = torch.Generator().manual_seed(17)
        mask = make_mask(LENGTHS, T)
        old = -3 * torch.rand(len(LENGTHS), T, generator=g)  # finite everywhere: TRL multiplies by the mask
        base = old + scale * torch.randn(len(LENGTHS), T, generator=g)
        ref = old + 0.2 * torch.randn(len(LENGTHS), T, generator=g)
        adv = torch.tensor([0.7, -0.5, 1.0, -0.4, 0.9, -1.2])  # one per sequence, both signs

        lp_trl = base.clone().requires_grad_(True)
        loss_trl, trl_metrics = trl_compute_loss(
            grpo_trainer, loss_type=loss_type, level=level, logp=lp_trl, old=old, ref=ref, adv=adv, mask=mask,
            eps_low=eps_low, eps_high=eps_high, beta=beta,
        )
        loss_trl.backward()

        lp = base.clone().requires_grad_(True)
        if level == "sequence":
            log_ratio = sequence_ratio_as_tokens(sequence_log_ratio(lp, old, mask), mask)
        else:
            log_ratio = lp - old
        loss, met = clipped_policy_loss(log_ratio, adv, mask, eps_low, eps_high, agg=agg)
        if beta:
            loss = loss + beta * algos.aggregate_loss(kl_penalty(lp, ref, "k3"), mask, agg)
        loss.backward()

        torch.testing.assert_close(loss, loss_trl, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(lp.grad, lp_trl.grad, rtol=1e-5, atol=1e-8)
        assert lp.grad.abs().sum() > 0
        # the comparison exercises clipping on both sides' terms
        assert 0 < met["clip_frac"].item() < 1
        if level == "token":
            assert met["clip_frac_low"].item() == pytest.approx(trl_metrics["clip_ratio/low_mean"][0], abs=1e-6)
            assert met["clip_frac_high"].item() == pytest.approx(trl_metrics["clip_ratio/high_mean"][0], abs=1e-6)

    def test_group_advantages_match_trl_formula(self, trl_grpo):
        _, utils = trl_grpo
        G = 4
        rewards = torch.randn(20, generator=torch.Generator().manual_seed(18))
        rewards[4:8] = 0.5
        # trl/trainer/grpo_trainer.py, GRPOTrainer._generate_and_score_completions (sum_then_normalize,
        # scale_rewards="group", num_generations > 1), verbatim:
        mean_grouped_rewards = torch.nanmean(rewards.view(-1, G), dim=1)
        mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(G, dim=0)
        std_rewards = utils.nanstd(rewards.view(-1, G), dim=1)
        std_rewards = std_rewards.repeat_interleave(G, dim=0)
        advantages = rewards - mean_grouped_rewards
        advantages = advantages / (std_rewards + 1e-4)
        torch.testing.assert_close(group_advantages(rewards, G, eps=1e-4), advantages)
        torch.testing.assert_close(group_advantages(rewards, G, scale=False), rewards - mean_grouped_rewards)

    def test_entropy_matches_trl(self, trl_grpo):
        _, utils = trl_grpo
        logits = 4 * torch.randn(3, 7, 50, generator=torch.Generator().manual_seed(19))
        torch.testing.assert_close(entropy_from_logits(logits), utils.entropy_from_logits(logits), rtol=1e-5, atol=1e-5)
