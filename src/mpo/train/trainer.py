"""The RL training loop shared by PPO, GRPO, DAPO, GSPO, MPO, TEMPO and MoT-G GRPO (one loop, so the comparison is
fair).

One iteration (:meth:`Trainer._step`) reads top to bottom:

1. **rollout** (``sampling.py``): draw prompts (seeded stream), sample G responses each, grade them; DAPO: overlong
   shaping + dynamic sampling; MoT-G GRPO: mixture-of-token rollouts (``mixture.py``).
2. **score** (``scoring.py``, no grad, one pass): the policy's log-probs of the realised tokens for all K
   predictors (``MTPModel`` with K = 1 for every method but MPO, so the code path is shared), entropy, per-predictor
   top-1 / rank; reference log-probs (only with a KL coefficient); critic values (PPO, MPO).
3. **advantages** (``methods.advantages``): GAE with the critic, or group-normalised scores (TEMPO: per token, with
   the prefix tree's TD term on the response tokens).
4. **update** (``update.py``): ``ppo_epochs`` passes of shuffled mini-batches of accumulated micro-batches, each
   micro-batch's loss assembled by ``loss.compose_loss``.
5. **log** (``metrics.py``): one JSON line per step in ``metrics.jsonl`` (docs/method.md §7).

Checkpoints (``checkpoint.py``) are written every ``save_every`` steps; a restarted run resumes from the last
complete one and continues bit for bit. A non-finite loss or gradient norm stops the run with
:class:`TrainingDivergedError`; nothing is saved after it, so the last checkpoint is the last good state.

Devices: ``accelerate`` starts the processes and does device placement, DDP / DeepSpeed wrapping, gradient
accumulation, backward, clipping, saving and metric reduction (collectives in ``dist.py``); with ``train.strategy``
fsdp the trainer shards the models itself with FSDP2 (``fsdp.py``). Weights are float32 masters, with bf16 autocast
(and bf16 gathered parameters under FSDP2) when the config asks for bfloat16 on CUDA.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from mpo import algos
from mpo.config import config_hash
from mpo.integrity import RunLock, nonfinite_parameters
from mpo.train import checkpoint, fsdp, methods, metrics, mixture, setup
from mpo.train.batch import Batch, PromptStream, load_train_records, prepare_prompts
from mpo.train.checkpoint import CKPT_PREFIX, COMPLETE_MARKER, Progress  # noqa: F401 - public
from mpo.train.dist import Dist
from mpo.train.errors import TrainingDivergedError, TrainSetupError
from mpo.train.sampling import Sampler, collect_batch, sub_seed  # noqa: F401 - public
from mpo.train.scoring import Scores, score_batch
from mpo.train.setup import Sizes, compute_sizes  # noqa: F401 - public
from mpo.train.update import ppo_update
from mpo.train.variants import resolve_variant

__all__ = ["Trainer", "TrainingDivergedError", "TrainSetupError", "train"]

# train-section keys that do not change what a step computes (left out of the checkpoint fingerprint)
_NOT_FINGERPRINTED = ("steps", "save_every", "keep_checkpoints", "keep_final_checkpoint", "tensorboard", "launcher")


class Trainer:
    """Build everything from a validated config, then :meth:`run`."""

    def __init__(self, cfg: dict, *, model: str, dataset: str, variant: str, base: str | Path,
                 data_root: str | Path, out: str | Path, mtp: str | Path | None = None, reward_fn=None):
        self.cfg, self.tcfg = cfg, cfg["train"]
        self.model_name, self.dataset, self.variant = model, dataset, variant
        self.spec = resolve_variant(cfg, variant)
        self.base, self.mtp_dir = Path(base), (Path(mtp) if mtp else None)
        self.data_root, self.out = Path(data_root), Path(out)
        self.seed = int(self.spec.get("seed", cfg["seed"]))  # a seed run (variant_seed<s>) carries its own
        self._custom_reward = reward_fn  # callable(texts, records) -> (rewards, correct); default: the graders
        self.ratio_weights = methods.mtp_weights_for(self.spec)  # w_0 .. w_{K-1} of the block ratio (Eq. 10)
        self.want_aux = self.spec["uses_mtp_modules"] and float(self.spec["mtp_aux_coef"]) > 0
        if self.spec["uses_mtp_modules"] and self.mtp_dir is None:
            raise TrainSetupError(f"variant '{variant}' (MPO, K={self.spec['K']}) needs the warmed-up MTP modules: "
                                  "pass --mtp <results>/models/<model>/mtp_k<K>")
        self.fingerprint = config_hash({"train": {k: v for k, v in self.tcfg.items() if k not in _NOT_FINGERPRINTED},
                                        "spec": self.spec, "model": model, "dataset": dataset, "seed": self.seed})
        self.ckpt_root = self.out / "checkpoints"
        self.metrics_path = self.out / "metrics.jsonl"
        self._setup()

    def _setup(self) -> None:
        """Accelerator, models and optimizers, data, rollout engine (``setup.py``), in a fixed (seeded) order."""
        from mpo.train.rewards import RewardFunction
        from mpo.utils import seed_everything

        t, spec = self.tcfg, self.spec
        self.strategy, self.fsdp = fsdp.strategy_for(self.cfg, self.model_name), fsdp.settings_of(self.cfg)
        acc, self.sizes, self.dtype = setup.make_accelerator(self.cfg, spec, self.strategy)
        if self.strategy == "fsdp" and acc.num_processes == 1:  # e.g. a one-GPU job, launched with plain python
            acc.print("train.strategy fsdp with one process: nothing to shard, training unsharded")
            self.strategy = "ddp"
        self.acc = acc
        self.dist = Dist(acc)
        self.device, self.world, self.rank = acc.device, acc.num_processes, acc.process_index
        seed_everything(self.seed)
        self.tokenizer = setup.load_tokenizer(self.base)
        actor = setup.build_actor(self.cfg, spec, acc, self.base, self.mtp_dir, self.variant)
        lr_lambda = setup.lr_lambda_for(t)
        self.actor, self.opt, sched = setup.wrap_trained(acc, actor, lambda m: setup.actor_optimizer(m, spec, t),
                                                         lr_lambda, self.strategy, self.fsdp)
        self.schedulers = [sched]
        self.critic = self.critic_opt = None
        if spec["critic"]:
            critic = setup.build_critic(spec, self.base, self.mtp_dir)
            self.critic, self.critic_opt, sched = setup.wrap_trained(
                acc, critic, lambda m: setup.adamw(m.parameters(), spec["critic_lr"], t), lr_lambda, self.strategy,
                self.fsdp)
            self.schedulers.append(sched)
        self.ref = setup.build_reference(self.base, acc.device, self.strategy, self.fsdp) if spec["needs_ref"] \
            else None

        family = self.cfg["models"][self.model_name]["family"]
        records = load_train_records(self.data_root, self.dataset)
        self.records, self.prompts_dropped = prepare_prompts(records, self.tokenizer, family, t["max_prompt_length"])
        kinds = {r["kind"] for r in self.records}
        if len(kinds) != 1:
            raise TrainSetupError(f"dataset {self.dataset} mixes task kinds {kinds}")
        self.stream = PromptStream(len(self.records), self.seed)
        self.progress = Progress(self.stream, self.schedulers, self.fingerprint)
        acc.register_for_checkpointing(self.progress)
        self.total_steps = setup.total_steps(t, len(self.records), self.sizes.prompts)

        self.reward_fn = self._custom_reward or RewardFunction(
            kinds.pop(), workers=t["grader_workers"], timeout=t["grader_timeout"], format_bonus=t["format_bonus"])
        self.engine = setup.build_engine(t, acc.unwrap_model(self.actor).backbone, self.tokenizer, base=self.base,
                                         seed=self.seed + self.rank, device=self.device, dtype=self.dtype,
                                         sharded=self.strategy == "fsdp")
        self.temperature = float(spec["temperature"])
        self.lp_temperature = self.temperature if self.temperature > 0 else 1.0
        self.mot = mixture.mot_setup(self.cfg, self.tokenizer, self.variant, self.world) \
            if spec["rollout"] == "mot" else None
        self.sampler = Sampler(self.engine, self.tokenizer, self.reward_fn, self.records, spec, t, self.seed,
                               self.rank, self.temperature, acc.autocast, self.mot.decode if self.mot else None)

    def check_finite(self, value: torch.Tensor, what: str, step: int) -> None:
        """Raise :class:`TrainingDivergedError` (naming the last verified checkpoint) unless ``value`` is finite."""
        if not torch.isfinite(value).all():
            self.diverged(f"non-finite {what} ({value.detach().float().flatten()[:8].cpu().tolist()})", step)

    def check_parameters(self, step: int, when: str) -> None:
        """Stop at step ``step`` if a weight of the actor or critic is NaN/inf (before it can be saved or sampled)."""
        bad = nonfinite_parameters(self.acc.unwrap_model(self.actor),
                                   self.acc.unwrap_model(self.critic) if self.critic is not None else None)
        if self.dist.any(bool(bad)):
            self.diverged(f"non-finite weights ({', '.join(bad) or 'on another process'}) {when}", step)

    def diverged(self, what: str, step: int) -> None:
        last, damaged = checkpoint.last_good_checkpoint(self.ckpt_root)
        raise TrainingDivergedError(
            f"{what} at step {step} of variant '{self.variant}': training stopped. "
            + (f"The last good (verified) checkpoint is {last} (rerunning the same command resumes from it)."
               if last else "No verified checkpoint was written before this step.")
            + (f" Skipped: {checkpoint.describe_damaged(damaged)}." if damaged else ""))

    # ------------------------------------------------------------------------------------------------ the loop
    def _rollout(self, step: int) -> tuple[Batch, dict]:
        batch, stats = collect_batch(self.sampler, self.stream, self.progress, self.dist, self.sizes, step,
                                     self.tcfg["dynamic_sampling_max_retries"])
        return batch.to(self.device), stats

    def _score(self, batch: Batch) -> Scores:
        """Old log-probs (all K), entropy, predictor stats, reference log-probs, values; stored in ``batch.resp``."""
        unwrap = self.acc.unwrap_model
        sc = score_batch(batch, unwrap(self.actor), ref=self.ref,
                         critic=unwrap(self.critic) if self.critic is not None else None, K=self.spec["K"],
                         micro=self.sizes.logprob_micro, temperature=self.lp_temperature, autocast=self.acc.autocast,
                         mot=self.mot)
        real = batch.resp["mask"].bool()
        self.check_finite(sc.old_logp[..., 0][real], "log-probs of the sampled tokens", self.progress.step + 1)
        if sc.ref_logp is not None:
            self.check_finite(sc.ref_logp[real], "reference log-probs", self.progress.step + 1)
        batch.resp["old_logp"] = sc.old_logp
        if sc.ref_logp is not None:
            batch.resp["ref_logp"] = sc.ref_logp
        if sc.values is not None:
            batch.resp["old_values"] = sc.values
        return sc

    def _advantages(self, batch: Batch, sc: Scores) -> dict:
        """Advantages (and the critic's returns) into ``batch.resp``; the reward-KL per token (or None)."""
        kl = algos.kl_penalty(sc.old_logp[..., 0], sc.ref_logp, self.tcfg["kl_estimator"]) \
            if sc.ref_logp is not None else None
        P, T = batch.prompt_len, batch.response_len
        adv = methods.advantages(self.spec, self.tcfg, scores=batch.row["scores"].to(self.device),
                                 mask=batch.resp["mask"], values=sc.values, kl=kl, whiten=self.dist.whiten,
                                 token_ids=batch.seq["input_ids"][:, P : P + T])
        batch.resp["adv"] = adv["advantages"]
        if sc.values is not None:
            batch.resp["returns"] = adv["returns"]
        return {"kl": kl, "returns": adv.get("returns")}

    def _update(self, batch: Batch, step: int) -> dict:
        return ppo_update(self, batch, step)

    def _step(self, step: int) -> dict:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        self.engine.sync_weights(self.acc.unwrap_model(self.actor).backbone)
        tok0, sec0 = self.engine.tokens_generated, self.engine.generate_seconds
        batch, ro = self._rollout(step)
        t1 = time.perf_counter()
        sc = self._score(batch)
        adv = self._advantages(batch, sc)
        t2 = time.perf_counter()
        upd = self._update(batch, step)
        self.check_parameters(step, "after the update")
        for s in self.schedulers:
            s.step()
        t3 = time.perf_counter()
        self.progress.samples_seen += int(self.dist.sum(batch.size))
        return self._log_row(step, batch, ro, sc, adv, upd, times=(t0, t1, t2, t3),
                             generated=(self.engine.tokens_generated - tok0, self.engine.generate_seconds - sec0))

    def _log_row(self, step, batch, ro, sc, adv, upd, times, generated) -> dict:
        """The step's metrics row (docs/method.md §7)."""
        mask, (t0, t1, t2, t3), (gen_tok, gen_sec) = batch.resp["mask"], times, generated
        row = {"step": step, "epoch": self.stream.epochs_done, "samples_seen": self.progress.samples_seen,
               "prompts_seen": self.progress.prompts_seen, **metrics.rollout_metrics(ro, batch, sc, self.dist),
               **upd, "lr": self.schedulers[0].get_last_lr()[0]}
        if self.critic is not None:
            row["critic_lr"] = self.schedulers[1].get_last_lr()[0]
            row.update(metrics.critic_metrics(sc, adv["returns"], mask, self.dist,
                                              self.acc.unwrap_model(self.critic).mixture_weights()))
        if adv["kl"] is not None:
            row["ref_kl"] = float(self.dist.gather_cat(adv["kl"][mask.bool()]).mean())
        row.update(metrics.predictor_metrics(sc, mask, self.spec["K"], self.dist))
        if self.spec["dynamic_sampling"]:
            row.update(metrics.dynamic_sampling_metrics(ro, self.dist))
        if self.mot is not None:
            row.update(mixture.metrics(batch, self.dist))
        row.update({"rollout_tokens_per_s": gen_tok / gen_sec if gen_sec > 0 else 0.0,
                    "time_rollout": t1 - t0, "time_old_logprob": t2 - t1, "time_update": t3 - t2,
                    "time_step": t3 - t0, "peak_mem_mb": self.dist.max(metrics.peak_memory_mb(self.device))})
        return row

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> dict:
        """Train to ``total_steps`` (resuming from the newest verified checkpoint), save the policy, summarize."""
        # one writer per run folder, for the trainer's lifetime: a second trainer (an orphan of a killed Snakemake,
        # a duplicate submission) stops here instead of interleaving metrics.jsonl and checkpoints
        lock = RunLock(self.out, name=".lock" if self.acc.is_main_process else f".lock.{self.rank}").acquire()
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> dict:
        from tqdm.auto import tqdm

        from mpo.utils import write_json

        acc, t = self.acc, self.tcfg
        wall0 = time.perf_counter()
        start = checkpoint.resume(acc, self.progress, self.ckpt_root, self.metrics_path)
        self.check_parameters(start + 1, "in the starting weights" + (f" (resumed from step {start})" if start else ""))
        writer, history = self._tensorboard(), []
        bar = tqdm(total=self.total_steps, initial=start, disable=not acc.is_main_process, desc=f"train {self.variant}")
        try:
            for step in range(start + 1, self.total_steps + 1):
                row = self._step(step)
                self.progress.step = step
                history.append(row)
                self._write_row(row, writer)
                bar.update(1)
                bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['response_length']:.0f}",
                                s=f"{row['time_step']:.1f}")
                periodic = t["save_every"] and step % t["save_every"] == 0 and step < self.total_steps
                if periodic or (step == self.total_steps and t["keep_final_checkpoint"]):
                    checkpoint.save_checkpoint(acc, self.ckpt_root, step, self.metrics_path, t["keep_checkpoints"])
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            self.close()
        checkpoint.save_final(acc, self.actor, self.tokenizer, self.out, save_modules=self.spec["uses_mtp_modules"],
                              variant=self.variant)
        if not t["keep_final_checkpoint"] and acc.is_main_process:
            shutil.rmtree(self.ckpt_root, ignore_errors=True)
        summary = self._summary(history, time.perf_counter() - wall0, start)
        if acc.is_main_process:
            write_json(self.out / "summary.json", summary)
        return summary

    def _tensorboard(self):
        if not (self.tcfg["tensorboard"] and self.acc.is_main_process):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tensorboard"))

    def _write_row(self, row: dict, writer) -> None:
        if not self.acc.is_main_process:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(k, v, row["step"])

    def _summary(self, history: list[dict], wall: float, start: int) -> dict:
        rows = [json.loads(ln) for ln in self.metrics_path.read_text().splitlines() if ln.strip()] \
            if self.metrics_path.exists() else history
        return {
            "status": "done", "model": self.model_name, "dataset": self.dataset, "variant": self.variant,
            "method": self.spec["method"], "spec": self.spec, "mtp_weights": self.ratio_weights.tolist(),
            "steps": self.total_steps, "resumed_from_step": start, "sizes": self.sizes.__dict__,
            "train_prompts": len(self.records), "prompts_dropped_too_long": self.prompts_dropped,
            "num_processes": self.world, "device": str(self.device), "engine": self.tcfg["engine"],
            "parameters": self.acc.unwrap_model(self.actor).num_parameters(), **metrics.summarize(rows),
            "wall_seconds_this_process": wall,
            "rollout_tokens_per_s": self.engine.tokens_per_second if self.engine else None,
            **({"mot": self.mot.summary()} if self.mot is not None else {}),
        }

    def close(self) -> None:
        if getattr(self, "reward_fn", None) is not None:
            if hasattr(self.reward_fn, "close"):
                self.reward_fn.close()
            self.reward_fn = None
        if getattr(self, "engine", None) is not None and self.tcfg["engine"] != "hf":
            self.engine.close()


def train(cfg: dict, **kw) -> dict:
    """Build a :class:`Trainer` and run it (see ``mpo.train.__main__`` for the arguments)."""
    return Trainer(cfg, **kw).run()
