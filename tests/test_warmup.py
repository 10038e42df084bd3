"""MTP warm-up (mpo.warmup) on the smoke model with tiny synthetic data: frozen backbone, held-out CE goes down,
outputs load back, resume from a checkpoint reproduces an uninterrupted run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from mpo.config import load_config
from mpo.mtp import MTPModel
from mpo.utils import write_jsonl
from mpo.warmup import render_example, run_warmup, solution_text

REPO = Path(__file__).resolve().parents[1]


def _records(n: int, seed: int, kind: str) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 30), rng.randint(1, 30)
        q = f"Tom has {a} apples and buys {b} more. How many apples does he have?"
        sol = (f"Tom starts with {a} apples.\nHe buys {b} more, so {a} + {b} = {a + b}.\n"
               f"The final answer is \\boxed{{{a + b}}}.")
        out.append({
            "id": f"{kind}-{i}", "source": "synthetic", "split": "train", "kind": "math", "question": q,
            "prompt": [{"role": "user", "content": q + "\n\nPlease reason step by step."}],
            "answer": str(a + b), "solution": None if i % 7 == 3 else sol, "tests": None, "entry_point": None,
            "test_style": None,
        })
    return out


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_jsonl(root / "gsm8k" / "train.jsonl", _records(28, 0, "gsm8k"))
    write_jsonl(root / "math" / "train.jsonl", _records(28, 1, "math"))
    return root


def _cfg(**warmup):
    base = {"heldout": 8, "max_length": 160, "batch_size": 4, "eval_batch_size": 8, "lr": 3e-3,
            "lr_scheduler": "constant", "warmup_ratio": 0.0, "save_steps": 2, "logging_steps": 1}
    return load_config(REPO / "config" / "smoke.yaml", overrides={"warmup": {**base, **warmup}})


def test_render_example_masks_response_only(smoke_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smoke_model_dir)
    rec = _records(1, 0, "x")[0]
    ex = render_example(tok, rec, 512)
    ids, lm, n_prompt = ex["input_ids"], ex["loss_mask"], ex["n_prompt"]
    assert len(ids) == len(lm) and 0 < n_prompt < len(ids)
    # positions whose next token is a response token, and nothing else
    assert lm == [1 if n_prompt <= s + 1 < len(ids) else 0 for s in range(len(ids))]
    response = tok.decode(ids[n_prompt:])
    assert rec["solution"].split("\n")[0] in response and "boxed" in response
    assert tok.decode(ids[:n_prompt]).rstrip().endswith(rec["prompt"][0]["content"][-20:].rstrip()) or \
        rec["prompt"][0]["content"][-20:] in tok.decode(ids[:n_prompt])
    ex_all = render_example(tok, rec, 512, loss_on="all")
    assert sum(ex_all["loss_mask"]) == len(ids) - 1
    assert render_example(tok, rec, n_prompt) is None  # no response token left after truncation
    assert solution_text({"solution": None, "answer": "7"}) == "The answer is \\boxed{7}."


@pytest.mark.slow
def test_warmup_trains_modules_on_frozen_backbone(smoke_model_dir, data_root, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = _cfg(max_steps=6)
    out = tmp_path / "mtp_k3"
    metrics, model = run_warmup(cfg, "tiny-llama", 3, smoke_model_dir, data_root, out, return_model=True)
    # frozen backbone: bit-identical to the prepared weights
    fresh = AutoModelForCausalLM.from_pretrained(smoke_model_dir)
    sd = fresh.state_dict()
    for name, t in model.backbone.state_dict().items():
        assert torch.equal(t.cpu(), sd[name]), name
    assert not any(p.requires_grad for p in model.backbone.parameters())
    # modules trained: every module parameter changed from its initial copy, held-out CE down
    assert metrics["train"]["steps"] == 6
    assert metrics["train"]["trainable_parameters"] == sum(p.numel() for p in model.mtp.parameters())
    before, after = metrics["heldout"]["before"], metrics["heldout"]["after"]
    assert before["ce"][0] == pytest.approx(after["ce"][0])  # backbone predictor untouched
    for k in (1, 2):
        assert after["ce"][k] < before["ce"][k] - 0.05, (before, after)
    assert len(metrics["train"]["loss_curve"]) >= 5
    # outputs: modules + config + metrics + provenance; modules load back exactly
    for f in ("mtp.safetensors", "mtp_config.json", "metrics.json", "run_info.json", "resolved_config.yaml"):
        assert (out / f).is_file(), f
    assert json.loads((out / "metrics.json").read_text())["K"] == 3
    assert not (out / "checkpoints").exists()  # finished: checkpoints removed (keep_checkpoints false)
    loaded = MTPModel.load(smoke_model_dir, out)
    for (n1, p1), (n2, p2) in zip(loaded.mtp.named_parameters(), model.mtp.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2.cpu())


@pytest.mark.slow
def test_warmup_resumes_from_checkpoint(smoke_model_dir, data_root, tmp_path):
    cfg = _cfg(max_steps=4, keep_checkpoints=True)
    ckpt = tmp_path / "ckpt"
    # interrupted after step 2 (a kill right after the step-2 checkpoint), then rerun: resumes at checkpoint-2
    run_warmup(cfg, "tiny-llama", 2, smoke_model_dir, data_root, tmp_path / "a", checkpoint_dir=ckpt,
               interrupt_at_step=2)
    assert (ckpt / "checkpoint-2" / "mtp.safetensors").is_file()
    assert not (ckpt / "checkpoint-2" / "model.safetensors").exists()  # checkpoints never copy the backbone
    resumed, m_res = run_warmup(cfg, "tiny-llama", 2, smoke_model_dir, data_root, tmp_path / "a",
                                checkpoint_dir=ckpt, return_model=True)
    assert resumed["train"]["resumed_from"] == "checkpoint-2" and resumed["train"]["steps"] == 4
    straight, m_straight = run_warmup(cfg, "tiny-llama", 2, smoke_model_dir, data_root, tmp_path / "b",
                                      checkpoint_dir=tmp_path / "ckpt_b", return_model=True)
    assert straight["train"]["resumed_from"] is None
    for (n, p1), (_, p2) in zip(m_res.mtp.named_parameters(), m_straight.mtp.named_parameters()):
        assert torch.allclose(p1, p2, atol=1e-6, rtol=0), n
