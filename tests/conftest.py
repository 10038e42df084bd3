import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# tests/vllm_cpu needs the vLLM engine (`make test-vllm`, its own venv). Where vLLM is absent the folder is not even
# entered: its conftest.py, imported as a second module named `conftest`, would shadow this one for the tests that
# import helpers from here inside a function.
if importlib.util.find_spec("vllm") is None:
    collect_ignore = ["vllm_cpu"]


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def snakemake_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "snakemake"), *args]


def run(cmd, cwd=REPO, timeout=900, env=None, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_model_dir(tmp_path_factory) -> Path:
    """The smoke config's tiny random model, prepared once per test session."""
    from mpo.config import load_config
    from mpo.model_prep import prepare_model

    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    prepare_model(load_config(REPO / "config" / "smoke.yaml"), "tiny-llama", out)
    return out


# ------------------------------------------------------------------------------------------------ RL training helpers
# Shared by tests/test_train*.py and tests/test_bench.py (import them from here, not from another test file).
def fake_reward(texts, records):
    """Deterministic 0/1 reward from the response text (a stand-in for the graders: the random model never solves
    anything, so the graders would give all-zero rewards and zero gradients)."""
    import zlib

    r = [float(zlib.crc32(t.encode()) % 2) for t in texts]
    return r, r


def write_train_data(root: Path, n: int = 8) -> Path:
    """``<root>/gsm8k/train.jsonl`` with n tiny addition problems; returns root (the trainer's data_root)."""
    import json

    from mpo.data import make_record

    d = root / "gsm8k"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "train.jsonl", "w") as f:
        for i in range(n):
            a, b = i + 2, 3 * i + 1
            rec = make_record(id=f"t{i}", source="test", split="train", kind="math", question=f"What is {a} + {b}?",
                              family="llama", answer=str(a + b), solution=f"\\boxed{{{a + b}}}")
            f.write(json.dumps(rec) + "\n")
    return root


TRAIN_TEST_VARIANTS = {
    "mpo_k3": {"method": "mpo", "K": 3, "gamma": 0.7, "mtp_share": 0.3},
    "mpo_k1": {"method": "mpo", "K": 1},
    "mpo_w0": {"method": "mpo", "K": 3, "gamma": 0.7, "mtp_share": 0.0},
    "mpo_vh": {"method": "mpo", "K": 3, "gamma": 0.7, "mtp_share": 0.3, "value_heads": True, "mtp_grad": "joint"},
}
TRAIN_MTP_VARIANTS = ("mpo_k3", "mpo_w0", "mpo_vh")


@pytest.fixture(scope="module")
def train_env(tmp_path_factory, smoke_model_dir):
    """Data, warmed-up-shaped K=3 MTP modules and the smoke config with the test variants above."""
    from transformers import AutoModelForCausalLM

    from mpo.config import load_config
    from mpo.mtp import MTPModel

    root = tmp_path_factory.mktemp("train")
    data = write_train_data(root / "data")
    mtp = root / "mtp_k3"
    MTPModel.from_backbone(AutoModelForCausalLM.from_pretrained(smoke_model_dir), 3).save_modules(mtp)
    cfg = load_config(REPO / "config" / "smoke.yaml")
    cfg["variants"].update(TRAIN_TEST_VARIANTS)
    return {"root": root, "data": data, "mtp": mtp, "cfg": cfg, "base": smoke_model_dir}


def make_trainer(env: dict, variant: str, out: Path | None = None, cfg: dict | None = None, **kw):
    """A :class:`mpo.train.Trainer` on the smoke model and the test data (fake reward unless ``reward_fn``)."""
    from mpo.train import Trainer

    out = out or env["root"] / "runs" / variant
    mtp = kw.pop("mtp", None) or (env["mtp"] if variant in TRAIN_MTP_VARIANTS else None)
    return Trainer(cfg or env["cfg"], model="tiny-llama", dataset="gsm8k", variant=variant, base=env["base"],
                   data_root=env["data"], out=out, mtp=mtp, reward_fn=kw.pop("reward_fn", fake_reward), **kw)


# metrics that measure wall-clock time or memory: they differ from run to run
TIMING_METRICS = {"time_rollout", "time_old_logprob", "time_update", "time_step", "peak_mem_mb", "rollout_tokens_per_s"}


def run_variant(env: dict, variant: str, out: Path | None = None, cfg: dict | None = None, **kw):
    """Train ``variant`` (see :func:`make_trainer`); returns (summary, metrics rows, output directory)."""
    import json

    out = out or env["root"] / "runs" / variant
    summary = make_trainer(env, variant, out=out, cfg=cfg, **kw).run()
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return summary, rows, out


@pytest.fixture(scope="module")
def env(train_env):
    """Short name of :func:`train_env` for the training tests."""
    return train_env


class Killed(Exception):
    """Raised by a test to stop a training run mid-way (a stand-in for a killed job)."""


def with_train(env: dict, **train) -> dict:
    """A copy of the train-test config with these ``train`` keys replaced."""
    import json

    cfg = json.loads(json.dumps(env["cfg"]))
    cfg["train"].update(train)
    return cfg


def strip_timings(rows: list[dict]) -> list[dict]:
    """Metrics rows without the timing / memory columns (those differ run to run)."""
    return [{k: v for k, v in r.items() if k not in TIMING_METRICS} for r in rows]
