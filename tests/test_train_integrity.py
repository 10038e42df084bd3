"""Checkpoints that cannot silently rot, non-finite weights that stop the run, one writer per run folder."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from mpo.integrity import RunLock, RunLockedError
from mpo.train.trainer import Trainer, TrainingDivergedError
from conftest import Killed, run_variant as run, strip_timings, with_train

pytestmark = pytest.mark.slow  # trains the smoke model (> 10 s): `make test`, not `make test-fast`


def _kill_at(monkeypatch, step):
    orig = Trainer._step

    def dying(self, s):
        if s == step:
            raise Killed
        return orig(self, s)

    monkeypatch.setattr(Trainer, "_step", dying)
    return orig


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "zero64k":  # 64 KB zeroed in place (same size)
        start = len(data) // 3
        data[start:start + 65536] = bytes(min(65536, len(data) - start))
    else:  # random bytes over the first 4 KB
        data[:4096] = os.urandom(min(4096, len(data)))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target,how", [("model", "zero64k"), ("optimizer.bin", "random")])
def test_damaged_checkpoint_is_named_and_skipped(env, monkeypatch, capsys, target, how):
    """Newest checkpoint damaged -> resume from the one before, name the damaged one, end bit-identical."""
    cfg = with_train(env, steps=4, save_every=1, keep_checkpoints=3)
    _, straight, out_a = run(env, "ppo", out=env["root"] / f"straight_{how}", cfg=cfg)

    out = env["root"] / f"damaged_{how}"
    orig = _kill_at(monkeypatch, 4)
    with pytest.raises(Killed):
        run(env, "ppo", out=out, cfg=cfg)
    monkeypatch.setattr(Trainer, "_step", orig)
    newest = out / "checkpoints" / "step_000003"
    files = sorted(p for p in newest.rglob("*") if p.is_file() and (target in p.name if target != "model"
                                                                        else p.name.startswith(("model", "pytorch_model"))))
    assert files, sorted(p.name for p in newest.rglob("*"))
    _damage(files[0], how)
    capsys.readouterr()

    summary, resumed, _ = run(env, "ppo", out=out, cfg=cfg)
    said = capsys.readouterr()
    assert f"{newest} is damaged" in said.out + said.err and files[0].name in said.out + said.err
    assert summary["resumed_from_step"] == 2
    assert strip_timings(resumed) == strip_timings(straight)
    a, b = load_file(str(out_a / "policy" / "model.safetensors")), load_file(str(out / "policy" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_weights_stop_naming_step_and_verified_checkpoint(env, monkeypatch):
    """A NaN weight from step 3's update stops the run at step 3 before anything is saved; the damaged newest
    checkpoint (step 2) is named and never called 'last good'."""
    cfg = with_train(env, steps=4, save_every=1, keep_checkpoints=3)
    out = env["root"] / "nan_weights"
    orig = Trainer._update

    def poisoned(self, batch, step):
        res = orig(self, batch, step)
        if step == 3:
            with torch.no_grad():
                next(self.acc.unwrap_model(self.actor).parameters()).view(-1)[0] = float("nan")
            # and rot step 2's checkpoint on disk: it must not be called good
            _damage(next((self.ckpt_root / "step_000002").rglob("optimizer.bin")), "random")
        return res

    monkeypatch.setattr(Trainer, "_update", poisoned)
    with pytest.raises(TrainingDivergedError) as e:
        run(env, "ppo", out=out, cfg=cfg)
    msg = str(e.value)
    assert "non-finite weights (backbone." in msg and "after the update at step 3" in msg
    assert "The last good (verified) checkpoint is" in msg and msg.split("checkpoint is ")[1].startswith(
        str(out / "checkpoints" / "step_000001"))
    assert "step_000002 is damaged (optimizer.bin: SHA-256 differs" in msg
    assert not (out / "checkpoints" / "step_000003").exists()
    assert [json.loads(x)["step"] for x in open(out / "metrics.jsonl")] == [1, 2]


def test_nonfinite_logprobs_stop_the_run(env, monkeypatch):
    cfg = with_train(env, steps=3, save_every=0)
    out = env["root"] / "nan_logp"
    import mpo.train.trainer as tr

    orig = tr.score_batch

    def poisoned(batch, *a, **kw):
        sc = orig(batch, *a, **kw)
        sc.old_logp[0, 0] = float("nan")  # the first response token is always real
        return sc

    monkeypatch.setattr(tr, "score_batch", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"non-finite log-probs of the sampled tokens.*step 1.*No verified"):
        run(env, "grpo", out=out, cfg=cfg)


def test_second_trainer_on_a_run_folder_stops_at_once(env):
    cfg = with_train(env, steps=2)
    out = env["root"] / "locked"
    with RunLock(out):
        with pytest.raises(RunLockedError, match="another trainer"):
            run(env, "grpo", out=out, cfg=cfg)
        assert not (out / "metrics.jsonl").exists()
    _, rows, _ = run(env, "grpo", out=out, cfg=cfg)  # released: the run proceeds, one row per step
    assert [r["step"] for r in rows] == [1, 2]
