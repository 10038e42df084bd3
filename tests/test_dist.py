"""Sharded training equals one process (``make test-dist``): two CPU processes (gloo, ``torchrun``) train the smoke
model for two updates of PPO and of MPO K = 3 with ``train.strategy: fsdp`` (FSDP2, ``mpo.train.fsdp``), and every
metric (losses, gradient norms, ratios, values, ...) and every final parameter of the actor and the critic equal a
single-process run on the same global batch (tests/dist_harness.py); and a two-process run stopped after one update
and resumed from its sharded checkpoint ends the same.

Tolerances: metrics ``rel 1e-5`` with an absolute floor of ``1e-6`` (the policy loss of a single mini-batch at ratio 1
is ~1e-8); parameters ``1e-6`` absolute. Measured (torch 2.13 CPU): parameters within 2.6e-8, gradient norms within
1.6e-7 relative, the MTP gradient norm within 6.3e-6 relative (its micro-batches are summed in another order).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TIMING_METRICS

HARNESS = Path(__file__).parent / "dist_harness.py"
VARIANTS = ("ppo", "mpo_k3", "grpo")  # grpo: the sharded reference model (KL loss)
REL, ABS, PARAM_ABS = 1e-5, 1e-6, 1e-6


def _launch_two(env_dir: Path, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HARNESS),
           "--env", str(env_dir), "--out", str(out), "--strategy", "fsdp", "--variants", ",".join(VARIANTS),
           "--resume", "ppo"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def compare(one: dict, two: dict) -> list[str]:
    """What differs beyond the tolerances (empty: equal)."""
    bad = []
    if len(one["rows"]) != len(two["rows"]):
        return [f"{len(one['rows'])} vs {len(two['rows'])} metrics rows"]
    for r1, r2 in zip(one["rows"], two["rows"]):
        for k in sorted(set(r1) | set(r2)):
            a, b = r1.get(k), r2.get(k)
            if k in TIMING_METRICS or not isinstance(a, (int, float)) or isinstance(a, bool):
                continue
            if not isinstance(b, (int, float)) or not (math.isclose(a, b, rel_tol=REL, abs_tol=ABS)
                                                       or (math.isnan(a) and math.isnan(b))):
                bad.append(f"step {r1['step']} {k}: {a} vs {b}")
    for m in ("actor", "critic"):
        if one[m] is None:
            continue
        if set(one[m]) != set(two[m]):
            bad.append(f"{m}: parameter names differ: {sorted(set(one[m]) ^ set(two[m]))}")
            continue
        for k, v in one[m].items():
            d = (v.float() - two[m][k].float()).abs().max().item()
            if not d <= PARAM_ABS:
                bad.append(f"{m}.{k}: max abs difference {d:.3e}")
    return bad


@pytest.mark.slow
def test_two_process_fsdp_equals_one_process(tmp_path, smoke_model_dir):
    import dist_harness

    dist_harness.write_env(tmp_path / "env", smoke_model_dir)
    proc = _launch_two(tmp_path / "env", tmp_path / "two")  # runs while this process trains the reference
    one = {}
    try:
        env = dist_harness.env_of(tmp_path / "env", "ddp")
        for v in VARIANTS:
            one[v] = dist_harness.train_and_dump(env, v, tmp_path / "one")
        log, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{log[-6000:]}"
    for v in VARIANTS:
        two = torch.load(tmp_path / "two" / f"{v}.pt", weights_only=False)
        assert (one[v]["world"], two["world"], two["strategy"]) == (1, 2, "fsdp")
        assert one[v]["rows"] and all(r["optimizer_steps"] >= 1 for r in one[v]["rows"])
        bad = compare(one[v], two)
        assert not bad, f"{v}: 2-process FSDP differs from 1 process:\n" + "\n".join(bad[:20])
    # the final save gathers the shards: policy/ and mtp/ hold the trained parameters
    from safetensors.torch import load_file

    two = torch.load(tmp_path / "two" / "mpo_k3.pt", weights_only=False)
    for prefix, path in (("backbone.", "policy/model.safetensors"), ("mtp.", "mtp/mtp.safetensors")):
        saved = load_file(tmp_path / "two" / "mpo_k3" / path)
        assert saved and all(torch.equal(v, two["actor"][prefix + k]) for k, v in saved.items()), path
    # a sharded checkpoint (full state dicts gathered to rank 0) resumes: 1 step + resume = 2 steps
    resumed = torch.load(tmp_path / "two" / "ppo_resumed.pt", weights_only=False)
    assert resumed["resumed_from"] == 1 and len(resumed["rows"]) == 2
    bad = compare(one["ppo"], resumed)
    assert not bad, "ppo: 2-process FSDP resumed after step 1 differs:\n" + "\n".join(bad[:20])
