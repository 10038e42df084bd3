"""The methods beyond the paper in the trainer: TEMPO (docs/method.md §8) and GRPO on MoT-G rollouts (§9).

Smoke model and data (conftest.py), fake reward. The learning checks are in test_learning.py.
"""

import copy

import pytest
import torch

from conftest import make_trainer
from conftest import run_variant as run
from mpo import algos
from mpo.train import methods, mixture
from mpo.train.errors import TrainSetupError
from mpo.train.variants import resolve_variant
from test_train import REQUIRED_KEYS


@pytest.mark.parametrize("variant", ["tempo", "mot_grpo"])
def test_variant_trains_two_steps(env, variant):
    summary, rows, out = run(env, variant)
    assert [r["step"] for r in rows] == [1, 2] and summary["status"] == "done"
    for r in rows:
        assert not REQUIRED_KEYS - set(r), sorted(REQUIRED_KEYS - set(r))
        assert r["first_minibatch_ratio_maxdev"] < 1e-5
    assert "kl_loss" in rows[-1] and "value_loss" not in rows[-1]  # GRPO's loss: KL term, no critic
    assert any(r["grad_norm"] > 0 for r in rows)
    if variant == "mot_grpo":
        # the smoke tokenizer has no single-token </think>: the whole response is mixture-decoded
        assert summary["mot"]["end_ids"] == [] and summary["mot"]["k"] == 2
        assert all(r["mixture_frac"] == 1.0 for r in rows)
    else:
        assert "mot" not in summary and "mixture_frac" not in rows[-1]


def test_mot_grpo_old_logprobs_equal_the_rollouts(env):
    """Scoring on the recorded mixture inputs reproduces the log-probs the rollout computed token by token."""
    tr = make_trainer(env, "mot_grpo", out=env["root"] / "mot_lp")
    try:
        batch, _ = tr._rollout(1)
        sc = tr._score(batch)
    finally:
        tr.close()
    m = batch.resp["mask"].bool()
    assert batch.resp["is_mixture"][m].all() and m.sum() > 0
    old, rec = sc.old_logp[..., 0][m], batch.resp["token_logprob"][m]
    assert torch.allclose(old, rec, atol=1e-4), (old - rec).abs().max()
    assert torch.allclose(sc.ref_logp[m], rec, atol=1e-4)  # step 1: the reference is the policy
    # the plain-token forward scores differently (the mixtures matter)
    with torch.no_grad():
        plain = tr.acc.unwrap_model(tr.actor)(batch.seq["input_ids"], batch.seq["attention_mask"],
                                              logprob_mask=batch.logprob_mask())
    assert (batch.response_view(plain.logprobs)[..., 0][m] - rec).abs().max() > 1e-2


def test_tempo_advantages_in_the_trainer(env):
    def alternating(texts, records):  # 1, 0, 1, 0, ...: every group has a spread
        return [float(i % 2 == 0) for i in range(len(texts))], [0.0] * len(texts)

    tr = make_trainer(env, "tempo", out=env["root"] / "tempo_adv", reward_fn=alternating)
    try:
        batch, _ = tr._rollout(1)
        tr._advantages(batch, tr._score(batch))
    finally:
        tr.close()
    P, T, G = batch.prompt_len, batch.response_len, tr.spec["group_size"]
    want = algos.tempo_advantages(batch.seq["input_ids"][:, P : P + T], batch.resp["mask"], batch.row["scores"], G)
    assert torch.equal(batch.resp["adv"], want)
    assert batch.row["scores"].std() > 0 and batch.resp["adv"].abs().max() > 0


def test_tempo_methods_entry(env):
    """methods.advantages for tempo: per-token TEMPO advantages of the response ids, GRPO's on unshared suffixes."""
    spec = resolve_variant(env["cfg"], "tempo")
    assert spec["advantage"] == "tempo" and not spec["critic"] and spec["loss_agg"] == "seq-mean-token-mean"
    G = spec["group_size"] = 4
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 9], [5, 1, 2, 0], [3, 3, 3, 3]] * 2)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]] * 2, dtype=torch.bool)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0])
    tcfg = env["cfg"]["train"]
    got = methods.advantages(spec, tcfg, scores=scores, mask=mask, values=None, kl=None, token_ids=ids)["advantages"]
    assert torch.equal(got, algos.tempo_advantages(ids, mask, scores, G))
    grpo = methods.advantages({**spec, "advantage": "grpo"}, tcfg, scores=scores, mask=mask, values=None,
                              kl=None)["advantages"]
    assert torch.allclose(got[:, 3][mask[:, 3]], grpo[:, 3][mask[:, 3]])  # alone in its branch: plain GRPO
    assert not torch.allclose(got, grpo)  # shared prefixes and first tokens carry the TD term


def test_mot_setup_errors_and_end_marker(env):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(env["base"])
    cfg = copy.deepcopy(env["cfg"])
    assert mixture.end_marker_ids(tok, "</think>", "argmax") == ()  # several tokens in SmolLM2's vocabulary
    multi = mixture.end_marker_ids(tok, "</think>", "sampled")
    assert len(multi) > 1 and tok.decode(list(multi)) == "</think>"
    single = tok(" the", add_special_tokens=False)["input_ids"]
    assert len(single) == 1 and mixture.end_marker_ids(tok, " the", "argmax") == tuple(single)
    assert mixture.mot_setup(cfg, tok, "mot_grpo").decode.end_ids == ()
    for key, value, message in (("engine", "vllm", "train.engine"), ("top_p", 0.9, "train.top_p")):
        bad = copy.deepcopy(cfg)
        bad["train"][key] = value
        with pytest.raises(TrainSetupError, match=message):
            mixture.mot_setup(bad, tok, "mot_grpo")
    bad = copy.deepcopy(cfg)
    bad["mot"]["k"] = 0
    with pytest.raises(TrainSetupError, match="mot.k"):
        mixture.mot_setup(bad, tok, "mot_grpo")
