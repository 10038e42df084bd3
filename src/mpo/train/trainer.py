"""The RL training loop shared by PPO, GRPO, DAPO, GSPO and MPO (one loop, so the comparison is fair).

One iteration (``Trainer._step``):

1. **rollout**: draw prompts (seeded stream), sample G responses each with the rollout engine (``mpo.rollout``;
   seeded per step, so a resumed run samples the same), grade them (``rewards.py``; graders' worker pools),
   DAPO: overlong shaping + dynamic sampling (drop all-equal groups, draw more prompts until the batch is full or
   ``dynamic_sampling_max_retries`` extra rounds were spent, then fill with dropped groups).
2. **old log-probs** (no grad, one pass): the policy's log-probs of the realised tokens for all K predictors
   (backbone and MTP modules; ``MTPModel`` with K = 1 for every method but MPO, so the code path is shared), the
   entropy and per-predictor top-1 / rank of the realised token; reference log-probs (only when a KL coefficient is
   non-zero); critic values (PPO, MPO); then advantages (``methods.advantages``).
3. **update**: ``ppo_epochs`` passes of shuffled mini-batches; each mini-batch is ``accum`` micro-batches of
   forward + backward (losses scaled so that the aggregation is exact over the whole mini-batch and across
   processes), then gradient clipping (backbone, MTP modules and critic separately), a finiteness check and one
   optimizer step per model.

Every step appends one JSON line to ``metrics.jsonl`` (METHOD.md section 7). Checkpoints (``accelerate``
``save_state``: models, optimizers, RNG states, plus the data position, schedulers and counters) are written every
``save_every`` steps; a restarted run resumes from the last complete one and continues bit for bit. A non-finite
loss or gradient norm stops the run with :class:`TrainingDivergedError`; nothing is saved after it, so the last
checkpoint is the last good state.

Devices: everything goes through ``accelerate`` (device placement, DDP / FSDP / DeepSpeed wrapping, `accumulate` for
gradient accumulation, backward, clipping, saving, metric reduction); weights are float32 masters, with bf16
autocast when the config asks for bfloat16 on CUDA.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mpo import algos
from mpo.config import config_hash
from mpo.train import methods
from mpo.train.batch import Batch, PromptStream, collate, load_train_records, micro_batches, prepare_prompts
from mpo.train.variants import resolve_variant

CKPT_PREFIX = "step_"
COMPLETE_MARKER = "COMPLETE"


class TrainingDivergedError(RuntimeError):
    """A loss or gradient norm became NaN / inf."""


class TrainSetupError(ValueError):
    """Inconsistent batch sizes, missing MTP modules, ..."""


def sub_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (numpy SeedSequence): per step / round / process streams."""
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(1)[0]) & 0x7FFFFFFF


@dataclass
class Sizes:
    """Batch sizes in responses unless named otherwise; ``*_local`` per process."""

    prompts: int
    responses: int
    prompts_local: int
    responses_local: int
    mini_local: int
    micro: int
    accum: int
    n_mini: int
    logprob_micro: int


def compute_sizes(tcfg: dict, spec: dict, world: int) -> Sizes:
    G = spec["group_size"]
    if tcfg["batch_unit"] == "responses":
        responses, mini = tcfg["batch_size"], tcfg["mini_batch_size"]
        if responses % G:
            raise TrainSetupError(f"train.batch_size={responses} responses is not a multiple of group_size={G}")
        prompts = responses // G
    else:
        prompts, responses, mini = tcfg["batch_size"], tcfg["batch_size"] * G, tcfg["mini_batch_size"] * G
    if prompts % world:
        raise TrainSetupError(f"{prompts} prompts per step do not split over {world} processes")
    if responses % mini:
        raise TrainSetupError(f"train.mini_batch_size ({mini} responses) does not divide the batch ({responses})")
    if mini % world:
        raise TrainSetupError(f"mini batch of {mini} responses does not split over {world} processes")
    mini_local, micro = mini // world, tcfg["micro_batch_size"]
    if mini_local % micro:
        raise TrainSetupError(f"train.micro_batch_size={micro} does not divide the per-process mini batch {mini_local}")
    return Sizes(prompts=prompts, responses=responses, prompts_local=prompts // world,
                 responses_local=responses // world, mini_local=mini_local, micro=micro, accum=mini_local // micro,
                 n_mini=responses // mini, logprob_micro=tcfg["logprob_micro_batch_size"] or micro)


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


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def latest_checkpoint(root: Path) -> Path | None:
    done = sorted(p for p in root.glob(f"{CKPT_PREFIX}*") if (p / COMPLETE_MARKER).is_file())
    return done[-1] if done else None


class Trainer:
    """Build everything from a validated config, then :meth:`run`."""

    def __init__(self, cfg: dict, *, model: str, dataset: str, variant: str, base: str | Path,
                 data_root: str | Path, out: str | Path, mtp: str | Path | None = None, reward_fn=None):
        self.cfg, self.tcfg = cfg, cfg["train"]
        self.model_name, self.dataset, self.variant = model, dataset, variant
        self.spec = resolve_variant(cfg, variant)
        self.base, self.mtp_dir = Path(base), (Path(mtp) if mtp else None)
        self.data_root, self.out = Path(data_root), Path(out)
        self.seed = int(cfg["seed"])
        self._custom_reward = reward_fn  # callable(texts, records) -> (rewards, correct); default: the graders
        self.weights = methods.mtp_weights_for(self.spec)
        if self.spec["uses_mtp_modules"] and self.mtp_dir is None:
            raise TrainSetupError(f"variant '{variant}' (MPO, K={self.spec['K']}) needs the warmed-up MTP modules: "
                                  "pass --mtp <results>/models/<model>/mtp_k<K>")
        self.fingerprint = config_hash({"train": {k: v for k, v in self.tcfg.items() if k not in ("steps", "save_every",
                                        "keep_checkpoints", "keep_final_checkpoint", "tensorboard", "launcher")},
                                        "spec": self.spec, "model": model, "dataset": dataset, "seed": self.seed})
        self._setup()

    # ------------------------------------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from accelerate import Accelerator, PartialState
        from accelerate.utils import DistributedDataParallelKwargs, DistributedType
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mpo.mtp import MTPModel
        from mpo.rollout import make_engine
        from mpo.train.critic import Critic
        from mpo.train.rewards import RewardFunction
        from mpo.utils import resolve_device, resolve_dtype, seed_everything

        device = resolve_device(self.cfg["device"])
        self.dtype = resolve_dtype(self.cfg["dtype"], device)
        mixed = "bf16" if (device == "cuda" and self.dtype == torch.bfloat16) else (
            "fp16" if device == "cuda" and self.dtype == torch.float16 else "no")
        self.sizes = compute_sizes(self.tcfg, self.spec, PartialState(cpu=device == "cpu").num_processes)
        self.acc = acc = Accelerator(cpu=device == "cpu", mixed_precision=mixed,
                                     gradient_accumulation_steps=self.sizes.accum,
                                     kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.device, self.world, self.rank = acc.device, acc.num_processes, acc.process_index
        if acc.distributed_type == DistributedType.DEEPSPEED and self.spec["critic"]:
            raise TrainSetupError(
                "DeepSpeed needs one engine per trained model; the critic methods (PPO, MPO with GAE) train two. "
                "Use config/accelerate/ddp.yaml or fsdp.yaml for them (GRPO, DAPO, GSPO run under DeepSpeed)."
            )
        seed_everything(self.seed)
        t = self.tcfg

        self.tokenizer = AutoTokenizer.from_pretrained(self.base)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        load = lambda: AutoModelForCausalLM.from_pretrained(self.base, dtype=torch.float32)  # noqa: E731
        backbone = load()
        if t["gradient_checkpointing"]:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.spec["uses_mtp_modules"]:
            actor = MTPModel.load(backbone, self.mtp_dir)
            if actor.K != self.spec["K"]:
                raise TrainSetupError(f"{self.mtp_dir} holds K={actor.K} modules, variant '{self.variant}' wants "
                                      f"K={self.spec['K']}")
        else:
            actor = MTPModel.from_backbone(backbone, 1)
        # PPO and MPO share the log-prob code, including its chunking / checkpointing settings (config `mtp`)
        actor.chunk_size = int(self.cfg["mtp"]["logit_chunk"])
        actor.checkpoint_min_mb = float(self.cfg["mtp"].get("checkpoint_min_mb", 0.0))
        # one module-chain forward for the policy terms and the auxiliary CE (mpo.mtp._RoutedModules); sharded
        # engines gather parameters per module forward through their own hooks: keep the two plain passes there
        actor.fuse_module_passes = acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        bb_params = list(actor.backbone.parameters())
        mtp_params = list(actor.mtp.parameters())
        groups = [{"params": bb_params, "lr": self.spec["lr"]}]
        if mtp_params:
            groups.append({"params": mtp_params, "lr": t["mtp_lr"] or self.spec["lr"]})
        # fused AdamW (train.adamw_fused, default on: one in-place kernel per tensor, no param-sized temporaries)
        fused = {"fused": True} if t["adamw_fused"] else {}
        opt = torch.optim.AdamW(groups, lr=self.spec["lr"], betas=tuple(t["betas"]), weight_decay=t["weight_decay"],
                                **fused)
        warm = max(int(t["lr_warmup_steps"]), 0)
        lr_lambda = lambda s: min(1.0, (s + 1) / warm) if warm else 1.0  # noqa: E731
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)]
        self.actor, self.opt = acc.prepare(actor, opt)

        self.critic = self.critic_opt = None
        if self.spec["critic"]:
            critic = Critic(load(), str(self.mtp_dir) if self.spec["value_heads"] else None)
            copt = torch.optim.AdamW(critic.parameters(), lr=self.spec["critic_lr"], betas=tuple(t["betas"]), **fused,
                                     weight_decay=t["weight_decay"])
            self.schedulers.append(torch.optim.lr_scheduler.LambdaLR(copt, lr_lambda))
            self.critic, self.critic_opt = acc.prepare(critic, copt)

        self.ref = None
        if self.spec["needs_ref"]:
            ref = MTPModel.from_backbone(load(), 1)  # frozen initial policy; not in checkpoints (never changes)
            ref.requires_grad_(False)
            self.ref = ref.eval().to(acc.device)

        # data
        family = self.cfg["models"][self.model_name]["family"]
        records = load_train_records(self.data_root, self.dataset)
        self.records, self.prompts_dropped = prepare_prompts(records, self.tokenizer, family, t["max_prompt_length"])
        kinds = {r["kind"] for r in self.records}
        if len(kinds) != 1:
            raise TrainSetupError(f"dataset {self.dataset} mixes task kinds {kinds}")
        self.stream = PromptStream(len(self.records), self.seed)
        self.progress = Progress(self.stream, self.schedulers, self.fingerprint)
        acc.register_for_checkpointing(self.progress)
        per_epoch = math.ceil(len(self.records) / self.sizes.prompts)
        by_epochs = math.ceil(t["epochs"] * per_epoch) if t["epochs"] else None
        self.total_steps = min(x for x in (t["steps"], by_epochs) if x is not None) if (t["steps"] or by_epochs) else 1

        self.reward_fn = self._custom_reward or RewardFunction(
            kinds.pop(), workers=t["grader_workers"], timeout=t["grader_timeout"], format_bonus=t["format_bonus"])
        unwrapped = acc.unwrap_model(self.actor).backbone
        if t["engine"] == "hf":
            engine_kw = {"batch_size": t["generation_batch_size"]}
        else:
            engine_kw = {"model_dir": str(self.base), "seed": self.seed + self.rank,
                         "gpu_memory_utilization": t["vllm"]["gpu_memory_utilization"],
                         "enable_sleep_mode": t["vllm"]["enable_sleep_mode"],
                         "max_model_len": t["vllm"]["max_model_len"] or (t["max_prompt_length"] + t["max_response_length"])}
        self.engine = make_engine(t["engine"], unwrapped, self.tokenizer, device=self.device, dtype=self.dtype,
                                  **engine_kw)
        self.temperature = float(self.spec["temperature"])
        self.lp_temperature = self.temperature if self.temperature > 0 else 1.0
        self.ckpt_root = self.out / "checkpoints"
        self.metrics_path = self.out / "metrics.jsonl"

    # ------------------------------------------------------------------------------------------------ helpers
    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(x, reduction="sum") if self.world > 1 else x

    def _any(self, flag: bool) -> bool:
        return bool(self._reduce(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def _gather_cat(self, v: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor over processes (lengths may differ)."""
        if self.world == 1:
            return v
        n = self.acc.gather(torch.tensor([v.numel()], device=v.device))
        padded = self.acc.gather(self.acc.pad_across_processes(v, dim=0)).view(self.world, -1)
        return torch.cat([padded[i, : int(n[i])] for i in range(self.world)])

    def _whiten(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``algos.masked_whiten`` with statistics pooled over every process's tokens."""
        if self.world == 1:
            return algos.masked_whiten(x, mask)
        pooled = self._gather_cat(x[mask.bool()])
        ones = torch.ones_like(pooled, dtype=torch.bool)
        mean, var = algos.masked_mean(pooled, ones), algos.masked_var(pooled, ones)
        return torch.where(mask.bool(), (x - mean) * torch.rsqrt(var + 1e-8), torch.zeros_like(x))

    def _check_finite(self, value: torch.Tensor, what: str, step: int) -> None:
        if not torch.isfinite(value).all():
            last = latest_checkpoint(self.ckpt_root)
            raise TrainingDivergedError(
                f"non-finite {what} ({value.detach().float().cpu().tolist()}) at step {step} of variant "
                f"'{self.variant}': training stopped. "
                + (f"The last good checkpoint is {last} (rerunning the same command resumes from it)."
                   if last else "No checkpoint was written before this step.")
            )

    # ------------------------------------------------------------------------------------------------ rollout
    def _sample_groups(self, local: list[int], step: int, round_: int) -> list[dict]:
        t, G = self.tcfg, self.spec["group_size"]
        recs = [self.records[i] for i in local]
        with self.acc.autocast():
            responses = self.engine.generate(
                [r["prompt_ids"] for r in recs], n=G, max_new_tokens=t["max_response_length"],
                temperature=self.temperature, top_p=t["top_p"], seed=sub_seed(self.seed, step, round_, self.rank),
            )
        texts = [[self.tokenizer.decode(x, skip_special_tokens=True) for x in group] for group in responses]
        flat_texts = [x for g in texts for x in g]
        flat_recs = [r for r in recs for _ in range(G)]
        scores, correct = self.reward_fn(flat_texts, flat_recs) if flat_texts else ([], [])
        scores = torch.tensor(scores, dtype=torch.float32)
        lengths = torch.tensor([len(x) for g in responses for x in g], dtype=torch.float32)
        if self.spec["overlong_shaping"]:
            buf = t["overlong_buffer"] if t["overlong_buffer"] is not None else t["max_response_length"] // 4
            scores = scores + algos.overlong_penalty(lengths, t["max_response_length"], buf, t["overlong_factor"])
        eos = set(self.engine.eos_ids)
        groups = []
        for i, rec in enumerate(recs):
            sl = slice(i * G, (i + 1) * G)
            groups.append({"prompt_ids": rec["prompt_ids"], "responses": responses[i], "scores": scores[sl],
                           "correct": torch.tensor(correct[sl], dtype=torch.float32), "lengths": lengths[sl],
                           "truncated": torch.tensor([float(not (x and x[-1] in eos)) for x in responses[i]])})
        return groups

    def _rollout(self, step: int) -> tuple[Batch, dict]:
        sz, G = self.sizes, self.spec["group_size"]
        need = sz.prompts_local
        kept, dropped, first = [], [], None
        rounds = 0
        while True:
            idx = self.stream.take(sz.prompts)
            self.progress.prompts_seen += sz.prompts
            local = idx[self.rank * need : (self.rank + 1) * need]
            if len(kept) < need:
                groups = self._sample_groups(local, step, rounds)
                first = first or groups
                if self.spec["dynamic_sampling"]:
                    rewards = torch.cat([g["scores"] for g in groups])
                    keep = algos.dynamic_sampling_keep(rewards, G).view(-1, G)[:, 0].tolist()
                    for g, k in zip(groups, keep):
                        (kept if k else dropped).append(g)
                else:
                    kept += groups
            rounds += 1
            if not self.spec["dynamic_sampling"]:
                break
            if not self._any(len(kept) < need) or rounds > self.tcfg["dynamic_sampling_max_retries"]:
                break
        filled = max(0, need - len(kept))
        kept = (kept + dropped[:filled])[:need]
        # rows: group-major (the G responses of a prompt are consecutive)
        prompts = [g["prompt_ids"] for g in kept for _ in range(G)]
        responses = [r for g in kept for r in g["responses"]]
        batch = collate(prompts, responses, self.tokenizer.pad_token_id)
        batch.row["scores"] = torch.cat([g["scores"] for g in kept])
        batch.row["correct"] = torch.cat([g["correct"] for g in kept])
        stats = {
            "reward": torch.cat([g["scores"] for g in first]), "accuracy": torch.cat([g["correct"] for g in first]),
            "length": torch.cat([g["lengths"] for g in first]), "truncated": torch.cat([g["truncated"] for g in first]),
            "ds_rounds": rounds, "ds_dropped": len(dropped) if self.spec["dynamic_sampling"] else 0,
            "ds_filled": filled,
        }
        return batch.to(self.device), stats

    # ------------------------------------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _score(self, batch: Batch) -> dict:
        """Old log-probs (all K), entropy, predictor stats, reference log-probs, values -> advantages."""
        N, T, K = batch.size, batch.response_len, self.spec["K"]
        dev = self.device
        actor = self.acc.unwrap_model(self.actor)
        old = torch.zeros(N, T, K, device=dev)
        entropy = torch.zeros(N, T, device=dev)
        valid = torch.zeros(N, T, K, dtype=torch.bool, device=dev)
        top1 = torch.zeros(N, T, K, dtype=torch.bool, device=dev)
        rank = torch.zeros(N, T, K, dtype=torch.long, device=dev)
        ref = torch.zeros(N, T, device=dev) if self.ref is not None else None
        values = torch.zeros(N, T, device=dev) if self.critic is not None else None
        for idx in micro_batches(N, self.sizes.logprob_micro):
            mb = batch.select(idx)
            ids, am, lpm = mb.seq["input_ids"], mb.seq["attention_mask"], mb.logprob_mask()
            t = mb.response_len
            with self.acc.autocast():
                out = actor(ids, am, logprob_mask=lpm, return_entropy=True, return_stats=True,
                            temperature=self.lp_temperature)
                old[idx, :t] = mb.response_view(out.logprobs).float()
                entropy[idx, :t] = mb.response_view(out.entropy).float()
                valid[idx, :t] = mb.response_view(out.valid)
                top1[idx, :t] = mb.response_view(out.top1)
                rank[idx, :t] = mb.response_view(out.rank)
                if ref is not None:
                    r = self.ref.realized_logprobs(ids, am, logprob_mask=lpm,
                                                                          temperature=self.lp_temperature)
                    ref[idx, :t] = mb.response_view(r)[..., 0].float()
                if values is not None:
                    values[idx, :t] = mb.response_view(self.acc.unwrap_model(self.critic)(ids, am)).float()
        mask = batch.resp["mask"]
        kl = algos.kl_penalty(old[..., 0], ref, self.tcfg["kl_estimator"]) if ref is not None else None
        adv = methods.advantages(self.spec, self.tcfg, scores=batch.row["scores"].to(dev), mask=mask, values=values,
                                 kl=kl, whiten=self._whiten)
        batch.resp["old_logp"], batch.resp["adv"] = old, adv["advantages"]
        if ref is not None:
            batch.resp["ref_logp"] = ref
        if values is not None:
            batch.resp["old_values"], batch.resp["returns"] = values, adv["returns"]
        return {"entropy": entropy, "valid": valid, "top1": top1, "rank": rank, "kl": kl, "values": values,
                "returns": adv.get("returns")}

    # ------------------------------------------------------------------------------------------------ update
    def _update(self, batch: Batch, step: int) -> dict:
        sz, spec, t = self.sizes, self.spec, self.tcfg
        acc = self.acc
        N = batch.size
        mask_all = batch.resp["mask"]
        agg_rows = spec["loss_agg"] == "seq-mean-token-mean"
        coef_kl, coef_aux = float(spec["kl_loss_coef"]), float(spec["mtp_aux_coef"])
        want_aux = spec["uses_mtp_modules"] and coef_aux > 0
        actor_u = acc.unwrap_model(self.actor)
        bb_params, mtp_params = list(actor_u.backbone.parameters()), list(actor_u.mtp.parameters())
        acc_sum: dict[str, float] = {}
        acc_w: dict[str, float] = {}
        tok_used, tok_token, seq_lr, first_dev = [], [], [], {}
        grad_norms, mtp_norms, critic_norms = [], [], []

        def add(name, value, weight=1.0):
            acc_sum[name] = acc_sum.get(name, 0.0) + float(value) * float(weight)
            acc_w[name] = acc_w.get(name, 0.0) + float(weight)

        self.actor.train()
        for epoch in range(t["ppo_epochs"]):
            if t["shuffle"]:
                g = torch.Generator().manual_seed(sub_seed(self.seed, step, epoch, 7919))
                perm = torch.randperm(N, generator=g)
            else:
                perm = torch.arange(N)
            for mb_i in range(sz.n_mini):
                rows = perm[mb_i * sz.mini_local : (mb_i + 1) * sz.mini_local].to(self.device)
                first_mb = epoch == 0 and mb_i == 0
                m_rows = mask_all.index_select(0, rows)
                n_tok = float(self._reduce(m_rows.sum().float().reshape(1)).item())
                n_seq = float(self._reduce(torch.tensor([float(len(rows))], device=self.device)).item())
                mb_pg = mb_kl = mb_aux = mb_vf = 0.0
                models = [self.actor] + ([self.critic] if self.critic is not None else [])
                for start in range(0, len(rows), sz.micro):
                    micro = batch.select(rows[start : start + sz.micro])
                    m = micro.resp["mask"]
                    # shares make the aggregation exact over the whole mini-batch and every process; accelerate
                    # divides by the accumulation steps in backward, and DDP averages over processes
                    tok_share = float(m.sum()) / n_tok * self.world * sz.accum
                    row_share = len(m) / n_seq * self.world * sz.accum
                    ids, am = micro.seq["input_ids"], micro.seq["attention_mask"]
                    with acc.accumulate(*models):
                        # ---- actor
                        with acc.autocast():
                            out = self.actor(ids, am, logprob_mask=micro.logprob_mask(),
                                             mtp_grad=spec["mtp_grad"] or "hidden", mtp_ce=want_aux,
                                             temperature=self.lp_temperature)
                            logp = micro.response_view(out.logprobs)
                            pg, klv, pm, used, token = methods.policy_loss(
                                spec, logp=logp, old_logp=micro.resp["old_logp"], mask=m, advantages=micro.resp["adv"],
                                weights=self.weights, ref_logp=micro.resp.get("ref_logp"))
                        self._check_finite(pg.detach(), "policy loss", step)
                        share = row_share if agg_rows else tok_share
                        loss = pg * share
                        if klv is not None:
                            self._check_finite(klv.detach(), "KL loss", step)
                            loss = loss + coef_kl * klv * share
                        if want_aux:
                            self._check_finite(out.mtp_ce.detach(), "MTP auxiliary loss", step)
                            loss = loss + coef_aux * out.mtp_ce * row_share
                        acc.backward(loss)
                        # ---- critic
                        if self.critic is not None:
                            with acc.autocast():
                                v = micro.response_view(self.critic(ids, am)).float()
                                vf, vm = algos.clipped_value_loss(v, micro.resp["old_values"], micro.resp["returns"], m,
                                                                  t["value_clip"])
                            self._check_finite(vf.detach(), "value loss", step)
                            acc.backward(vf * tok_share)
                    norm = self.world * sz.accum  # undo the shares' scaling for logging
                    mb_pg += float(pg.detach()) * float(share) / norm
                    if klv is not None:
                        mb_kl += float(klv.detach()) * float(share) / norm
                    if want_aux:
                        mb_aux += float(out.mtp_ce.detach()) * float(row_share) / norm
                        for k, ce in enumerate(out.mtp_ce_per_module.tolist(), start=1):
                            add(f"mtp_ce/k{k}", ce)
                    if self.critic is not None:
                        mb_vf += float(vf.detach()) * float(tok_share) / norm
                        add("vf_clip_frac", vm["vf_clip_frac"], float(m.sum()))
                    # ---- metrics of this micro-batch (token weighted)
                    n_m = float(m.sum())
                    for key in ("clip_frac", "clip_frac_low", "clip_frac_high"):
                        add(key, pm[key], n_m)
                    mb_bool = m.bool()
                    tok_used.append(used.detach()[mb_bool])
                    tok_token.append(token.detach()[mb_bool])
                    if spec["ratio"] == "sequence":
                        seq_lr.append(algos.sequence_log_ratio(logp[..., 0].detach(), micro.resp["old_logp"][..., 0], m))
                    if first_mb:
                        for key, val in (("token", token), ("block", used)):
                            dev = (torch.exp(val.detach()[mb_bool]) - 1).abs().max() if mb_bool.any() else torch.zeros(())
                            first_dev[key] = max(first_dev.get(key, 0.0), float(dev))
                # ---- optimizer steps
                assert acc.sync_gradients, "a mini-batch must end on a gradient-sync boundary"
                gn = acc.clip_grad_norm_(bb_params, t["grad_clip"])  # None under DeepSpeed (it clips itself)
                if gn is not None:
                    self._check_finite(torch.as_tensor(gn), "policy gradient norm", step)
                    grad_norms.append(float(gn))
                if mtp_params and any(p.grad is not None for p in mtp_params):
                    mgn = acc.clip_grad_norm_([p for p in mtp_params if p.grad is not None], t["grad_clip"])
                    if mgn is not None:
                        self._check_finite(torch.as_tensor(mgn), "MTP gradient norm", step)
                        mtp_norms.append(float(mgn))
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                if self.critic is not None:
                    cgn = acc.clip_grad_norm_(self.critic.parameters(), t["grad_clip"])
                    if cgn is not None:
                        self._check_finite(torch.as_tensor(cgn), "critic gradient norm", step)
                        critic_norms.append(float(cgn))
                    self.critic_opt.step()
                    self.critic_opt.zero_grad(set_to_none=True)
                add("policy_loss", self._reduce(torch.tensor([mb_pg], device=self.device)).item())
                if coef_kl > 0:
                    add("kl_loss", self._reduce(torch.tensor([mb_kl], device=self.device)).item())
                if want_aux:
                    add("mtp_aux_loss", self._reduce(torch.tensor([mb_aux], device=self.device)).item())
                if self.critic is not None:
                    add("value_loss", self._reduce(torch.tensor([mb_vf], device=self.device)).item())

        # ---- pooled metrics
        sums = self._reduce(torch.tensor([acc_sum[k] for k in sorted(acc_sum)] or [0.0], device=self.device,
                                         dtype=torch.float64))
        ws = self._reduce(torch.tensor([acc_w[k] for k in sorted(acc_w)] or [0.0], device=self.device,
                                       dtype=torch.float64))
        res = {k: (float(s / w) if w > 0 else float("nan")) for k, s, w in zip(sorted(acc_sum), sums.tolist(), ws.tolist())}
        used_all = self._gather_cat(torch.cat(tok_used).float())
        token_all = self._gather_cat(torch.cat(tok_token).float())
        ones = torch.ones_like(token_all, dtype=torch.bool)
        r_tok, r_used = torch.exp(token_all), torch.exp(used_all)
        res.update({
            "ratio_mean": float(algos.masked_mean(r_tok, ones)), "ratio_var": float(algos.masked_var(r_tok, ones)),
            "block_ratio_mean": float(algos.masked_mean(r_used, ones)) if spec["ratio"] != "sequence" else float(algos.masked_mean(r_tok, ones)),
            "block_ratio_var": float(algos.masked_var(r_used, ones)) if spec["ratio"] != "sequence" else float(algos.masked_var(r_tok, ones)),
            "approx_kl": float(algos.masked_mean((r_tok - 1) - token_all, ones)),
            "first_minibatch_ratio_maxdev": self._reduce_max(first_dev.get("token", 0.0)),
            "first_minibatch_block_ratio_maxdev": self._reduce_max(first_dev.get("block", 0.0)),
            "grad_norm": float(np.mean(grad_norms)) if grad_norms else float("nan"),
            "grad_norm_max": float(np.max(grad_norms)) if grad_norms else float("nan"),
            "optimizer_steps": len(grad_norms),
        })
        if spec["ratio"] == "sequence":
            s = torch.exp(self._gather_cat(torch.cat(seq_lr).float()))
            so = torch.ones_like(s, dtype=torch.bool)
            res["seq_ratio_mean"], res["seq_ratio_var"] = float(algos.masked_mean(s, so)), float(algos.masked_var(s, so))
        if mtp_norms:
            res["mtp_grad_norm"] = float(np.mean(mtp_norms))
        if critic_norms:
            res["critic_grad_norm"] = float(np.mean(critic_norms))
        return res

    def _reduce_max(self, x: float) -> float:
        t = torch.tensor([float(x)], device=self.device)
        return float(self.acc.gather(t).max().item()) if self.world > 1 else float(x)

    # ------------------------------------------------------------------------------------------------ one step
    def _step(self, step: int) -> dict:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        self.engine.sync_weights(self.acc.unwrap_model(self.actor).backbone)
        tok0, sec0 = self.engine.tokens_generated, self.engine.generate_seconds
        batch, ro = self._rollout(step)
        t1 = time.perf_counter()
        sc = self._score(batch)
        t2 = time.perf_counter()
        upd = self._update(batch, step)
        for s in self.schedulers:
            s.step()
        t3 = time.perf_counter()

        mask = batch.resp["mask"].bool()
        n_resp = int(self._reduce(torch.tensor([float(batch.size)], device=self.device)).item())
        self.progress.samples_seen += n_resp
        reward = self._gather_cat(ro["reward"].to(self.device))
        correct = self._gather_cat(ro["accuracy"].to(self.device))
        length = self._gather_cat(ro["length"].to(self.device))
        trunc = self._gather_cat(ro["truncated"].to(self.device))
        ent = self._gather_cat(sc["entropy"][mask])
        metrics = {
            "step": step, "epoch": self.stream.epochs_done, "samples_seen": self.progress.samples_seen,
            "prompts_seen": self.progress.prompts_seen,
            "reward": float(reward.mean()), "reward_std": float(reward.std()) if reward.numel() > 1 else 0.0,
            "accuracy": float(correct.mean()), "batch_reward": float(self._gather_cat(batch.row["scores"]).mean()),
            "response_length": float(length.mean()), "response_length_max": float(length.max()),
            "truncated_frac": float(trunc.mean()), "entropy": float(ent.mean()),
            **upd,
            "lr": self.schedulers[0].get_last_lr()[0],
        }
        if self.critic is not None:
            metrics["critic_lr"] = self.schedulers[1].get_last_lr()[0]
            vals = self._gather_cat(sc["values"][mask])
            metrics["values_mean"] = float(vals.mean())
            rets = sc["returns"][mask]
            metrics["vf_explained_var"] = float(1 - algos.masked_var(rets - sc["values"][mask],
                                                                       torch.ones_like(rets, dtype=torch.bool))
                                                / algos.masked_var(rets, torch.ones_like(rets, dtype=torch.bool)).clamp(min=1e-8))
            crit = self.acc.unwrap_model(self.critic)
            if crit.K > 1:
                for k, w in enumerate(crit.mixture_weights()):
                    metrics[f"value_mix/k{k}"] = w
        if sc["kl"] is not None:
            metrics["ref_kl"] = float(self._gather_cat(sc["kl"][mask]).mean())
        # per-predictor accuracy / rank of the realised token at rollout time (Figure 7); k = 0 is the backbone
        for k in range(self.spec["K"]):
            v = sc["valid"][..., k] & mask
            top = self._gather_cat(sc["top1"][..., k][v].float())
            rk = self._gather_cat(sc["rank"][..., k][v].float())
            name_t, name_r = ("backbone_top1", "backbone_rank") if k == 0 else (f"mtp_top1/k{k}", f"mtp_rank/k{k}")
            metrics[name_t] = float(top.mean()) if top.numel() else float("nan")
            metrics[name_r] = float(rk.mean()) if rk.numel() else float("nan")
        if self.spec["dynamic_sampling"]:
            red = lambda x: int(self._reduce(torch.tensor([float(x)], device=self.device)).item())  # noqa: E731
            metrics.update({"ds_rounds": ro["ds_rounds"], "ds_resample_rounds": ro["ds_rounds"] - 1,
                            "ds_dropped_groups": red(ro["ds_dropped"]), "ds_filled_groups": red(ro["ds_filled"])})
        gen_tok = self.engine.tokens_generated - tok0
        gen_sec = self.engine.generate_seconds - sec0
        metrics.update({
            "rollout_tokens_per_s": gen_tok / gen_sec if gen_sec > 0 else 0.0,
            "time_rollout": t1 - t0, "time_old_logprob": t2 - t1, "time_update": t3 - t2, "time_step": t3 - t0,
            "peak_mem_mb": self._reduce_max(peak_memory_mb(self.device)),
        })
        return metrics

    # ------------------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, step: int) -> None:
        acc = self.acc
        d = self.ckpt_root / f"{CKPT_PREFIX}{step:06d}"
        acc.wait_for_everyone()
        acc.save_state(str(d), safe_serialization=False)
        acc.wait_for_everyone()
        if acc.is_main_process:
            # the metrics so far travel with the checkpoint (Snakemake deletes a failed job's metrics.jsonl)
            if self.metrics_path.exists():
                shutil.copyfile(self.metrics_path, d / "metrics.jsonl")
            (d / COMPLETE_MARKER).write_text(json.dumps({"step": step}))
            done = sorted(p for p in self.ckpt_root.glob(f"{CKPT_PREFIX}*") if p != d)
            complete = [p for p in done if (p / COMPLETE_MARKER).is_file()]
            for p in [p for p in done if p not in complete] + complete[: max(0, len(complete) + 1 - self.tcfg["keep_checkpoints"])]:
                shutil.rmtree(p, ignore_errors=True)
        acc.wait_for_everyone()

    def _resume(self) -> int:
        last = latest_checkpoint(self.ckpt_root) if self.ckpt_root.is_dir() else None
        if last is None:
            if self.acc.is_main_process and self.metrics_path.exists():
                self.metrics_path.unlink()
            return 0
        self.acc.load_state(str(last))
        step = self.progress.step
        if self.acc.is_main_process:
            saved = last / "metrics.jsonl"
            lines = [ln for ln in saved.read_text().splitlines() if ln.strip()] if saved.exists() else []
            keep = [ln for ln in lines if json.loads(ln)["step"] <= step]
            self.metrics_path.write_text("".join(ln + "\n" for ln in keep))
        self.acc.print(f"resumed from {last} (step {step})")
        return step

    # ------------------------------------------------------------------------------------------------ final save
    def _save_final(self) -> None:
        acc = self.acc
        acc.wait_for_everyone()
        state = acc.get_state_dict(self.actor)
        if acc.is_main_process:
            unwrapped = acc.unwrap_model(self.actor)
            bb = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
            unwrapped.backbone.save_pretrained(self.out / "policy", state_dict=bb, safe_serialization=True)
            self.tokenizer.save_pretrained(self.out / "policy")
            if self.spec["uses_mtp_modules"]:
                unwrapped.save_modules(self.out / "mtp", extra_config={"trained_by": "mpo.train",
                                                                         "variant": self.variant})
        acc.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> dict:
        from tqdm.auto import tqdm

        from mpo.utils import write_json

        acc, t = self.acc, self.tcfg
        wall0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        start = self._resume()
        writer = None
        if t["tensorboard"] and acc.is_main_process:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tensorboard"))
        history = []
        bar = tqdm(total=self.total_steps, initial=start, disable=not acc.is_main_process, desc=f"train {self.variant}")
        try:
            for step in range(start + 1, self.total_steps + 1):
                metrics = self._step(step)
                self.progress.step = step
                history.append(metrics)
                if acc.is_main_process:
                    with open(self.metrics_path, "a") as f:
                        f.write(json.dumps(metrics) + "\n")
                    if writer is not None:
                        for k, v in metrics.items():
                            if isinstance(v, (int, float)) and math.isfinite(v):
                                writer.add_scalar(k, v, step)
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward']:.3f}", len=f"{metrics['response_length']:.0f}",
                                s=f"{metrics['time_step']:.1f}")
                periodic = t["save_every"] and step % t["save_every"] == 0 and step < self.total_steps
                if periodic or (step == self.total_steps and t["keep_final_checkpoint"]):
                    self._save_checkpoint(step)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            self.close()
        self._save_final()
        if not t["keep_final_checkpoint"] and acc.is_main_process:
            shutil.rmtree(self.ckpt_root, ignore_errors=True)
        summary = self._summary(history, time.perf_counter() - wall0, start)
        if acc.is_main_process:
            write_json(self.out / "summary.json", summary)
        return summary

    def _summary(self, history: list[dict], wall: float, start: int) -> dict:
        all_rows = [json.loads(ln) for ln in self.metrics_path.read_text().splitlines() if ln.strip()] \
            if self.metrics_path.exists() else history
        col = lambda k: [r[k] for r in all_rows if k in r]  # noqa: E731
        num = self.acc.unwrap_model(self.actor).num_parameters()
        return {
            "status": "done", "model": self.model_name, "dataset": self.dataset, "variant": self.variant,
            "method": self.spec["method"], "spec": self.spec, "mtp_weights": self.weights.tolist(),
            "steps": self.total_steps, "resumed_from_step": start, "sizes": self.sizes.__dict__,
            "train_prompts": len(self.records), "prompts_dropped_too_long": self.prompts_dropped,
            "num_processes": self.world, "device": str(self.device), "engine": self.tcfg["engine"],
            "parameters": num, "final": all_rows[-1] if all_rows else {},
            "time_step": col("time_step"), "time_rollout": col("time_rollout"),
            "time_old_logprob": col("time_old_logprob"), "time_update": col("time_update"),
            "median_time_step": float(np.median(col("time_step"))) if col("time_step") else None,
            "mean_time": {k: float(np.mean(col(k))) if col(k) else None
                          for k in ("time_rollout", "time_old_logprob", "time_update", "time_step")},
            "peak_mem_mb": max(col("peak_mem_mb"), default=None),
            "wall_seconds_this_process": wall,
            "rollout_tokens_per_s": self.engine.tokens_per_second if self.engine else None,
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
