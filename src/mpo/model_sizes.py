"""Parameter counts of backbone + MTP modules (paper Table 7), without downloading or allocating weights.

The count is exactly what :class:`mpo.mtp.MTPModel` builds: the backbone is instantiated from its architecture
config on the ``meta`` device (no memory), the K-1 modules are attached with ``MTPModel.from_backbone`` and the
distinct parameters are summed (tied embeddings count once; each module's LM head is an untied copy and counts).

Architecture configs come from (in this order): a prepared model directory's ``config.json``; the small JSON files
in ``src/mpo/model_configs/`` holding the hub ``config.json`` facts of the paper's models (Llama-3.2-1B-Instruct,
DeepSeek-R1-Distill-Qwen-1.5B / 7B); or a ``source: random`` model's ``architecture`` section in the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_DIR = Path(__file__).with_name("model_configs")

# The paper's models: our name (= reported.yaml row key) -> hub repo and stored architecture file.
PAPER_MODELS = {
    "llama3.2-1b-instruct": {"repo": "meta-llama/Llama-3.2-1B-Instruct", "label": "Llama-3.2-1B-Instruct"},
    "deepseek-r1-distill-qwen-1.5b": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                                      "label": "DeepSeek-R1-Distill-Qwen-1.5B"},
    "deepseek-r1-distill-qwen-7b": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                                    "label": "DeepSeek-R1-Distill-Qwen-7B"},
}
# The two models of the paper's Table 7.
TABLE7_PAPER_MODELS = ["llama3.2-1b-instruct", "deepseek-r1-distill-qwen-1.5b"]


def stored_config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def arch_config(source: str | Path | dict):
    """A transformers config from a stored name (``stored_config_names()``), a config.json / model directory, or a
    dict with ``model_type``. Keys starting with ``_`` (provenance notes) are ignored."""
    from transformers import AutoConfig

    if isinstance(source, dict):
        d = dict(source)
    else:
        path = Path(source)
        if not path.exists() and (CONFIG_DIR / f"{source}.json").is_file():
            path = CONFIG_DIR / f"{source}.json"
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no architecture config {source!r}: not a config.json / model directory and not one of the stored "
                f"configs {stored_config_names()} in {CONFIG_DIR}"
            )
        with open(path) as f:
            d = json.load(f)
    d = {k: v for k, v in d.items() if not k.startswith("_")}
    model_type = d.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"architecture config {source!r} has no model_type")
    return AutoConfig.for_model(model_type, **d)


def count_parameters(config, K: int, share_head: bool = False) -> dict:
    """Parameters of backbone + K-1 MTP modules, built on the meta device exactly as MTPModel builds them
    (``share_head``: the modules use the backbone's LM head, ``mtp.share_head``, so no head weights of their own)."""
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel

    with torch.device("meta"):
        backbone = AutoModelForCausalLM.from_config(config)
        model = MTPModel.from_backbone(backbone, int(K), share_head=share_head)
    n = model.num_parameters()
    per_module = sum(p.numel() for p in model.mtp[0].parameters()) if K > 1 else 0
    parts = {}
    if K > 1:
        mod = model.mtp[0]
        parts = {name: sum(p.numel() for p in getattr(mod, name).parameters())
                 for name in ("norm_h", "norm_e", "proj", "block", "head")}
    return {
        "architecture": type(backbone).__name__,
        "K": int(K),
        "backbone": n["backbone"],
        "per_module": per_module,
        "modules": n["modules"],
        "total": n["total"],
        "ratio": n["total"] / n["backbone"],
        "module_parts": parts,
        "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "share_head": bool(share_head),
    }


def model_size_row(config, Ks=(3, 5), share_head: bool = False) -> dict:
    """Counts for several K (K = 1 is the backbone alone)."""
    out = {"by_K": {}}
    for K in Ks:
        c = count_parameters(config, K, share_head=share_head)
        out["by_K"][int(K)] = c
        out.update({k: c[k] for k in ("architecture", "backbone", "per_module", "module_parts", "tied_embeddings")})
    return out
