"""Train the smoke model for tests/test_dist.py, in one process or under ``torchrun`` (gloo on CPU), and dump what the
test compares: every metrics row and the full (gathered) final parameters of the actor and the critic.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_harness.py \\
        --env ENV_DIR --out OUT_DIR --strategy fsdp --variants ppo,mpo_k3

``ENV_DIR`` holds ``base/`` (the smoke model), ``mtp_k3/`` (K = 3 modules) and ``data/`` (the train prompts), as
written by :func:`write_env`. Rollouts are drawn per prompt (:class:`PerPromptEngine`), so every world size samples
the same global batch, and an update is one mini-batch of the whole batch (see :func:`env_of`); everything after the
rollout (scoring, advantages with pooled whitening, the sharded update,
metrics) is the trainer's own code.
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import REPO, TRAIN_TEST_VARIANTS, make_trainer  # noqa: E402


class PerPromptEngine:
    """Each prompt's G responses come from their own generate call, seeded by the call number and the prompt's
    tokens: independent of which process draws the prompt and of the other prompts in its batch."""

    def __init__(self, inner, progress):
        self.inner, self.eos_ids, self.progress = inner, inner.eos_ids, progress

    def generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p=1.0, seed=None):
        from mpo.train.sampling import sub_seed

        step = self.progress.step  # steps done (restored on resume)
        return [self.inner.generate([p], n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    seed=sub_seed(11, step, zlib.crc32(repr(list(p)).encode())))[0]
                for p in prompt_ids]


def write_env(root: Path, base: Path) -> dict:
    """The harness's inputs under ``root`` (the smoke model ``base`` is linked, not copied)."""
    from transformers import AutoModelForCausalLM

    from conftest import write_train_data
    from mpo.mtp import MTPModel

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "base").exists():
        (root / "base").symlink_to(base)
    MTPModel.from_backbone(AutoModelForCausalLM.from_pretrained(base), 3).save_modules(root / "mtp_k3")
    write_train_data(root / "data")
    return env_of(root, "ddp")


def env_of(root: Path, strategy: str) -> dict:
    from mpo.config import load_config

    cfg = load_config(REPO / "config" / "smoke.yaml")
    cfg["variants"].update(TRAIN_TEST_VARIANTS)
    cfg["train"]["strategy"] = {"tiny-llama": strategy}
    # one mini-batch per update: a process shuffles and splits only its own rows into mini-batches, so with several
    # mini-batches N processes group the rows differently from one process (the same estimator, another partition)
    cfg["train"]["mini_batch_size"] = cfg["train"]["batch_size"]
    return {"root": root, "data": root / "data", "mtp": root / "mtp_k3", "cfg": cfg, "base": root / "base"}


def full_params(model) -> dict:
    from mpo.train import fsdp

    if fsdp.is_sharded(model):
        return fsdp.full_state_dict(model)  # a collective: every rank calls it, rank 0 gets the tensors
    model = getattr(model, "module", model)  # DDP
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train_and_dump(env: dict, variant: str, out: Path, name: str | None = None, steps: int | None = None) -> dict:
    """Train ``variant`` into ``out/name`` (``steps``: stop there and keep the final checkpoint, which a later call
    with the same name resumes from); returns {"rows", "actor", "critic"} (rank 0; empty tensors on other ranks)."""
    import copy
    import json

    cfg = copy.deepcopy(env["cfg"])
    if steps is not None:
        cfg["train"].update(steps=steps, keep_final_checkpoint=True)
    tr = make_trainer(env, variant, out=out / (name or variant), cfg=cfg)
    tr.sampler.engine = PerPromptEngine(tr.engine, tr.progress)
    summary = tr.run()
    rows = [json.loads(x) for x in open(tr.metrics_path)] if tr.acc.is_main_process else []
    return {"rows": rows, "actor": full_params(tr.actor),
            "critic": full_params(tr.critic) if tr.critic is not None else None, "world": tr.world,
            "strategy": tr.strategy, "resumed_from": summary["resumed_from_step"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--strategy", default="fsdp", choices=["ddp", "fsdp"])
    ap.add_argument("--variants", default="ppo,mpo_k3")
    ap.add_argument("--resume", default=None, help="also train this variant 1 step, then resume it for the 2nd: "
                    "<variant>_resumed.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    env = env_of(args.env, args.strategy)
    runs = [(v, v, None) for v in args.variants.split(",")]
    if args.resume:
        runs += [(args.resume, f"{args.resume}_resumed", 1), (args.resume, f"{args.resume}_resumed", None)]
    for variant, name, steps in runs:
        got = train_and_dump(env, variant, args.out, name, steps)
        if int(os.environ.get("RANK", "0")) == 0:
            torch.save(got, args.out / f"{name}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
