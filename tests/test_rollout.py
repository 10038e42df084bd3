"""Rollout engines (mpo.rollout): the HF engine samples what model.generate samples; vLLM fails clearly without vLLM."""

import importlib.util

import pytest
import torch

from mpo.rollout import HFEngine, RolloutEngineError, make_engine


@pytest.fixture(scope="module")
def tiny(smoke_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smoke_model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(smoke_model_dir)
    return model, tok


def _prompts(tok):
    texts = ["What is 2 + 3?", "Name a prime number larger than ten, please."]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_hf_greedy_equals_model_generate(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    engine = make_engine("hf", model, tok, device="cpu", dtype=torch.float32)
    out = engine.generate(prompts, n=2, max_new_tokens=12, temperature=0.0)
    assert len(out) == 2 and all(len(g) == 2 for g in out)
    eos = set(engine.eos_ids)
    for p, group in zip(prompts, out):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        cut = next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))
        assert group[0] == ref[:cut]
        assert group[1] == group[0]  # greedy: n copies
    assert engine.tokens_generated == sum(len(r) for g in out for r in g) and engine.tokens_per_second > 0


def test_hf_sampling_shapes_seed_and_eos(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    engine = HFEngine(model, tok, device="cpu", batch_size=1)
    state = torch.get_rng_state()
    a = engine.generate(prompts, n=3, max_new_tokens=10, temperature=1.0, top_p=0.9, seed=11)
    assert torch.equal(state, torch.get_rng_state())  # seeded calls leave the global RNG alone
    b = engine.generate(prompts, n=3, max_new_tokens=10, temperature=1.0, top_p=0.9, seed=11)
    c = engine.generate(prompts, n=3, max_new_tokens=10, temperature=1.0, top_p=0.9, seed=12)
    assert a == b and a != c
    assert len(a) == 2 and all(len(g) == 3 for g in a)
    for group in a:
        for r in group:
            assert 1 <= len(r) <= 10
            # EOS only as the last token; no padding after it
            assert all(t not in engine.eos_ids for t in r[:-1])
            assert len(r) == 10 or r[-1] in engine.eos_ids


def test_hf_engine_stops_at_eos():
    engine = HFEngine.__new__(HFEngine)
    engine.eos_ids = [2, 7]
    assert engine._cut([5, 6, 7, 2, 2]) == [5, 6, 7]
    assert engine._cut([5, 6]) == [5, 6]


def test_bad_arguments(tiny):
    model, tok = tiny
    engine = make_engine("hf", model, tok, device="cpu", dtype=torch.float32)
    with pytest.raises(RolloutEngineError, match="n must be"):
        engine.generate([[1, 2]], n=0, max_new_tokens=4, temperature=1.0)
    with pytest.raises(RolloutEngineError, match="empty"):
        engine.generate([[]], n=1, max_new_tokens=4, temperature=1.0)
    with pytest.raises(RolloutEngineError, match="unknown rollout engine"):
        make_engine("sglang", model, tok, device="cpu", dtype=torch.float32)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_a_clear_error(tiny):
    model, tok = tiny
    with pytest.raises(RolloutEngineError, match="vllm package.*GPU environment.*train.engine: hf"):
        make_engine("vllm", model, tok, device="cpu", dtype=torch.float32)
