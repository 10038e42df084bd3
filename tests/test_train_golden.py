"""Golden hashes: 2 smoke-config steps of PPO, GRPO, DAPO and MPO (K = 3) end in exactly the stored parameters and
metrics rows (timings excluded). Refactors of the trainer must keep these bit for bit; a deliberate behaviour change
regenerates them (``python tests/test_train_golden.py --regenerate`` or ``MPO_REGENERATE_GOLDEN=1 pytest ...``) in
its own commit that says why."""

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import TIMING_METRICS as UNSTABLE
from conftest import make_trainer

FIXTURE = Path(__file__).parent / "fixtures" / "golden_train.json"
VARIANTS = ("ppo", "grpo", "dapo", "mpo_k3")


def _hash_state(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def golden_of(env: dict, variant: str) -> dict:
    trainer = make_trainer(env, variant, out=env["root"] / "golden" / variant)
    trainer.run()
    rows = [json.loads(x) for x in open(trainer.metrics_path)]
    stable = [{k: v for k, v in r.items() if k not in UNSTABLE} for r in rows]
    out = {"policy": _hash_state(trainer.acc.unwrap_model(trainer.actor).state_dict()),
           "metrics": hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest(),
           "final_policy_loss": rows[-1]["policy_loss"]}
    if trainer.critic is not None:
        out["critic"] = _hash_state(trainer.acc.unwrap_model(trainer.critic).state_dict())
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_is_bit_identical_to_golden(train_env, variant):
    got = golden_of(train_env, variant)
    if os.environ.get("MPO_REGENERATE_GOLDEN"):
        stored = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}
        stored[variant] = got
        FIXTURE.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        pytest.skip("golden regenerated")
    want = json.loads(FIXTURE.read_text())[variant]
    assert got == want, f"{variant}: training changed (regenerate the golden hashes only for an intended change)"


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        os.environ["MPO_REGENERATE_GOLDEN"] = "1"
        sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
    print(__doc__)
