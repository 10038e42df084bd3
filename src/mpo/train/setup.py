"""Building a run from a validated config: batch sizes, the accelerator, the models and their optimizers, the data
and the rollout engine. Everything here runs once, before the first step, in a fixed order (seeded)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mpo.train.errors import TrainSetupError


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
    """The step's split over ``world`` processes (:func:`mpo.config.batch_sizes`, which config loading also checks)."""
    from mpo.config import ConfigError, batch_sizes

    try:
        sizes = batch_sizes(tcfg, spec["group_size"], world)
    except ConfigError as e:
        raise TrainSetupError(str(e)) from None
    return Sizes(**sizes, logprob_micro=tcfg["logprob_micro_batch_size"] or sizes["micro"])


def make_accelerator(cfg: dict, spec: dict, strategy: str = "ddp"):
    """(accelerator, sizes, compute dtype): mixed precision from the config, accumulation = micro-batches per mini.
    ``strategy`` fsdp: the trainer shards the models itself (``fsdp.py``); accelerate's own FSDP plugin is off."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    from mpo.train import fsdp
    from mpo.utils import resolve_device, resolve_dtype

    device = resolve_device(cfg["device"])
    dtype = resolve_dtype(cfg["dtype"], device)
    if strategy == "fsdp":
        fsdp.disable_accelerate_fsdp()
        if fsdp.settings_of(cfg).mixed_precision == "fp32":
            dtype = torch.float32
    mixed = "bf16" if (device == "cuda" and dtype == torch.bfloat16) else (
        "fp16" if device == "cuda" and dtype == torch.float16 else "no")
    sizes = compute_sizes(cfg["train"], spec, PartialState(cpu=device == "cpu").num_processes)
    acc = Accelerator(cpu=device == "cpu", mixed_precision=mixed, gradient_accumulation_steps=sizes.accum,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if acc.distributed_type == DistributedType.DEEPSPEED and spec["critic"]:
        raise TrainSetupError(
            "DeepSpeed needs one engine per trained model; the critic methods (PPO, MPO with GAE) train two. "
            "Use config/accelerate/ddp.yaml or fsdp.yaml for them (GRPO, DAPO, GSPO run under DeepSpeed)."
        )
    return acc, sizes, dtype


def load_tokenizer(base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(base):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)


def build_actor(cfg: dict, spec: dict, acc, base, mtp_dir, variant: str):
    """The policy: an ``MTPModel`` (K = 1 for every method but MPO, so the log-prob code path is shared)."""
    from accelerate.utils import DistributedType

    from mpo.mtp import MTPModel

    backbone = load_backbone(base)
    if cfg["train"]["gradient_checkpointing"]:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec["uses_mtp_modules"]:
        actor = MTPModel.load(backbone, mtp_dir)
        if actor.K != spec["K"]:
            raise TrainSetupError(f"{mtp_dir} holds K={actor.K} modules, variant '{variant}' wants K={spec['K']}")
    else:
        actor = MTPModel.from_backbone(backbone, 1)
    # PPO and MPO share the log-prob code, including its chunking / checkpointing settings (config `mtp`)
    actor.chunk_size = int(cfg["mtp"]["logit_chunk"])
    actor.checkpoint_min_mb = float(cfg["mtp"].get("checkpoint_min_mb", 0.0))
    # one module-chain forward for the policy terms and the auxiliary CE (mpo.mtp._RoutedModules); accelerate's
    # sharded engines gather parameters per module forward through their own hooks: keep the two plain passes there.
    # train.strategy fsdp (fsdp.py) keeps the fused pass: the MTP modules live in the root FSDP2 unit
    actor.fuse_module_passes = acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    return actor


def lr_lambda_for(tcfg: dict):
    warm = max(int(tcfg["lr_warmup_steps"]), 0)
    return lambda s: min(1.0, (s + 1) / warm) if warm else 1.0  # noqa: E731


def adamw(groups, lr: float, tcfg: dict) -> torch.optim.AdamW:
    """AdamW from the train section (fused by default: one in-place kernel per tensor, no param-sized temporaries)."""
    fused = {"fused": True} if tcfg["adamw_fused"] else {}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(tcfg["betas"]), weight_decay=tcfg["weight_decay"], **fused)


def actor_optimizer(actor, spec: dict, tcfg: dict) -> torch.optim.AdamW:
    """Backbone at the variant's lr, MTP modules (if any) at ``train.mtp_lr`` (default: the same)."""
    groups = [{"params": list(actor.backbone.parameters()), "lr": spec["lr"]}]
    mtp_params = list(actor.mtp.parameters())
    if mtp_params:
        groups.append({"params": mtp_params, "lr": tcfg["mtp_lr"] or spec["lr"]})
    return adamw(groups, spec["lr"], tcfg)


def wrap_trained(acc, model, make_optimizer, lr_lambda, strategy: str, settings):
    """(model, optimizer, LR scheduler) ready to train. ddp (and DeepSpeed): ``acc.prepare``; fsdp: sharded in place
    (``fsdp.shard_model``), the optimizer built on the shards and registered for checkpoints with its model."""
    if strategy != "fsdp":
        opt = make_optimizer(model)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        model, opt = acc.prepare(model, opt)
        return model, opt, sched
    from mpo.train import fsdp

    fsdp.shard_model(model, device=acc.device, settings=settings)
    opt = make_optimizer(model)
    acc.register_for_checkpointing(fsdp.ShardedState(model, opt))
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)


def build_critic(spec: dict, base, mtp_dir):
    from mpo.train.critic import Critic

    return Critic(load_backbone(base), str(mtp_dir) if spec["value_heads"] else None)


def build_reference(base, device, strategy: str = "ddp", settings=None):
    """The frozen initial policy (not in checkpoints: it never changes); fsdp: sharded like the actor, its shards in
    CPU memory with ``train.fsdp.cpu_offload_ref``."""
    from mpo.mtp import MTPModel

    ref = MTPModel.from_backbone(load_backbone(base), 1)
    ref.requires_grad_(False)
    if strategy != "fsdp":
        return ref.eval().to(device)
    from mpo.train import fsdp

    fsdp.shard_model(ref, device=device, settings=settings, offload=settings.cpu_offload_ref)
    return ref.eval()


def total_steps(tcfg: dict, n_records: int, prompts_per_step: int) -> int:
    """``train.steps``, or ``train.epochs`` over the prompts, whichever is smaller (1 when neither is set)."""
    per_epoch = math.ceil(n_records / prompts_per_step)
    by_epochs = math.ceil(tcfg["epochs"] * per_epoch) if tcfg["epochs"] else None
    return min(x for x in (tcfg["steps"], by_epochs) if x is not None) if (tcfg["steps"] or by_epochs) else 1


def build_engine(tcfg: dict, backbone, tokenizer, *, base, seed: int, device, dtype, sharded: bool = False):
    """The rollout engine on ``backbone``; ``sharded`` (fsdp) with the HF engine: on an unsharded copy of it, which
    ``sync_weights`` refreshes from the shards before every rollout."""
    from mpo.rollout import make_engine

    if sharded and tcfg["engine"] == "hf":
        from mpo.train.fsdp import generation_copy

        backbone = generation_copy(backbone, base, device, dtype)

    if tcfg["engine"] == "hf":
        engine_kw = {"batch_size": tcfg["generation_batch_size"]}
    else:
        v = tcfg["vllm"]
        engine_kw = {"model_dir": str(base), "seed": seed, "gpu_memory_utilization": v["gpu_memory_utilization"],
                     "enable_sleep_mode": v["enable_sleep_mode"],
                     "max_model_len": v["max_model_len"] or (tcfg["max_prompt_length"] + tcfg["max_response_length"])}
    return make_engine(tcfg["engine"], backbone, tokenizer, device=device, dtype=dtype, **engine_kw)
