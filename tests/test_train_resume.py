"""Checkpoints: a killed run resumes bit for bit; a NaN stops the run and keeps the last good checkpoint; the CLI."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mpo.train.trainer import Trainer, TrainingDivergedError
from conftest import REPO, Killed, run_variant as run, strip_timings, with_train

pytestmark = pytest.mark.slow  # trains the smoke model (> 10 s): `make test`, not `make test-fast`


@pytest.mark.parametrize("variant", ["mpo_k3", "dapo"])
def test_resume_is_bitwise(env, monkeypatch, variant):
    """4 steps straight == 2 steps, killed, resumed, 2 more steps (weights, MTP modules and metrics)."""
    cfg = with_train(env, steps=4, save_every=2)
    _, straight, out_a = run(env, variant, out=env["root"] / f"straight_{variant}", cfg=cfg)

    out_b = env["root"] / f"killed_{variant}"
    orig = Trainer._step

    def dying(self, step):
        if step == 3:
            raise Killed
        return orig(self, step)

    monkeypatch.setattr(Trainer, "_step", dying)
    with pytest.raises(Killed):
        run(env, variant, out=out_b, cfg=cfg)
    monkeypatch.setattr(Trainer, "_step", orig)
    assert (out_b / "checkpoints" / "step_000002" / "COMPLETE").is_file()
    assert len(open(out_b / "metrics.jsonl").readlines()) == 2
    (out_b / "metrics.jsonl").unlink()  # Snakemake deletes a failed job's outputs: the checkpoint keeps a copy

    summary, resumed, _ = run(env, variant, out=out_b, cfg=cfg)
    assert summary["resumed_from_step"] == 2 and [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert strip_timings(resumed) == strip_timings(straight)
    a, b = load_file(str(out_a / "policy" / "model.safetensors")), load_file(str(out_b / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if variant == "mpo_k3":
        a, b = load_file(str(out_a / "mtp" / "mtp.safetensors")), load_file(str(out_b / "mtp" / "mtp.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (out_b / "checkpoints").exists()  # finished runs drop their checkpoints (keep_final_checkpoint: false)


def test_nan_stops_and_keeps_last_good_checkpoint(env, monkeypatch):
    cfg = with_train(env, steps=4, save_every=1)
    out = env["root"] / "nan"
    orig = Trainer._advantages

    def poisoned(self, batch, sc):
        res = orig(self, batch, sc)
        if self.progress.step == 2:  # advantages of step 3
            batch.resp["adv"] = torch.full_like(batch.resp["adv"], float("nan"))
        return res

    monkeypatch.setattr(Trainer, "_advantages", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"non-finite policy loss.*step 3.*step_000002"):
        run(env, "ppo", out=out, cfg=cfg)
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step_000002"] and (out / "checkpoints" / "step_000002" / "COMPLETE").is_file()
    assert [json.loads(x)["step"] for x in open(out / "metrics.jsonl")] == [1, 2]
    assert not (out / "summary.json").exists() and not (out / "policy").exists()


def test_cli_with_real_grader(env, tmp_path):
    """`python -m mpo.train` with the math grader's worker pool: outputs and provenance."""
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "mpo.train", "--config", str(REPO / "config" / "smoke.yaml"), "--model", "tiny-llama",
         "--dataset", "gsm8k", "--variant", "grpo", "--base", str(env["base"]), "--data-root", str(env["data"]),
         "--out", str(out), "--threads", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == "grpo" and summary["steps"] == 2
    assert (out / "run_info.json").is_file() and (out / "resolved_config.yaml").is_file()
    assert (out / "policy" / "model.safetensors").is_file()
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    assert len(rows) == 2 and all(r["accuracy"] == 0.0 for r in rows)  # a random model solves nothing
