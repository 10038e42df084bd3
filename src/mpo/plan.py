"""Memory plan: the estimated per-GPU peak of every training run of a config, before anything runs.

``python -m mpo.plan --config CONFIG [--json OUT]`` writes
``{"gpu_mem_gb": G, "world": W, "runs": [{"model", "dataset", "variant", "strategy", "peak_gb", "fits", "parts"}, ...]}``,
one entry per distinct training run (aliases collapsed). The Snakefile calls :func:`check_plan` at workflow load when
the config trains on CUDA with ``resources.gpu.gpu_mem_gb`` set, so ``snakemake -n`` stops naming a run that does not
fit. Pure arithmetic (no torch): parameter counts come from the architecture config (stored hub facts in
``mpo/model_configs``, a prepared model's ``config.json``, or a random model's ``architecture``) and are the same
numbers :func:`mpo.model_sizes.count_parameters` gets by building the model (tests compare them).

What the estimate holds, per GPU, as the trainer builds it (mpo.train.trainer): fp32 master weights, fp32 gradients
and AdamW's two fp32 moments of the actor (backbone + K-1 MTP modules) and of the critic (PPO, MPO with GAE; plus the
critic's MTP value-head modules), replicated under ``ddp`` (plus DDP's fp32 gradient buckets and autocast's bf16 weight
copies) or divided by the world size under ``fsdp`` (plus the gathered bf16 parameters of the units in flight: two
decoder layers and the root unit with reshard, the whole model without); the frozen fp32 reference model when a KL
coefficient is set (on the CPU with ``train.fsdp.cpu_offload_ref``); activations of one micro batch of
``max_prompt_length + max_response_length`` tokens (layer inputs only under gradient checkpointing, every layer's
saved tensors without) plus the MTP modules' blocks and one chunk of logits (``mtp.logit_chunk`` rows); vLLM's share
(``gpu_memory_utilization`` of the GPU during rollouts, also during the update unless sleep mode frees it); and
:data:`CUDA_CONTEXT_GB` for the CUDA context and library workspaces. The peak is the larger of the rollout phase
(no activations) and the update phase. See README "Memory plan" for the check against measured peaks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mpo.config import ConfigError, load_config

GB = 1024**3
# CUDA context, cuBLAS / NCCL workspaces and the caching allocator's fragmentation, per process (an assumption, not a
# measurement: typically 0.5-1.5 GiB on A100 / H100 with torch 2.x)
CUDA_CONTEXT_GB = 1.5
ADAM_BYTES = 8  # two fp32 moments
MASTER_BYTES = 4  # fp32 weights (the trainer loads fp32; bf16 is autocast's compute dtype)
GRAD_BYTES = 4


# ------------------------------------------------------------------------------------------------ architecture
def arch_of(cfg: dict, model: str, results: str | Path | None = None) -> dict:
    """The architecture facts of a configured model (dict with hidden_size, layers, vocab, ...)."""
    from mpo.model_sizes import CONFIG_DIR

    entry = cfg["models"][model]
    candidates = []
    if results is not None:
        candidates.append(Path(results) / "models" / model / "base" / "config.json")
    candidates.append(CONFIG_DIR / f"{model}.json")
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    if entry["source"] == "random" and "vocab_size" in entry["architecture"]:
        return {"model_type": "llama", **entry["architecture"]}
    raise ConfigError(f"config error at 'models.{model}': no architecture facts for the memory plan (prepare the "
                      f"model first: results/<name>/models/{model}/base/config.json, or add "
                      f"{CONFIG_DIR / (model + '.json')})")


def _dims(a: dict) -> dict:
    d, heads = int(a["hidden_size"]), int(a["num_attention_heads"])
    hd = int(a.get("head_dim") or d // heads)
    kv = int(a.get("num_key_value_heads") or heads)
    return {"d": d, "L": int(a["num_hidden_layers"]), "I": int(a["intermediate_size"]), "V": int(a["vocab_size"]),
            "q": heads * hd, "kv": kv * hd, "tied": bool(a.get("tie_word_embeddings", False)),
            "qkv_bias": a.get("model_type") == "qwen2" or bool(a.get("attention_bias", False)),
            "mlp_bias": bool(a.get("mlp_bias", False))}


def layer_params(a: dict) -> int:
    """One decoder layer (Llama / Qwen2): attention, SwiGLU MLP, two RMSNorms."""
    x = _dims(a)
    d, q, kv, inter = x["d"], x["q"], x["kv"], x["I"]
    attn = d * q + 2 * d * kv + q * d + (q + 2 * kv if x["qkv_bias"] else 0) + (d if a.get("attention_bias") else 0)
    mlp = 3 * d * inter + ((2 * inter + d) if x["mlp_bias"] else 0)
    return attn + mlp + 2 * d


def param_counts(a: dict, K: int = 1, share_head: bool = False) -> dict:
    """Parameters of backbone + K-1 MTP modules (as mpo.mtp.MTPModel builds them) and the pieces the plan needs."""
    x = _dims(a)
    d, V = x["d"], x["V"]
    embed, head = V * d, (0 if x["tied"] else V * d)
    layer = layer_params(a)
    backbone = embed + x["L"] * layer + d + head
    module_head = d + (0 if share_head else V * d)  # copied final norm (+ LM head copy)
    module = 2 * d + 2 * d * d + layer + module_head  # norm_h, norm_e, proj, block, head
    return {"backbone": backbone, "layer": layer, "root": embed + head + d, "module": module,
            "module_head": module_head, "modules": (K - 1) * module, "total": backbone + (K - 1) * module}


def critic_params(a: dict, K: int = 1) -> int:
    """Parameters of mpo.train.critic.Critic: the decoder without its LM head, value head(s) and, with MTP value
    heads (K > 1), the K-1 modules without their LM heads (their final norms stay) and the K mixing weights."""
    x, pc = _dims(a), param_counts(a, 1)
    body = pc["backbone"] - (0 if x["tied"] else x["V"] * x["d"])
    modules = (K - 1) * (2 * x["d"] + 2 * x["d"] ** 2 + pc["layer"] + x["d"])
    return body + modules + K * (x["d"] + 1) + (K if K > 1 else 0)


# ------------------------------------------------------------------------------------------------ estimate
def strategy_of(cfg: dict, model: str) -> str:
    """ddp or fsdp: train.strategy[model], else what train.accelerate_config implies (deepspeed_zero2 counts as ddp)."""
    t = cfg["train"]
    return t["strategy"].get(model) or ("fsdp" if t["accelerate_config"] == "fsdp" else "ddp")


def _states(n: int, strategy: str, world: int) -> float:
    """Bytes of weights + grads + AdamW states of n trained parameters on one GPU."""
    per = MASTER_BYTES + GRAD_BYTES + ADAM_BYTES
    return n * per / world if strategy == "fsdp" else n * (per + (GRAD_BYTES if world > 1 else 0))  # DDP buckets


def _compute_copy(pc: dict, strategy: str, mixed: bool, reshard: bool) -> float:
    """Bytes of the bf16 weights used for compute: autocast's cache (ddp) or FSDP2's gathered units."""
    if not mixed:
        return 0.0
    if strategy == "fsdp" and reshard:
        return 2.0 * (pc["root"] + 2 * pc["layer"])
    return 2.0 * pc["total"]


def _activations(a: dict, cfg: dict, K: int, cbytes: int) -> float:
    """Saved tensors of one micro batch's forward (the update's peak), incl. the MTP modules and one logits chunk."""
    x, t = _dims(a), cfg["train"]
    tokens = int(t["micro_batch_size"]) * (int(t["max_prompt_length"]) + int(t["max_response_length"]))
    d = x["d"]
    # per token and layer: fp32 residual stream + RMSNorm inputs (4 x d), compute-dtype norm outputs, q/k/v,
    # attention output, o_proj input and the SwiGLU intermediates (gate, up, act, product)
    per_layer = 4 * 4 * d + cbytes * (3 * d + x["q"] + 2 * x["kv"] + 4 * x["I"])
    layers = x["L"] * tokens * (4 * d if t["gradient_checkpointing"] else per_layer)
    recompute = tokens * per_layer if t["gradient_checkpointing"] else 0
    modules = (K - 1) * tokens * (per_layer + cbytes * 2 * d)  # module blocks are not checkpointed
    hidden = K * tokens * 4 * d  # every predictor's final hidden state
    rows = min(int(cfg["mtp"]["logit_chunk"]), tokens)
    logits = rows * x["V"] * (cbytes + 4 + 4)  # logits, fp32 log-softmax and its gradient
    return layers + recompute + modules + hidden + logits


def run_memory(cfg: dict, model: str, variant: str, gpu_mem_gb: float | None, world: int,
               results: str | Path | None = None) -> dict:
    """Per-GPU estimate (GiB) of one training run: parts, peak and whether it fits gpu_mem_gb."""
    from mpo.train.variants import resolve_variant

    spec, t = resolve_variant(cfg, variant), cfg["train"]
    a = arch_of(cfg, model, results)
    K = int(spec["K"]) if spec.get("uses_mtp_modules") else 1
    pc = param_counts(a, K, bool(cfg["mtp"]["share_head"]))
    strategy = strategy_of(cfg, model)
    fsdp = t["fsdp"]
    cuda = cfg["device"] == "cuda"
    mixed = cuda and cfg["dtype"] in ("bfloat16", "float16", "auto") and not (strategy == "fsdp"
                                                                            and fsdp["mixed_precision"] == "fp32")
    cbytes = 2 if mixed else 4
    n_critic = critic_params(a, K if spec["value_heads"] else 1) if spec["critic"] else 0
    parts = {
        "actor_states": _states(pc["total"], strategy, world),
        "critic_states": _states(n_critic, strategy, world),
        "reference": 0.0 if (not spec["needs_ref"] or (strategy == "fsdp" and fsdp["cpu_offload_ref"]))
        else MASTER_BYTES * pc["backbone"],
        "compute_weights": _compute_copy(pc, strategy, mixed, fsdp["reshard"]),
        "activations": _activations(a, cfg, K, cbytes),
    }
    vllm_gb = 0.0
    if t["engine"] == "vllm" and gpu_mem_gb:
        vllm_gb = float(t["vllm"]["gpu_memory_utilization"]) * gpu_mem_gb
    resident = parts["actor_states"] + parts["critic_states"] + parts["reference"]
    update = resident + parts["compute_weights"] + parts["activations"]
    parts = {k: v / GB for k, v in parts.items()}
    parts["vllm"] = vllm_gb
    parts["cuda_context"] = CUDA_CONTEXT_GB if cuda else 0.0
    update_gb = update / GB + (0.0 if t["vllm"]["enable_sleep_mode"] else vllm_gb)
    rollout_gb = resident / GB + vllm_gb
    peak = max(update_gb, rollout_gb) + parts["cuda_context"]
    return {"model": model, "variant": variant, "strategy": strategy, "K": K, "params": pc["total"],
            "peak_gb": round(peak, 2), "fits": None if not gpu_mem_gb else bool(peak <= gpu_mem_gb),
            "parts": {k: round(v, 3) for k, v in parts.items()}}


# ------------------------------------------------------------------------------------------------ plan
def training_runs(cfg: dict) -> list[tuple[str, str, str]]:
    """Distinct (model, dataset, variant) training runs of a config: every experiment's and train_main's, aliases
    collapsed to the run they reuse (the runs `snakemake all` trains)."""
    from mpo.artifacts.common import experiment_runs
    from mpo.train.variants import canonical_variant

    runs = []
    for name in cfg.get("experiments") or {}:
        runs += experiment_runs(cfg, name)
    ds = cfg["train"]["main_dataset"]
    if ds in cfg["datasets"]:
        runs += [(m, ds, v) for m in cfg["models"] for v in cfg["train"]["main_variants"]]
    return list(dict.fromkeys((m, d, canonical_variant(cfg, v)) for m, d, v in runs))


def world_of(cfg: dict) -> tuple[int, float | None]:
    """(GPUs of a training job, memory of one GPU) from config `resources` (CPU: one process, no GPU memory)."""
    if cfg["device"] != "cuda":
        return 1, None
    r = cfg["resources"].get("gpu") or cfg["resources"]["default"]
    return max(int(r["gpus"]), 1), r.get("gpu_mem_gb")


def plan(cfg: dict, results: str | Path | None = None) -> dict:
    """The memory plan of every training run of a validated config."""
    world, mem = world_of(cfg)
    runs, per_model = [], {}
    for model, dataset, variant in training_runs(cfg):
        key = (model, variant)  # the estimate does not depend on the dataset (one response budget per config)
        if key not in per_model:
            per_model[key] = run_memory(cfg, model, variant, mem, world, results)
        runs.append({"model": model, "dataset": dataset, **{k: v for k, v in per_model[key].items() if k != "model"}})
    return {"gpu_mem_gb": mem, "world": world, "runs": runs}


def check_plan(cfg: dict, results: str | Path | None = None) -> dict:
    """:func:`plan`, raising ConfigError naming every run whose estimated peak exceeds resources.gpu.gpu_mem_gb."""
    p = plan(cfg, results)
    bad = [r for r in p["runs"] if r["fits"] is False]
    if bad:
        lines = [f"  {r['model']}/{r['dataset']}/{r['variant']} ({r['strategy']}): {r['peak_gb']:.1f} GiB" for r in bad]
        raise ConfigError(
            f"config error at 'resources.gpu.gpu_mem_gb': {len(bad)} training run(s) do not fit {p['gpu_mem_gb']} GiB "
            f"per GPU on {p['world']} GPU(s) (estimate of `python -m mpo.plan`; use train.strategy fsdp for the model, "
            "gradient checkpointing, a smaller micro batch or train.fsdp.cpu_offload_ref):\n" + "\n".join(lines[:20]))
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--json", help="write the plan here (default: stdout)")
    ap.add_argument("--results", help="folder whose prepared models' config.json to prefer (default results/<name>)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        out = plan(cfg, args.results or f"results/{cfg['name']}")
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    text = json.dumps(out, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    for r in out["runs"]:
        mark = {True: "fits", False: "DOES NOT FIT", None: ""}[r["fits"]]
        print(f"{r['model']:34s} {r['dataset']:6s} {r['variant']:12s} {r['strategy']:4s} {r['peak_gb']:8.2f} GiB {mark}",
              file=sys.stderr)
    return 1 if any(r["fits"] is False for r in out["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
