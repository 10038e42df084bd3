"""Mixture-of-token rollouts and log-probs (``mpo.mot``, ``HFEngine.generate_mixture``; docs/method.md §9).

Pinned on the smoke tiny model: with k = 1 the mot mode is ordinary decoding token for token (sampled with the
same seed, and greedy); recorded weights are a distribution whose support holds the representative token;
both switch rules hand over to plain decoding at the right step; and the log-probs recomputed from the recorded
mixture inputs (``mixture_logprobs``) equal the ones seen during the rollout, for every action form.
"""

from __future__ import annotations

import pytest
import torch

from mpo.mot import (
    ACTION_LOGPS,
    MoTConfig,
    action_logprobs,
    mixture_embeddings,
    mixture_logprobs,
    stack_rollouts,
)
from mpo.rollout import HFEngine, RolloutEngineError
from mpo.train.batch import collate


@pytest.fixture(scope="module")
def tiny(smoke_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smoke_model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(smoke_model_dir)
    return model, tok


@pytest.fixture(scope="module")
def engine(tiny):
    model, tok = tiny
    return HFEngine(model, tok, device="cpu")


@pytest.fixture(scope="module")
def prompts(tiny):
    tok = tiny[1]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in ["What is 2 + 3?", "Name a prime above ten."]]


def _tokens(out):
    return [[r.tokens for r in group] for group in out]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_k1_sample_support_is_ordinary_sampling(engine, prompts, temperature):
    cfg = MoTConfig(k=1, support="sample")
    plain = engine.generate(prompts, n=3, max_new_tokens=12, temperature=temperature, seed=5)
    mixed = engine.generate_mixture(prompts, n=3, max_new_tokens=12, temperature=temperature, seed=5, mot=cfg)
    assert _tokens(mixed) == plain
    assert len({tuple(r) for g in plain for r in g}) > 2  # the draws really are random


def test_k1_sampling_with_early_eos(tiny, engine, prompts):
    # extra EOS ids taken from a plain rollout make the rows stop at different lengths (finished rows padded)
    plain = engine.generate(prompts, n=3, max_new_tokens=12, temperature=1.0, seed=8)
    eng = HFEngine(tiny[0], tiny[1], device="cpu", eos_ids=engine.eos_ids + [plain[0][0][3], plain[1][2][5]])
    want = eng.generate(prompts, n=3, max_new_tokens=12, temperature=1.0, seed=8)
    got = eng.generate_mixture(prompts, n=3, max_new_tokens=12, temperature=1.0, seed=8,
                               mot=MoTConfig(k=1, support="sample"))
    assert _tokens(got) == want
    assert len({len(r) for g in want for r in g}) > 1


def test_k1_greedy_is_greedy_decoding(engine, prompts):
    greedy = engine.generate(prompts, n=2, max_new_tokens=12, temperature=0.0)
    for support in ("topk", "sample"):
        mixed = engine.generate_mixture(prompts, n=2, max_new_tokens=12, temperature=0.0,
                                        mot=MoTConfig(k=1, support=support))
        assert _tokens(mixed) == greedy
    # top-1 support at temperature 1: the mixture phase feeds (and emits) the most likely token
    mixed = engine.generate_mixture(prompts, n=2, max_new_tokens=12, temperature=1.0, seed=3, mot=MoTConfig(k=1))
    assert _tokens(mixed) == greedy


@pytest.mark.parametrize("cfg", [
    MoTConfig(k=2), MoTConfig(k=3, weighting="nucleus", nucleus=0.5), MoTConfig(k=3, weighting="dirichlet"),
    MoTConfig(k=2, support="sample"), MoTConfig(k=2, combine="max"),
])
def test_records_are_distributions_holding_the_token(engine, prompts, cfg):
    out = engine.generate_mixture(prompts, n=2, max_new_tokens=10, temperature=1.0, seed=3, mot=cfg)
    for r in (r for g in out for r in g):
        L = len(r.tokens)
        assert r.mix_ids.shape == r.mix_weights.shape == r.support_logprob.shape == (L, cfg.k)
        assert r.is_mixture.all()  # no end-of-reasoning marker: mixture everywhere
        torch.testing.assert_close(r.mix_weights.sum(-1), torch.ones(L))
        assert (r.mix_weights >= 0).all()
        tok = torch.tensor(r.tokens)
        if cfg.support == "topk":
            held = (r.mix_ids == tok[:, None]) & (r.mix_weights > 0)
            assert held.any(-1).all()
            # top-k support: ids in decreasing probability, the first is the most likely token
            assert (r.support_logprob[:, :-1] >= r.support_logprob[:, 1:]).all()
        else:
            assert torch.equal(r.mix_ids[:, 0], tok)  # "sample": the representative is the first draw
        slot = (r.mix_ids == tok[:, None]).float().argmax(1, keepdim=True)  # where y_t sits in the support
        torch.testing.assert_close(r.token_logprob, r.support_logprob.gather(1, slot)[:, 0])
    if cfg.weighting == "nucleus":
        assert any((r.mix_weights == 0).any() for g in out for r in g)


def test_mixture_changes_the_rollout(engine, prompts):
    plain = engine.generate_mixture(prompts, n=1, max_new_tokens=12, temperature=0.0, mot=MoTConfig(k=1))
    mixed = engine.generate_mixture(prompts, n=1, max_new_tokens=12, temperature=0.0, mot=MoTConfig(k=4))
    assert _tokens(plain) != _tokens(mixed)
    for r in (r for g in mixed for r in g):  # temperature 0: the representative is the most likely token
        assert r.tokens == r.mix_ids[:, 0].tolist() and (r.mix_weights[:, 0] >= r.mix_weights[:, 1]).all()


def test_switch_sampled_marker(engine, prompts):
    base = engine.generate_mixture(prompts, n=2, max_new_tokens=16, temperature=1.0, seed=9, mot=MoTConfig(k=2))
    row = base[0][0].tokens
    marker = row[3]
    first = row.index(marker)
    cfg = MoTConfig(k=2, end_ids=(marker,), switch="sampled")
    out = engine.generate_mixture(prompts, n=2, max_new_tokens=16, temperature=1.0, seed=9, mot=cfg)
    r = out[0][0]
    assert r.tokens[: first + 1] == row[: first + 1]  # same draws and inputs up to the marker
    assert r.is_mixture[: first + 1].all() and not r.is_mixture[first + 1 :].any()
    plain = ~r.is_mixture
    assert plain.any()
    assert torch.equal(r.mix_ids[plain], torch.tensor(r.tokens)[plain][:, None].expand(-1, 2))
    assert torch.equal(r.mix_weights[plain], torch.tensor([[1.0, 0.0]]).expand(int(plain.sum()), 2))


def test_switch_sampled_two_token_marker(engine, prompts):
    base = engine.generate_mixture(prompts, n=2, max_new_tokens=16, temperature=1.0, seed=9, mot=MoTConfig(k=2))
    row = base[0][1].tokens
    marker = (row[4], row[5])
    end = next(t for t in range(1, len(row)) if (row[t - 1], row[t]) == marker)  # completes the marker
    out = engine.generate_mixture(prompts, n=2, max_new_tokens=16, temperature=1.0, seed=9,
                                  mot=MoTConfig(k=2, end_ids=marker, switch="sampled"))
    r = out[0][1]
    assert r.tokens[: end + 1] == row[: end + 1]
    assert r.is_mixture[: end + 1].all() and not r.is_mixture[end + 1 :].any() and end + 1 < len(r.tokens)


def test_switch_when_marker_is_most_likely(engine, prompts):
    base = engine.generate_mixture(prompts, n=1, max_new_tokens=16, temperature=1.0, seed=4, mot=MoTConfig(k=2))
    r0 = base[1][0]
    top1 = r0.mix_ids[:, 0].tolist()  # top-k support: the most likely token of each step
    marker = top1[2]
    first = top1.index(marker)
    out = engine.generate_mixture(prompts, n=1, max_new_tokens=16, temperature=1.0, seed=4,
                                  mot=MoTConfig(k=2, end_ids=[marker], switch="argmax"))
    r = out[1][0]
    assert r.tokens[:first] == r0.tokens[:first]
    assert r.is_mixture[:first].all() and not r.is_mixture[first:].any()


@pytest.mark.parametrize("cfg,temperature", [
    (MoTConfig(k=2), 1.0), (MoTConfig(k=3, weighting="dirichlet", support="sample"), 0.8),
    (MoTConfig(k=2, combine="max"), 1.0), (MoTConfig(k=3, weighting="nucleus", nucleus=0.6), 0.0),
])
def test_logprobs_from_recorded_inputs_match_rollout(tiny, engine, prompts, cfg, temperature):
    model = tiny[0]
    out = engine.generate_mixture(prompts, n=3, max_new_tokens=12, temperature=temperature, seed=21, mot=cfg)
    rows = [r for g in out for r in g]
    batch = collate([p for p in prompts for _ in range(3)], [r.tokens for r in rows], engine.pad_id)
    rec = stack_rollouts(rows, batch.response_len)
    mask = batch.resp["mask"]
    for form in ACTION_LOGPS:
        with torch.no_grad():
            got = mixture_logprobs(model, batch.seq["input_ids"], batch.seq["attention_mask"], batch.prompt_len,
                                   rec["mix_ids"], rec["mix_weights"], rec["is_mixture"],
                                   temperature=temperature or 1.0, combine=cfg.combine, form=form)
        want = action_logprobs(form, rec["token_logprob"], rec["support_logprob"], rec["mix_weights"],
                               rec["is_mixture"])
        want = torch.where(mask, want, torch.zeros_like(want))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the plain-token log-probs (what ordinary scoring would give) differ: the mixtures really are the inputs
    with torch.no_grad():
        ids, am = batch.seq["input_ids"], batch.seq["attention_mask"]
        logits = model(input_ids=ids, attention_mask=am).logits[:, batch.prompt_len - 1 : -1]
        lp = torch.log_softmax(logits / (temperature or 1.0), -1).gather(-1, ids[:, batch.prompt_len :, None])[..., 0]
    assert (torch.where(mask, lp - rec["token_logprob"], torch.zeros_like(lp)).abs() > 1e-3).any()


def test_logprobs_are_differentiable(tiny, engine, prompts):
    model = tiny[0]
    out = engine.generate_mixture(prompts[:1], n=2, max_new_tokens=6, temperature=1.0, seed=2, mot=MoTConfig(k=2))
    rows = out[0]
    batch = collate([prompts[0]] * 2, [r.tokens for r in rows], engine.pad_id)
    rec = stack_rollouts(rows)
    lp = mixture_logprobs(model, batch.seq["input_ids"], batch.seq["attention_mask"], batch.prompt_len,
                          rec["mix_ids"], rec["mix_weights"], rec["is_mixture"], form="topk_weighted")
    model.zero_grad()
    lp.sum().backward()
    grad = model.get_input_embeddings().weight.grad
    assert grad is not None and grad[rec["mix_ids"][rec["is_mixture"]][:, 1]].abs().sum() > 0
    model.zero_grad()


def test_action_forms_by_hand():
    lp = torch.log(torch.tensor([[0.5, 0.3, 0.1]]))
    w = torch.tensor([[0.6, 0.4, 0.0]])  # third entry dropped (nucleus): not counted
    tok, mix = torch.log(torch.tensor([0.3])), torch.tensor([True])
    assert action_logprobs("sampled", tok, lp, w, mix).item() == pytest.approx(float(tok))
    assert action_logprobs("topk_mass", tok, lp, w, mix).item() == pytest.approx(float(torch.log(torch.tensor(0.8))))
    want = (0.5 * torch.log(torch.tensor(0.5)) + 0.3 * torch.log(torch.tensor(0.3))) / 0.8
    assert action_logprobs("topk_weighted", tok, lp, w, mix).item() == pytest.approx(float(want))
    assert action_logprobs("topk_mass", tok, lp, w, torch.tensor([False])).item() == pytest.approx(float(tok))
    with pytest.raises(ValueError, match="unknown"):
        action_logprobs("nope", tok, lp, w, mix)


def test_mixture_embeddings_and_config_errors():
    emb = torch.nn.Embedding(5, 3)
    ids, w = torch.tensor([[1, 4]]), torch.tensor([[0.25, 0.75]])
    want = 0.25 * emb.weight[1:2] + 0.75 * emb.weight[4:5]
    torch.testing.assert_close(mixture_embeddings(emb, ids, w, "sum"), want)
    torch.testing.assert_close(mixture_embeddings(emb, ids, w, "max"), torch.maximum(emb.weight[1], emb.weight[4])[None])
    for kw, key in [({"k": 0}, "mot.k"), ({"support": "x"}, "mot.support"), ({"weighting": "x"}, "mot.weighting"),
                    ({"combine": "x"}, "mot.combine"), ({"switch": "x"}, "mot.switch"),
                    ({"end_ids": (1, 2)}, "mot.end_ids"), ({"nucleus": 0.0}, "mot.nucleus")]:
        with pytest.raises(ValueError, match=key):
            MoTConfig(**kw)
    MoTConfig(end_ids=(1, 2), switch="sampled")


def test_top_p_rejected(engine, prompts):
    with pytest.raises(RolloutEngineError, match="top_p"):
        engine.generate_mixture(prompts, n=1, max_new_tokens=4, temperature=1.0, top_p=0.9, mot=MoTConfig())
