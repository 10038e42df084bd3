"""Bit-identity safety net for mpo.mtp: the smoke config's tiny model with K = 3 MTP modules, a fixed batch and
fixed upstream gradients, forward + backward in each gradient regime ("hidden" fused / two-pass / without the
auxiliary CE, "detach", "joint"; own head copies and a shared LM head), the no-grad statistics pass,
``mtp_ce_loss`` and ``calibrate_input_norms``. Every output and every parameter gradient is hashed (sha256 of its
bytes) and compared with tests/fixtures/mtp_bitident.json, written by the code before the mtp package split.

The hashes are exact, so they only mean something on the torch build and CPU kernel family that wrote them: the
test skips (naming both) when either differs. Regenerate (only when a numerical change is intended) with
``PYTHONPATH=src OMP_NUM_THREADS=1 python tests/test_mtp_bitident.py``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "mtp_bitident.json"
K = 3

# name -> (forward kwargs, model settings); every case is one forward (+ backward when grad is on)
CASES: dict[str, dict] = {
    "hidden_fused": {"fwd": {"mtp_grad": "hidden", "mtp_ce": True, "return_entropy": True, "temperature": 0.7}},
    "hidden_two_pass": {"fwd": {"mtp_grad": "hidden", "mtp_ce": True, "return_entropy": True}, "fuse": False},
    "hidden_no_ce": {"fwd": {"mtp_grad": "hidden"}},
    "hidden_no_ckpt": {"fwd": {"mtp_grad": "hidden", "mtp_ce": True}, "checkpoint_min_mb": 1e9},
    "detach": {"fwd": {"mtp_grad": "detach", "mtp_ce": True, "return_entropy": True}},
    "detach_no_ce": {"fwd": {"mtp_grad": "detach"}},
    "joint": {"fwd": {"mtp_grad": "joint", "mtp_ce": True, "return_entropy": True}},
    "shared_hidden": {"fwd": {"mtp_grad": "hidden", "mtp_ce": True}, "share_head": True},
    "shared_hidden_two_pass": {"fwd": {"mtp_grad": "hidden", "mtp_ce": True}, "share_head": True, "fuse": False},
    "shared_joint": {"fwd": {"mtp_grad": "joint", "mtp_ce": True}, "share_head": True},
    "nograd_stats": {"fwd": {"return_stats": True, "return_entropy": True, "return_hidden": True, "mtp_ce": True},
                     "no_grad": True},
    "logprob_mask": {"fwd": {"mtp_grad": "hidden"}, "logprob_mask": True},
}


def _digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


def _env() -> dict:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def _model(model_dir: Path, *, share_head=False, checkpoint_min_mb=0.0, fuse=True):
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel

    backbone = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    mm = MTPModel.from_backbone(backbone, K, chunk_size=16, checkpoint_min_mb=checkpoint_min_mb,
                                share_head=share_head)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():  # modules that are no identity copy of the last layer, nor of each other
        for p in mm.mtp.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    mm.fuse_module_passes = fuse
    return mm


def _batch(vocab: int):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, vocab, (3, 20), generator=g)
    am = torch.ones_like(ids)
    am[0, 15:] = 0  # right padding
    am[1, :5] = 0  # left padding
    am[2, :3] = 0  # both
    am[2, 17:] = 0
    want = torch.zeros_like(am)
    want[:, 8:] = 1
    return ids, am, want


def _grads(mm, prefix: str) -> dict[str, str]:
    out = {}
    for name, p in mm.named_parameters():
        out[f"{prefix}grad.{name}"] = _digest(p.grad) if p.grad is not None else "none"
    mm.zero_grad(set_to_none=True)
    return out


def _run_case(model_dir: Path, spec: dict) -> dict[str, str]:
    torch.manual_seed(0)
    mm = _model(model_dir, share_head=spec.get("share_head", False),
                checkpoint_min_mb=spec.get("checkpoint_min_mb", 0.0), fuse=spec.get("fuse", True))
    ids, am, want = _batch(mm.backbone.config.vocab_size)
    kw = dict(spec["fwd"])
    if spec.get("logprob_mask"):
        kw["logprob_mask"] = want
    if spec.get("no_grad"):
        with torch.no_grad():
            out = mm(ids, am, **kw)
    else:
        out = mm(ids, am, **kw)
    res = {f"out.{k}": _digest(v) for k, v in out.to_dict().items() if isinstance(v, torch.Tensor)}
    if spec.get("no_grad"):
        return res
    g = torch.Generator().manual_seed(7)
    loss = (out.logprobs * torch.randn(out.logprobs.shape, generator=g)).sum()
    if out.entropy is not None:
        loss = loss + 0.1 * (out.entropy * torch.randn(out.entropy.shape, generator=g)).sum()
    if out.mtp_ce is not None:
        loss = loss + 0.3 * out.mtp_ce
    loss.backward()
    res.update(_grads(mm, ""))
    return res


def _run_ce_loss_and_calibration(model_dir: Path) -> dict[str, str]:
    torch.manual_seed(0)
    mm = _model(model_dir)
    ids, am, want = _batch(mm.backbone.config.vocab_size)
    loss, per = mm.mtp_ce_loss(ids, am, loss_mask=want, lambdas=[0.9, 0.4], return_per_module=True)
    loss.backward()
    res = {"loss": _digest(loss), "per_module": _digest(per), **_grads(mm, "")}
    scales = mm.calibrate_input_norms(ids, am)
    res["scales"] = _digest(torch.tensor(scales, dtype=torch.float64))
    with torch.no_grad():
        res["after_calibration.logprobs"] = _digest(mm(ids, am).logprobs)
    return res


def compute_all(model_dir: Path) -> dict[str, dict[str, str]]:
    torch.set_num_threads(1)
    res = {name: _run_case(model_dir, spec) for name, spec in CASES.items()}
    res["mtp_ce_loss_and_calibration"] = _run_ce_loss_and_calibration(model_dir)
    return res


def test_mtp_outputs_and_gradients_bit_identical(smoke_model_dir):
    expected = json.loads(FIXTURE.read_text())
    env = _env()
    if expected["env"] != env:
        pytest.skip(f"fixture written under {expected['env']}, this is {env}: exact hashes not comparable")
    got = compute_all(smoke_model_dir)
    assert got.keys() == expected["cases"].keys()
    bad = [f"{case}/{k}" for case, hs in expected["cases"].items() for k, h in hs.items() if got[case].get(k) != h]
    extra = [f"{case}/{k}" for case, hs in got.items() for k in hs if k not in expected["cases"][case]]
    assert not bad and not extra, f"{len(bad)} hashes differ: {bad[:20]}; unexpected entries: {extra[:20]}"


def _write_fixture() -> None:
    from mpo.config import load_config
    from mpo.model_prep import prepare_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "tiny-llama"
        prepare_model(load_config(REPO / "config" / "smoke.yaml"), "tiny-llama", model_dir)
        cases = compute_all(model_dir)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps({"env": _env(), "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({sum(len(v) for v in cases.values())} hashes)", file=sys.stderr)


if __name__ == "__main__":
    _write_fixture()
