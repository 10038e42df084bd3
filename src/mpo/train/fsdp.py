"""Sharded training on PyTorch's own engine: FSDP2 (``torch.distributed.fsdp.fully_shard``) for the actor, the critic
and the reference model, chosen per model by the config (``train.strategy``; ``train.fsdp`` holds its settings).

Sharding plan of one model (:func:`shard_model`): every decoder layer of its backbone (``...layers.<i>``) is its own
FSDP unit, then the model itself is the root unit, which holds the rest: embeddings, final norm, LM head, the MTP
modules (their decoder-block copies included) and the critic's value heads. Every parameter, its gradient and its
AdamW moments are sharded over the processes (fp32 masters); a unit's parameters are gathered (bf16 on CUDA with
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``, fp32 on CPU) for its forward and backward only.

Why the MTP modules are not units of their own: the "hidden" regime reads each module through a constant-parameter
view (``mpo.mtp.routing._const_view``) and the heads are called outside the module's forward, neither of which
FSDP2's per-module unshard hooks see; inside the root unit they are gathered from the root's forward until its
post-backward, so both the two-pass and the fused single-pass (``_RoutedModules``) paths work unchanged.

The trainer owns the sharding: ``accelerate`` only starts the processes and supplies the collectives (its own FSDP
plugin, set by ``accelerate launch --config_file config/accelerate/fsdp.yaml``, is switched off in
:func:`disable_accelerate_fsdp`). Checkpoints hold full (unsharded) state dicts of each sharded model and its
optimizer (:class:`ShardedState`, saved by rank 0 through ``accelerate save_state``), so a run may resume on
another number of processes. Generation with the HF engine reads an unsharded copy of the backbone
(:func:`generation_copy`), refreshed from the shards every step (``HFEngine.sync_weights``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from mpo.train.errors import TrainSetupError

STRATEGIES = ("ddp", "fsdp")
_LAYER_NAME = re.compile(r"(?:.*\.)?layers\.\d+")


@dataclass(frozen=True)
class FSDPSettings:
    reshard: bool = True
    cpu_offload_ref: bool = False
    mixed_precision: str = "bf16"  # bf16 | fp32 (CUDA only; CPU computes in fp32)


def strategy_for(cfg: dict, model: str) -> str:
    """``train.strategy[model]``; models not listed: fsdp when ``train.accelerate_config`` is fsdp, else ddp."""
    t = cfg["train"]
    name = (t.get("strategy") or {}).get(model) or ("fsdp" if t.get("accelerate_config") == "fsdp" else "ddp")
    if name not in STRATEGIES:
        raise TrainSetupError(f"train.strategy.{model}: {name!r} is not one of {STRATEGIES}")
    return name


def settings_of(cfg: dict) -> FSDPSettings:
    f = cfg["train"].get("fsdp") or {}
    unknown = set(f) - set(FSDPSettings.__dataclass_fields__)
    if unknown:
        raise TrainSetupError(f"train.fsdp: unknown keys {sorted(unknown)} (known: reshard, cpu_offload_ref, "
                              "mixed_precision)")
    return FSDPSettings(**f)


def disable_accelerate_fsdp() -> None:
    """The trainer shards itself: keep ``accelerate`` (launched with config/accelerate/fsdp.yaml) from wrapping too."""
    os.environ["ACCELERATE_USE_FSDP"] = "false"


def compute_dtype(settings: FSDPSettings, device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" and settings.mixed_precision == "bf16" else torch.float32


def decoder_layer_names(model: nn.Module) -> list[str]:
    """Names of the backbone's decoder layers (``...layers.<i>``): the per-layer FSDP units. The MTP modules' blocks
    (``mtp.<k>.block``) are not among them (module docstring)."""
    return [name for name, _ in model.named_modules() if _LAYER_NAME.fullmatch(name)]


def shard_model(model: nn.Module, *, device: torch.device, settings: FSDPSettings, offload: bool = False) -> list[str]:
    """``fully_shard`` every decoder layer, then the root (in place). Returns the units, layers first, root as ''."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    if not torch.distributed.is_initialized():
        raise TrainSetupError("train.strategy fsdp needs torch.distributed (launch with torchrun / accelerate launch)")
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    dtype = compute_dtype(settings, device)
    kw = {"mesh": mesh, "reshard_after_forward": settings.reshard,
          "mp_policy": MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32),
          "offload_policy": CPUOffloadPolicy() if offload and device.type == "cuda" else OffloadPolicy()}
    units = decoder_layer_names(model)  # fully_shard moves each shard to the mesh's device (or keeps it on the CPU)
    modules = dict(model.named_modules())
    for name in units:
        fully_shard(modules[name], **kw)
    fully_shard(model, **kw)
    return [*units, ""]


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def clip_grad_norm(acc, params, max_norm: float):
    """Clip the gradients of ``params`` to ``max_norm``; the total norm before clipping (a plain tensor). Sharded
    (DTensor) gradients: norms pooled over every shard; otherwise ``acc.clip_grad_norm_`` (DDP / DeepSpeed)."""
    from torch.distributed.tensor import DTensor

    params = list(params)
    if not any(isinstance(p, DTensor) for p in params):
        return acc.clip_grad_norm_(params, max_norm)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def full_state_dict(model: nn.Module) -> dict:
    """The full (unsharded) state dict on CPU, on rank 0 only (empty elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class ShardedState:
    """A sharded model and its optimizer as one checkpointable object (``accelerate register_for_checkpointing``):
    ``state_dict`` gathers full state dicts to rank 0 (which saves them); ``load_state_dict`` reads the full dicts on
    every rank and keeps each rank's shard."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def _options(self, cpu_offload: bool, strict: bool = True):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=strict)

    def state_dict(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return {"model": full_state_dict(self.model),
                "optimizer": get_optimizer_state_dict(self.model, self.optimizer, options=self._options(True))}

    def load_state_dict(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(self.model, state["model"], options=self._options(False))
        # not strict: a parameter that never had a gradient (e.g. MTP modules without the auxiliary loss) has no
        # AdamW state, in the checkpoint as in the optimizer
        set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                 options=self._options(False, strict=False))


def generation_copy(backbone: nn.Module, base, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An unsharded copy of the policy backbone for the HF rollout engine (``HFEngine.sync_weights`` fills it from
    the shards before every rollout); ``dtype``: the sharded model's compute dtype."""
    from mpo.train.setup import load_backbone

    copy = load_backbone(base).to(device=device, dtype=dtype)
    copy.requires_grad_(False)
    return copy.eval()
