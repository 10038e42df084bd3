"""Unit tests of the trainer's pure pieces: loss composition, shares, the value-head mixture, methods (through the
algos registries), DAPO's group filter and the micro-batch invariance of the auxiliary MTP loss."""

import math

import pytest
import torch

from mpo import algos
from mpo.train import methods
from mpo.train.critic import value_mixture
from mpo.train.loss import compose_loss, loss_shares


def _spec(**kw):
    base = dict(method="ppo", K=1, gamma=None, mtp_share=0.0, w1=None, advantage="gae", critic=True, ratio="token",
                ratio_form="weighted_log_sum", clip_low=0.2, clip_high=0.2, loss_agg="token-mean", kl_coef=0.0,
                kl_loss_coef=0.0, group_size=1)
    return {**base, **kw}


TRAIN = {"gamma_rl": 1.0, "lambda_gae": 0.95, "whiten_advantages": False}


# ------------------------------------------------------------------------------------------------ loss composition
def test_loss_shares_sum_to_world_times_accum():
    toks, rows = [3.0, 5.0, 0.0, 4.0], [1, 1, 1, 1]
    shares = [loss_shares(t, r, sum(toks), sum(rows), world=1, accum=4) for t, r in zip(toks, rows)]
    assert math.isclose(sum(s[0] for s in shares), 4.0) and math.isclose(sum(s[1] for s in shares), 4.0)
    assert shares[2][0] == 0.0 and shares[0] == (3.0 / 12.0 * 4, 1.0)


def test_compose_loss_terms_and_coefficients():
    pg, kl, aux, vf = (torch.tensor(x) for x in (2.0, 3.0, 5.0, 7.0))
    kw = dict(token_share=0.5, row_share=0.25, aux_share=0.125, kl_coef=0.1, aux_coef=0.2)
    tok = compose_loss(policy=pg, kl=kl, aux=aux, value=vf, row_agg=False, **kw)
    assert torch.isclose(tok["actor"], torch.tensor(2.0 * 0.5 + 0.1 * 3.0 * 0.5 + 0.2 * 5.0 * 0.125))
    assert torch.isclose(tok["critic"], torch.tensor(7.0 * 0.5))  # the value loss is a token mean
    rows = compose_loss(policy=pg, kl=kl, row_agg=True, **kw)
    assert torch.isclose(rows["actor"], torch.tensor(2.0 * 0.25 + 0.1 * 3.0 * 0.25)) and "critic" not in rows
    assert set(compose_loss(value=vf, row_agg=False, **kw)) == {"critic"}
    assert torch.equal(compose_loss(policy=pg, row_agg=False, **kw)["actor"], pg * 0.5)


def test_compose_loss_keeps_gradients():
    pg = torch.tensor(1.0, requires_grad=True)
    aux = torch.tensor(2.0, requires_grad=True)
    compose_loss(policy=pg, aux=aux, token_share=0.5, row_share=1.0, aux_share=3.0, row_agg=False, kl_coef=0.0,
                 aux_coef=0.1)["actor"].backward()
    assert pg.grad == 0.5 and torch.isclose(aux.grad, torch.tensor(0.3))


# ------------------------------------------------------------------------------------------------ value mixture
def test_value_mixture_renormalises_over_available_heads():
    V = torch.tensor([[[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]])  # [1, 2, K=3]
    avail = torch.tensor([[[True, True, True], [True, False, False]]])
    alpha = torch.zeros(3)
    out = value_mixture(V, avail, alpha)
    assert torch.allclose(out, torch.tensor([[3.0, 2.0]]))  # equal weights; only head 0 at the second position
    alpha = torch.tensor([0.0, math.log(2.0), -1e9])  # weights 1/3, 2/3, 0
    assert torch.allclose(value_mixture(V, avail, alpha), torch.tensor([[1 / 3 + 2.0, 2.0]]))
    assert value_mixture(V, torch.zeros_like(avail), torch.zeros(3)).abs().max() == 0  # nothing available: 0


def test_value_mixture_gradient_reaches_alpha_and_values():
    V = torch.tensor([[[1.0, 3.0]]], requires_grad=True)
    alpha = torch.zeros(2, requires_grad=True)
    value_mixture(V, torch.ones(1, 1, 2, dtype=torch.bool), alpha).sum().backward()
    assert torch.allclose(V.grad, torch.tensor([[[0.5, 0.5]]]))
    assert torch.allclose(alpha.grad, torch.tensor([-0.5, 0.5]))  # d/dalpha of softmax-weighted mean


# ------------------------------------------------------------------------------------------------ methods
def test_mtp_weights_for():
    assert torch.equal(methods.mtp_weights_for(_spec()), torch.ones(1))
    assert torch.equal(methods.mtp_weights_for(_spec(method="mpo", K=1)), torch.ones(1))
    w = methods.mtp_weights_for(_spec(method="mpo", K=3, gamma=0.5, mtp_share=0.3))
    assert torch.allclose(w, torch.tensor([0.7, 0.2, 0.1])) and math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)
    w = methods.mtp_weights_for(_spec(method="mpo", K=3, gamma=0.5, w1=0.4))
    assert torch.allclose(w, torch.tensor([0.4, 0.4, 0.2]))


def test_token_rewards_last_token_and_kl():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    scores = torch.tensor([1.0, 2.0, 3.0])
    r = methods.token_rewards(scores, mask, None, 0.0)
    assert torch.equal(r, torch.tensor([[0, 0, 1.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 0]]))  # empty row: no reward
    kl = torch.full((3, 4), 0.5)
    r = methods.token_rewards(scores, mask, kl, 0.1)
    assert torch.allclose(r[0], torch.tensor([-0.05, -0.05, 0.95, 0.0])) and r[2].abs().max() == 0


def test_advantages_gae_and_group():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    values = torch.tensor([[0.5, 0.25, 9.0], [0.0, 0.0, 0.0]])
    scores = torch.tensor([1.0, 0.0])
    out = methods.advantages(_spec(), TRAIN, scores=scores, mask=mask, values=values, kl=None)
    want_adv, want_ret = algos.gae(out["token_rewards"], values, mask.bool(), 1.0, 0.95)
    assert torch.equal(out["advantages"], want_adv) and torch.equal(out["returns"], want_ret)
    assert out["advantages"][0, 2] == 0
    mc = methods.advantages(_spec(), {**TRAIN, "lambda_gae": 1.0}, scores=scores, mask=mask, values=values, kl=None)
    assert torch.allclose(mc["returns"], torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))  # Monte Carlo returns
    whitened = methods.advantages(_spec(), {**TRAIN, "whiten_advantages": True}, scores=scores, mask=mask,
                                  values=values, kl=None)["advantages"]
    assert torch.allclose(whitened, algos.masked_whiten(want_adv, mask.bool()))
    grpo = _spec(method="grpo", advantage="grpo", critic=False, group_size=2)
    out = methods.advantages(grpo, TRAIN, scores=scores, mask=mask, values=None, kl=None)
    assert set(out) == {"advantages"}
    a = algos.group_advantages(scores, 2)
    assert torch.equal(out["advantages"], torch.tensor([[a[0], a[0], 0.0], [a[1], a[1], a[1]]]))


def test_advantages_subtract_the_reward_kl():
    mask, scores, values = torch.ones(1, 3), torch.tensor([1.0]), torch.zeros(1, 3)
    kl = torch.tensor([[0.5, 1.0, 2.0]])
    out = methods.advantages(_spec(kl_coef=0.1), TRAIN, scores=scores, mask=mask, values=values, kl=kl)
    assert torch.allclose(out["token_rewards"], torch.tensor([[-0.05, -0.1, 0.8]]))


def test_advantages_unknown_estimator_names_the_registry():
    with pytest.raises(ValueError, match="unknown advantage estimator 'nope'.*gae"):
        methods.advantages(_spec(advantage="nope"), TRAIN, scores=torch.zeros(1), mask=torch.ones(1, 2),
                           values=torch.zeros(1, 2), kl=None)


def _logps(seed=0, B=2, T=4, K=3):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(B, T, K, generator=g), -torch.rand(B, T, K, generator=g)


def test_log_ratios_per_kind():
    logp, old = _logps()
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    w = torch.tensor([0.6, 0.3, 0.1])
    token = torch.where(mask.bool(), logp[..., 0] - old[..., 0], torch.zeros(()))
    pol, tok = methods.log_ratios(_spec(), logp, old, mask, w)
    assert torch.equal(pol, token) and torch.equal(tok, token)
    pol, tok = methods.log_ratios(_spec(ratio="block"), logp, old, mask, w)
    assert torch.equal(pol, algos.block_log_ratio(logp, old, mask.bool(), w)) and torch.equal(tok, token)
    pol, _ = methods.log_ratios(_spec(ratio="block", ratio_form="product"), logp, old, mask, w)
    assert torch.equal(pol, algos.block_log_ratio(logp, old, mask.bool(), w, form="product"))
    pol, _ = methods.log_ratios(_spec(ratio="sequence"), logp, old, mask, w)
    seq = algos.masked_mean(logp[..., 0] - old[..., 0], mask, dim=-1)
    assert torch.allclose(pol, torch.where(mask.bool(), seq[:, None].expand(2, 4), torch.zeros(())))


@pytest.mark.parametrize("ratio", ["token", "block", "sequence"])
def test_policy_loss_goes_through_the_registry(ratio, monkeypatch):
    logp, old = _logps(1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    adv = torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.3, 0.2, -0.4, 1.0]])
    spec = _spec(ratio=ratio, clip_low=0.1, clip_high=0.3, loss_agg="seq-mean-token-mean")
    w = torch.tensor([0.6, 0.3, 0.1])
    loss, kl, metrics, pol, tok = methods.policy_loss(spec, logp=logp, old_logp=old, mask=mask, advantages=adv,
                                                      weights=w)
    want_lr, _ = methods.log_ratios(spec, logp, old, mask, w)
    want, want_m = algos.clipped_policy_loss(want_lr, adv, mask.bool(), 0.1, 0.3, agg="seq-mean-token-mean")
    assert kl is None and torch.equal(loss, want) and torch.equal(pol, want_lr)
    assert metrics.keys() == want_m.keys()
    # a registered replacement is what the method uses
    calls = []

    def fake(logp, old_logp, mask, advantages, **kw):
        calls.append(kw)
        return torch.tensor(42.0), {}, torch.zeros_like(mask, dtype=logp.dtype)

    monkeypatch.setitem(algos.POLICY_LOSSES, ratio, fake)
    assert methods.policy_loss(spec, logp=logp, old_logp=old, mask=mask, advantages=adv, weights=w)[0] == 42
    assert calls[0]["eps_low"] == 0.1 and calls[0]["agg"] == "seq-mean-token-mean"


def test_policy_loss_kl_term():
    logp, old = _logps(2)
    mask = torch.ones(2, 4)
    ref = logp[..., 0] - 0.1
    spec = _spec(kl_loss_coef=1e-3)
    _, kl, *_ = methods.policy_loss(spec, logp=logp, old_logp=old, mask=mask, advantages=torch.zeros(2, 4),
                                    weights=torch.ones(1), ref_logp=ref)
    assert torch.isclose(kl, algos.masked_mean(algos.kl_penalty(logp[..., 0], ref, "k3"), mask))


def test_registries_reject_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        algos.register_adv_estimator("gae")(lambda **kw: None)
    with pytest.raises(ValueError, match="unknown policy loss 'nope'"):
        algos.get_policy_loss("nope")


# ------------------------------------------------------------------------------------------------ auxiliary MTP loss
def test_module_token_counts():
    from mpo.train.loss import module_token_counts

    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert module_token_counts(mask, 3).tolist() == [2 + 0 + 3, 1 + 0 + 2]
    assert module_token_counts(mask, 1).numel() == 0


@pytest.mark.parametrize("micro", [1, 2, 3])
def test_aux_mtp_loss_is_invariant_to_micro_batching(smoke_model_dir, micro):
    """Six rows of different lengths: the accumulated auxiliary loss equals the whole mini-batch's token-weighted
    sum_k lambda_k CE_k for every micro-batch size (the trainer's weighting: loss.aux_lambdas, aux_share 1)."""
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel
    from mpo.train.batch import collate
    from mpo.train.loss import aux_lambdas, module_token_counts

    torch.manual_seed(0)
    model = MTPModel.from_backbone(AutoModelForCausalLM.from_pretrained(smoke_model_dir), 3, lambdas=[1.0, 0.5])
    vocab = model.backbone.config.vocab_size
    lengths = [2, 9, 4, 12, 1, 6]
    batch = collate([[5, 6, 7]] * 6, [torch.randint(10, vocab, (n,)).tolist() for n in lengths], 0)
    mask, n, K = batch.resp["mask"], batch.size, 3
    mini_counts = module_token_counts(mask, K)

    def accumulated(size: int) -> float:
        accum, total = n // size, 0.0
        for start in range(0, n, size):
            mb = batch.select(list(range(start, start + size)))
            lam = aux_lambdas(model.lambdas, module_token_counts(mb.resp["mask"], K), mini_counts, 1, accum)
            out = model(mb.seq["input_ids"], mb.seq["attention_mask"], logprob_mask=mb.logprob_mask(), mtp_ce=True,
                        lambdas=lam)
            aux = compose_loss(aux=out.mtp_ce, policy=torch.zeros(()), token_share=0.0, row_share=0.0,
                               aux_share=1.0, row_agg=False, kl_coef=0.0, aux_coef=1.0)["actor"]
            total += float(aux) / accum  # accelerate divides each micro-batch's backward by the accumulation steps
        return total

    whole = accumulated(n)
    with torch.no_grad():  # reference: sum_k lambda_k * (token mean of CE_k over all six rows)
        out = model(batch.seq["input_ids"], batch.seq["attention_mask"], logprob_mask=batch.logprob_mask())
        lp = batch.response_view(out.logprobs)
        valid = batch.response_view(out.valid)
        want = sum(lam * float(-lp[..., k][valid[..., k]].mean()) for k, lam in zip((1, 2), model.lambdas))
    assert whole == pytest.approx(want, rel=1e-5)
    assert accumulated(micro) == pytest.approx(whole, rel=1e-5)


# ------------------------------------------------------------------------------------------------ DAPO's filter
def test_dynamic_sampling_filters_on_accuracy_not_the_shaped_score():
    """verl's DAPO keeps a group when its accuracies differ: the overlong shaping alone (different lengths, same
    correctness) does not make a group informative, and shaping cannot hide a correctness difference."""
    from mpo.train.sampling import dynamic_sampling_split

    def group(correct, penalty):
        c = torch.tensor(correct)
        return {"correct": c, "scores": c + torch.tensor(penalty)}

    same_acc = group([1.0, 1.0], [0.0, -0.5])  # shaped scores differ, accuracy does not
    diff_acc = group([0.0, 1.0], [0.0, -1.0])  # shaped scores equal (0, 0), accuracy differs
    kept, dropped = dynamic_sampling_split([same_acc, diff_acc], 2)
    assert kept == [diff_acc] and dropped == [same_acc]
