"""Save / load of the MTP modules. The backbone stays a plain HF directory; the modules go to
``<dir>/mtp.safetensors`` (keys of the ``mtp`` ModuleList, e.g. ``0.proj.weight``; a shared LM head is not
saved) and ``<dir>/mtp_config.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from mpo.mtp.logprobs import DEFAULT_CHUNK
from mpo.mtp.modules import MTPArchitectureError

if TYPE_CHECKING:
    from mpo.mtp.model import MTPModel

MTP_WEIGHTS_NAME = "mtp.safetensors"
MTP_CONFIG_NAME = "mtp_config.json"
FORMAT_VERSION = 1


def mtp_config(model: MTPModel) -> dict:
    """What ``mtp_config.json`` records about `model`'s modules (enough to rebuild them on the same backbone)."""
    cfg = model.backbone.config
    return {
        "format_version": FORMAT_VERSION,
        "K": model.K,
        "num_modules": model.K - 1,
        "architecture": type(model.backbone).__name__,
        "model_type": getattr(cfg, "model_type", None),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
        "proj_init": model.proj_init,
        "lambdas": model.lambdas,
        "chunk_size": model.chunk_size,
        "checkpoint_min_mb": model.checkpoint_min_mb,
        "share_head": model.share_head,
        "h0": "last decoder layer output, before the backbone's final norm",
        "block_source_layer": len(model.backbone.model.layers) - 1,
    }


def save_modules(model: MTPModel, out_dir: str | Path, extra_config: dict | None = None,
                 state_dict: dict | None = None) -> Path:
    """Write ``mtp.safetensors`` (the K-1 modules only) and ``mtp_config.json`` into ``out_dir``. ``state_dict``:
    the modules' weights to write instead of the model's own (e.g. gathered in full from a sharded model)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = model.mtp.state_dict() if state_dict is None else state_dict
    state = {k: v.detach().contiguous().cpu() for k, v in src.items()}
    save_file(state, str(out / MTP_WEIGHTS_NAME), metadata={"format": "pt", "K": str(model.K)})
    cfg = {**mtp_config(model), **(extra_config or {})}
    with open(out / MTP_CONFIG_NAME, "w") as f:
        json.dump(cfg, f, indent=2)
    return out


def load_modules_state(model: MTPModel, modules_dir: str | Path) -> None:
    """Load module weights saved by :func:`save_modules` into `model` (strict: same K and shapes)."""
    from safetensors.torch import load_file

    path = Path(modules_dir) / MTP_WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MTP_WEIGHTS_NAME} in {modules_dir}")
    model.mtp.load_state_dict(load_file(str(path)), strict=True)


def read_mtp_config(modules_dir: str | Path) -> dict:
    """The ``mtp_config.json`` of a modules directory."""
    cfg_path = Path(modules_dir) / MTP_CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no {MTP_CONFIG_NAME} in {modules_dir}")
    with open(cfg_path) as f:
        return json.load(f)


def load_model(cls: type[MTPModel], backbone: str | Path | nn.Module, modules_dir: str | Path,
               **from_pretrained_kwargs) -> MTPModel:
    """Backbone (HF directory or loaded model) + modules saved by :func:`save_modules` -> ``cls`` instance."""
    mcfg = read_mtp_config(modules_dir)
    if isinstance(backbone, (str, Path)):
        from transformers import AutoModelForCausalLM

        backbone = AutoModelForCausalLM.from_pretrained(backbone, **from_pretrained_kwargs)
    if mcfg.get("architecture") not in (None, type(backbone).__name__):
        raise MTPArchitectureError(
            f"modules in {modules_dir} were built for {mcfg['architecture']}, backbone is {type(backbone).__name__}"
        )
    model = cls(
        backbone,
        int(mcfg["K"]),
        proj_init=mcfg.get("proj_init", "identity"),
        lambdas=mcfg.get("lambdas"),
        chunk_size=int(mcfg.get("chunk_size", DEFAULT_CHUNK)),
        checkpoint_min_mb=float(mcfg.get("checkpoint_min_mb", 0.0)),
        share_head=bool(mcfg.get("share_head", False)),
    )
    if model.K > 1:
        load_modules_state(model, modules_dir)
    return model
