"""Checkpoints: ``accelerate`` ``save_state`` (models, optimizers, RNG states) plus :class:`Progress` (data position,
schedulers, counters); a restarted run resumes from the newest *verified* one and continues bit for bit.

A checkpoint is complete when its manifest (``COMPLETE``: the step and a SHA-256 per file, written last and
atomically, :mod:`mpo.integrity`) exists; it is *good* only when every file still matches the manifest. Resume walks
the checkpoints newest first, names each damaged one it skips, and loads the first that verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mpo.integrity import MANIFEST, newest_verified, write_manifest
from mpo.train.batch import PromptStream
from mpo.train.errors import TrainSetupError

CKPT_PREFIX = "step_"
COMPLETE_MARKER = MANIFEST  # a checkpoint is complete once its manifest exists


class Progress:
    """Everything a checkpoint holds besides models, optimizers and RNG states (registered with accelerate)."""

    def __init__(self, stream: PromptStream, schedulers: list, fingerprint: str):
        self.stream, self.schedulers, self.fingerprint = stream, schedulers, fingerprint
        self.step = 0
        self.samples_seen = 0
        self.prompts_seen = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "samples_seen": self.samples_seen, "prompts_seen": self.prompts_seen,
                "stream": self.stream.state_dict(), "schedulers": [s.state_dict() for s in self.schedulers],
                "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise TrainSetupError(
                "the checkpoint was written by a run with a different configuration (train section, variant, model or "
                "dataset); delete the output directory's checkpoints/ to start over"
            )
        self.step, self.samples_seen, self.prompts_seen = state["step"], state["samples_seen"], state["prompts_seen"]
        self.stream.load_state_dict(state["stream"])
        for s, st in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(st)


def last_good_checkpoint(root: Path) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """The newest checkpoint under ``root`` whose files match its manifest, and the damaged ones newer than it."""
    return newest_verified(list(root.glob(f"{CKPT_PREFIX}*"))) if root.is_dir() else (None, [])


def describe_damaged(damaged: list[tuple[Path, list[str]]]) -> str:
    return "; ".join(f"{d} is damaged ({', '.join(problems[:3])})" for d, problems in damaged)


def save_checkpoint(acc, root: Path, step: int, metrics_path: Path, keep: int) -> None:
    """``<root>/step_<step>`` (+ the metrics so far and a COMPLETE marker); keeps the newest ``keep`` complete ones."""
    d = root / f"{CKPT_PREFIX}{step:06d}"
    acc.wait_for_everyone()
    acc.save_state(str(d), safe_serialization=False)
    acc.wait_for_everyone()
    if acc.is_main_process:
        # the metrics so far travel with the checkpoint (Snakemake deletes a failed job's metrics.jsonl)
        if metrics_path.exists():
            shutil.copyfile(metrics_path, d / "metrics.jsonl")
        write_manifest(d, step=step)  # last: a checkpoint without it (killed mid-save) is never loaded
        done = sorted(p for p in root.glob(f"{CKPT_PREFIX}*") if p != d)
        complete = [p for p in done if (p / COMPLETE_MARKER).is_file()]
        for p in [p for p in done if p not in complete] + complete[: max(0, len(complete) + 1 - keep)]:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()


def resume(acc, progress: Progress, root: Path, metrics_path: Path) -> int:
    """Load the newest verified checkpoint under ``root`` (restoring its metrics lines); the step reached (0: none).

    Damaged checkpoints (a file changed, truncated or missing since its manifest was written) are named and skipped."""
    last, damaged = last_good_checkpoint(root)
    if damaged:
        acc.print(f"WARNING: {describe_damaged(damaged)}; "
                  + (f"resuming from {last}, the newest intact checkpoint" if last else "no intact checkpoint is left: "
                     "training starts from step 0"))
    if last is None:
        if acc.is_main_process and metrics_path.exists():
            metrics_path.unlink()
        return 0
    acc.load_state(str(last))
    step = progress.step
    if acc.is_main_process:
        saved = last / "metrics.jsonl"
        lines = [ln for ln in saved.read_text().splitlines() if ln.strip()] if saved.exists() else []
        keep = [ln for ln in lines if json.loads(ln)["step"] <= step]
        metrics_path.write_text("".join(ln + "\n" for ln in keep))
    acc.print(f"resumed from {last} (step {step})")
    return step


def save_final(acc, actor, tokenizer, out: Path, *, save_modules: bool, variant: str) -> None:
    """The trained backbone as a plain HF directory ``<out>/policy`` (+ tokenizer); MPO: its modules in ``<out>/mtp``."""
    from mpo.train import fsdp

    acc.wait_for_everyone()
    sharded = fsdp.is_sharded(actor)
    state = fsdp.full_state_dict(actor) if sharded else acc.get_state_dict(actor)  # fsdp: gathered to rank 0
    if acc.is_main_process:
        unwrapped = acc.unwrap_model(actor)
        bb = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        unwrapped.backbone.save_pretrained(out / "policy", state_dict=bb, safe_serialization=True)
        tokenizer.save_pretrained(out / "policy")
        if save_modules:
            mtp = {k[len("mtp."):]: v for k, v in state.items() if k.startswith("mtp.")} if sharded else None
            unwrapped.save_modules(out / "mtp", extra_config={"trained_by": "mpo.train", "variant": variant},
                                   state_dict=mtp)
    acc.wait_for_everyone()
