"""Benchmarks: what MPO costs over PPO, and how fast the pipeline is (issue: paper Tables 2, 3 and 7).

    python -m mpo.bench update-step --config CONFIG --json OUT [--repeats N] [--model NAME] [--base DIR] ...
    python -m mpo.bench rollout     --config CONFIG --json OUT
    python -m mpo.bench warmup-step --config CONFIG --json OUT [--K 5]
    python -m mpo.bench pipeline    --results results/<name> --out-md F --out-csv F

**update-step** times one full training update of the real trainer (``mpo.train.trainer.Trainer``): the no-grad
scoring pass (old log-probs of all K predictors, reference log-probs, critic values, advantages) plus
``train.ppo_epochs`` passes of mini-batch forward + backward + optimizer steps (MTP terms where used), for PPO,
GRPO, MPO K = 2, 3, 5, on one identical batch (same prompts, same response tokens and lengths; the batch's hash is
recorded per method). Each method runs in its own subprocess, so the peak memory (peak RSS on CPU, CUDA max
allocated on GPU) is its own. ``bench.warmup_iters`` untimed updates, then ``bench.repeats`` timed ones; the JSON
has the median, min, max, IQR and every time, the ratios to PPO, and the peak memory; also the process CPU seconds
(``cpu_median_s``, ``cpu_ratio_to_ppo``) and the load average, because on a shared machine other jobs inflate wall
time (run with ``--threads 1`` there: CPU time then measures the work, without idle OpenMP threads spinning). Every
method gets the same rows (``bench.responses``, else the train batch counted in responses, also under
``batch_unit: prompts``), grouped by GRPO's group size. MPO uses the warmed-up MTP modules when
``<mtp-root>/mtp_k<K>`` exists, otherwise freshly initialised ones (timing does not depend on their training; the
JSON says which). ``mpo_k5_shared_head`` (``bench.shared_head``, default on): MPO K = 5 with freshly initialised
modules that share the backbone's LM head (``mtp.share_head``) instead of carrying K-1 copies.

**rollout**: generated tokens/s of the HF engine on the train prompts (and of vLLM where it is installed and CUDA is
present; otherwise an explicit ``unavailable`` entry). **warmup-step**: seconds per MTP warm-up step (the warm-up's
loss, ``MTPModel.mtp_ce_loss``, forward + backward + AdamW on the modules, frozen backbone). **pipeline**: a per-rule
table of the Snakemake ``benchmark:`` files of a results folder, with totals.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {"ppo": "ppo", "grpo": "grpo", "mpo_k2": "mpo_k2", "mpo_k3": "mpo_k3", "mpo_k5": "mpo_k5"}
# beyond the paper: MPO K=5 with the modules sharing the backbone's LM head (``mtp.share_head``, DeepSeek-V3 style)
SHARED_HEAD = {"mpo_k5_shared_head": "mpo_k5"}


# ------------------------------------------------------------------------------------------------ helpers
def _paths(cfg: dict, args) -> dict:
    from mpo.config import results_dir

    root = results_dir(cfg)
    model = args.model or next(iter(cfg["models"]))
    if model not in cfg["models"]:
        raise SystemExit(f"--model {model!r} is not in the config's `models` ({', '.join(cfg['models'])})")
    dataset = args.dataset or ("gsm8k" if "gsm8k" in cfg["datasets"] else next(iter(cfg["datasets"])))
    return {"model": model, "dataset": dataset,
            "base": Path(args.base or root / "models" / model / "base"),
            "mtp_root": Path(args.mtp_root or root / "models" / model),
            "data_root": Path(args.data_root or root / "data")}


def _check_inputs(p: dict) -> None:
    if not (p["base"] / "config.json").is_file():
        raise SystemExit(f"no prepared model at {p['base']}: build it first "
                         f"(snakemake --cores all {p['base']} --configfile CONFIG)")
    train = p["data_root"] / p["dataset"] / "train.jsonl"
    if not train.is_file():
        raise SystemExit(f"no train split at {train}: build it first (snakemake --cores all {train} --configfile CONFIG)")


def spread(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "iqr_s": q[2] - q[0],
            "times_s": times}


def device_total_mem_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def common_train_sizes(cfg: dict) -> dict:
    """One batch shape for every method: ``n`` responses (``bench.responses``, else the train batch in responses),
    ``mini`` responses per optimizer step, GRPO's group size ``G`` (rows i*G .. i*G+G-1 share a prompt). Returns
    those and the ``train`` section rewritten in the ``responses`` unit, so that PPO (G = 1) and GRPO (G > 1) get
    the same number of rows even under ``batch_unit: prompts``."""
    from mpo.train.variants import resolve_variant

    t = dict(cfg["train"])
    G = resolve_variant(cfg, "grpo")["group_size"] if "grpo" in (cfg.get("variants") or {}) else t["group_size"]
    unit = 1 if t["batch_unit"] == "responses" else G
    n = cfg["bench"]["responses"] or t["batch_size"] * unit
    mini = min(t["mini_batch_size"] * unit, n)
    if n % G or n % mini:
        raise SystemExit(f"bench: {n} responses must be a multiple of the GRPO group size ({G}) and of the mini "
                         f"batch ({mini} responses); set bench.responses")
    t.update(batch_unit="responses", batch_size=n, mini_batch_size=mini)
    return {"n": n, "mini": mini, "G": G, "train": t}


def fixed_batch(records: list[dict], n: int, group: int, response_len: int, vocab: int, pad_id: int, seed: int):
    """The batch every method sees: n rows, consecutive groups of `group` rows share a prompt (valid for PPO too),
    response tokens and lengths drawn from a fixed seed, 0/1 scores that differ within each group."""
    import torch

    from mpo.train.batch import collate

    g = torch.Generator().manual_seed(seed)
    prompts = [records[(i // group) % len(records)]["prompt_ids"] for i in range(n)]
    lengths = torch.randint(max(1, response_len // 2), response_len + 1, (n,), generator=g).tolist()
    lengths[0] = response_len  # the longest row sets the padded width
    responses = [torch.randint(0, vocab, (L,), generator=g).tolist() for L in lengths]
    batch = collate(prompts, responses, pad_id)
    scores = torch.tensor([float((i % group) % 2 == 0) for i in range(n)])
    batch.row["scores"], batch.row["correct"] = scores, scores.clone()
    digest = hashlib.sha256(batch.seq["input_ids"].numpy().tobytes() + scores.numpy().tobytes()).hexdigest()[:16]
    return batch, digest


# ------------------------------------------------------------------------------------------------ update step
def _one_update_step(args) -> dict:
    """Runs in a subprocess: one method, `warmup_iters` + `repeats` updates on the fixed batch."""
    from mpo.config import load_config
    from mpo.train.variants import resolve_variant
    from mpo.utils import set_threads

    cfg = load_config(args.config)
    b = cfg["bench"]
    set_threads(args.threads or b["threads"] or os.cpu_count() or 1)
    p = _paths(cfg, args)
    common = common_train_sizes(cfg)
    cfg["train"] = common["train"]  # same rows, same mini batches for every method
    spec = resolve_variant(cfg, args.variant)
    tmp = Path(tempfile.mkdtemp(prefix="mpo-bench-"))  # fresh modules (K=5: ~0.5 GB at 135M) and the run dir
    try:
        return _timed_updates(args, cfg, b, p, common, spec, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _timed_updates(args, cfg: dict, b: dict, p: dict, common: dict, spec: dict, tmp: Path) -> dict:
    import copy
    import resource

    import torch

    from mpo.mtp import MTPModel
    from mpo.train.trainer import Trainer

    mtp_dir, modules = None, None
    if spec["uses_mtp_modules"]:
        mtp_dir = p["mtp_root"] / f"mtp_k{spec['K']}"
        modules = "warmed-up"
        if args.share_head or not (mtp_dir / "mtp_config.json").is_file():
            from transformers import AutoModelForCausalLM

            share = bool(args.share_head or cfg["mtp"]["share_head"])
            mtp_dir, modules = tmp / f"mtp_k{spec['K']}", "fresh init" + (", shared LM head" if share else "")
            bb = AutoModelForCausalLM.from_pretrained(p["base"], dtype=torch.float32)
            MTPModel.from_backbone(bb, spec["K"], share_head=share).save_modules(mtp_dir)
            del bb
    tr = Trainer(cfg, model=p["model"], dataset=p["dataset"], variant=args.variant, base=p["base"],
                 data_root=p["data_root"], out=tmp / "run", mtp=mtp_dir)
    try:
        n = tr.sizes.responses
        assert n == common["n"], (n, common)
        vocab = tr.acc.unwrap_model(tr.actor).backbone.config.vocab_size
        resp_len = b["response_len"] or cfg["train"]["max_response_length"]
        batch, digest = fixed_batch(tr.records, n, common["G"], resp_len, vocab, tr.tokenizer.pad_token_id,
                                    cfg["seed"])
        batch = batch.to(tr.device)
        dev = tr.device
        base_rss = current_rss_mb()
        base_cuda = 0.0
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base_cuda = torch.cuda.memory_allocated(dev) / 2**20
        times, score_t, update_t, cpu_t = [], [], [], []
        load0 = os.getloadavg()[0]
        for it in range(b["warmup_iters"] + args.repeats):
            bt = copy.copy(batch)
            bt.resp, bt.row = dict(batch.resp), dict(batch.row)
            c0 = time.process_time()
            t0 = time.perf_counter()
            tr._score(bt)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t1 = time.perf_counter()
            tr._update(bt, it + 1)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            c2 = time.process_time()
            if it >= b["warmup_iters"]:
                times.append(t2 - t0)
                cpu_t.append(c2 - c0)
                score_t.append(t1 - t0)
                update_t.append(t2 - t1)
            print(f"[bench] {args.variant}: iteration {it + 1}/{b['warmup_iters'] + args.repeats} "
                  f"{'(untimed) ' if it < b['warmup_iters'] else ''}{t2 - t0:.3f} s (CPU {c2 - c0:.3f} s)",
                  file=sys.stderr, flush=True)
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            delta = max(0.0, peak - base_cuda)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            delta = max(0.0, peak - base_rss)
        res = {**spread(times), "peak_mem_mb": peak, "update_peak_delta_mb": delta,
               "score_median_s": statistics.median(score_t), "update_median_s": statistics.median(update_t),
               # process CPU seconds (all threads): far less sensitive than wall time to other jobs on the machine
               "cpu_median_s": statistics.median(cpu_t), "cpu_times_s": cpu_t,
               "loadavg_1min": [load0, os.getloadavg()[0]], "threads": torch.get_num_threads(),
               "variant": args.variant, "method": spec["method"], "K": spec["K"], "group_size": spec["group_size"],
               "batch_hash": digest, "responses": n, "response_len": resp_len, "prompt_len": batch.prompt_len,
               "batch_group_size": common["G"], "mini_batch_size": common["mini"],
               "response_tokens": int(batch.resp["mask"].sum()),
               "mtp_modules": modules, "share_head": bool(getattr(tr.acc.unwrap_model(tr.actor), "share_head", False)),
               "device": str(dev), "device_total_mem_mb": device_total_mem_mb(dev),
               "optimizer_steps_per_update": tr.sizes.n_mini * cfg["train"]["ppo_epochs"]}
    finally:
        tr.close()
    return res


def update_step(args) -> dict:
    from mpo.config import load_config
    from mpo.runinfo import library_versions

    cfg = load_config(args.config)
    p = _paths(cfg, args)
    _check_inputs(p)
    repeats = args.repeats or cfg["bench"]["repeats"]
    out: dict = {"what": "median wall seconds (and process CPU seconds) of one training update - old log-probs + "
                         "reference + critic values + advantages, then every mini-batch forward/backward/optimizer "
                         "step, MTP terms where used - on one identical batch; peak memory per method in its own "
                         "process",
                 "model": p["model"], "dataset": p["dataset"], "repeats": repeats,
                 "warmup_iters": cfg["bench"]["warmup_iters"], "config": cfg["name"], "scale": cfg["scale"],
                 "threads": args.threads or cfg["bench"]["threads"] or os.cpu_count()}
    versions = library_versions()
    out.update({k: versions.get(k) for k in ("torch", "transformers", "accelerate")})
    methods = {**METHODS, **(SHARED_HEAD if cfg["bench"]["shared_head"] else {})}
    for key, variant in methods.items():
        if variant not in cfg["variants"]:
            out[key] = {"status": "missing", "reason": f"variant {variant!r} is not defined in the config"}
            continue
        with tempfile.TemporaryDirectory() as td:
            res_file = Path(td) / "one.json"
            cmd = [sys.executable, "-m", "mpo.bench", "_one", "--config", args.config, "--variant", variant,
                   "--repeats", str(repeats), "--json", str(res_file), "--model", p["model"], "--dataset", p["dataset"],
                   "--base", str(p["base"]), "--mtp-root", str(p["mtp_root"]), "--data-root", str(p["data_root"])]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if key in SHARED_HEAD:
                cmd += ["--share-head"]
            print(f"[bench] {key} ({variant}) ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark of {variant} failed (exit {proc.returncode}); see the output above")
            out[key] = json.loads(res_file.read_text())
    ppo = out.get("ppo", {})
    for key in methods:
        e = out[key]
        if "median_s" in e and "median_s" in ppo:
            e["ratio_to_ppo"] = e["median_s"] / ppo["median_s"]
            e["cpu_ratio_to_ppo"] = e["cpu_median_s"] / ppo["cpu_median_s"] if ppo["cpu_median_s"] > 0 else None
            e["peak_mem_ratio_to_ppo"] = e["peak_mem_mb"] / ppo["peak_mem_mb"]
            e["update_peak_delta_ratio_to_ppo"] = (e["update_peak_delta_mb"] / ppo["update_peak_delta_mb"]
                                                   if ppo["update_peak_delta_mb"] > 0 else None)
    first = next((out[k] for k in methods if "median_s" in out[k]), {})
    out["device"], out["device_total_mem_mb"] = first.get("device"), first.get("device_total_mem_mb")
    out["batch"] = {k: first.get(k) for k in ("responses", "prompt_len", "response_len", "response_tokens",
                                              "batch_group_size", "mini_batch_size", "batch_hash")}
    hashes = {out[k]["batch_hash"] for k in methods if "batch_hash" in out[k]}
    if len(hashes) > 1:
        raise SystemExit(f"methods saw different batches ({hashes}); the comparison would be unfair")
    return out


def print_update_table(res: dict) -> None:
    print(f"update step, {res['model']} on {res['device']} (median of {res['repeats']}):")
    print(f"{'method':<18} {'median s':>9} {'x PPO':>6} {'IQR s':>7} {'CPU s':>8} {'x PPO':>6} {'peak MB':>9} "
          f"{'x PPO':>6} {'delta MB':>9}")
    for k in [*METHODS, *(k for k in SHARED_HEAD if k in res)]:
        e = res[k]
        if "median_s" not in e:
            print(f"{k:<18} {e.get('status', '?')}: {e.get('reason', '')}")
            continue
        print(f"{k:<18} {e['median_s']:>9.3f} {e.get('ratio_to_ppo', float('nan')):>6.2f} {e['iqr_s']:>7.3f} "
              f"{e['cpu_median_s']:>8.3f} {e.get('cpu_ratio_to_ppo') or float('nan'):>6.2f} "
              f"{e['peak_mem_mb']:>9.0f} {e.get('peak_mem_ratio_to_ppo', float('nan')):>6.2f} "
              f"{e['update_peak_delta_mb']:>9.0f}")


# ------------------------------------------------------------------------------------------------ rollout
def _setup(args) -> tuple[dict, dict, str, object]:
    """Shared start of the `rollout` and `warmup-step` commands: config, torch threads, checked input paths,
    device and the prepared model's tokenizer (pad = eos where it has none)."""
    from transformers import AutoTokenizer

    from mpo.config import load_config
    from mpo.utils import resolve_device, set_threads

    cfg = load_config(args.config)
    set_threads(args.threads or cfg["bench"]["threads"] or os.cpu_count() or 1)
    p = _paths(cfg, args)
    _check_inputs(p)
    tok = AutoTokenizer.from_pretrained(p["base"])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return cfg, p, resolve_device(cfg["device"]), tok


def rollout(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mpo.rollout import make_engine
    from mpo.train.batch import load_train_records, prepare_prompts
    from mpo.utils import resolve_dtype

    cfg, p, device, tok = _setup(args)
    t = cfg["train"]
    dtype = resolve_dtype(cfg["dtype"], device)
    recs, _ = prepare_prompts(load_train_records(p["data_root"], p["dataset"]), tok,
                              cfg["models"][p["model"]]["family"], t["max_prompt_length"])
    n = cfg["bench"]["responses"] or t["batch_size"]
    prompts = [r["prompt_ids"] for r in recs[:n]]
    out = {"model": p["model"], "prompts": len(prompts), "max_new_tokens": t["max_response_length"],
           "temperature": 1.0, "device": device}
    model = AutoModelForCausalLM.from_pretrained(p["base"], dtype=dtype).to(device).eval()
    eng = make_engine("hf", model, tok, device=torch.device(device), dtype=dtype,
                      batch_size=t["generation_batch_size"])
    eng.generate(prompts[:1], n=1, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0)  # warm-up
    tok0, sec0 = eng.tokens_generated, eng.generate_seconds
    eng.generate(prompts, n=1, max_new_tokens=t["max_response_length"], temperature=1.0, top_p=1.0, seed=cfg["seed"])
    toks, secs = eng.tokens_generated - tok0, eng.generate_seconds - sec0
    out["hf"] = {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs if secs > 0 else None}
    del eng, model
    try:
        import vllm  # noqa: F401
        have_vllm = True
    except ImportError:
        have_vllm = False
    if not (have_vllm and device == "cuda"):
        out["vllm"] = {"status": "unavailable",
                       "reason": "vllm is not installed" if not have_vllm else "no CUDA device"}
    else:
        eng = make_engine("vllm", None, tok, device=torch.device(device), dtype=dtype, model_dir=str(p["base"]),
                          seed=cfg["seed"], gpu_memory_utilization=0.5,
                          max_model_len=t["max_prompt_length"] + t["max_response_length"])
        eng.generate(prompts[:1], n=1, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0)
        tok0, sec0 = eng.tokens_generated, eng.generate_seconds
        eng.generate(prompts, n=1, max_new_tokens=t["max_response_length"], temperature=1.0, top_p=1.0,
                     seed=cfg["seed"])
        toks, secs = eng.tokens_generated - tok0, eng.generate_seconds - sec0
        out["vllm"] = {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs if secs > 0 else None}
        eng.close()
    return out


# ------------------------------------------------------------------------------------------------ warm-up step
def warmup_step(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel
    from mpo.warmup import PadCollator, load_warmup_records, render_example

    cfg, p, device, tok = _setup(args)
    w = cfg["warmup"]
    recs = load_warmup_records(p["data_root"], [d for d in w["datasets"] if d in cfg["datasets"]])
    examples = [e for e in (render_example(tok, r, w["max_length"], w["loss_on"]) for r in recs[:4 * w["batch_size"]])
                if e is not None][: w["batch_size"]]
    batch = {k: v.to(device) for k, v in PadCollator(tok.pad_token_id)(examples).items()}
    bb = AutoModelForCausalLM.from_pretrained(p["base"], dtype=torch.float32)
    mm = MTPModel.from_backbone(bb, args.K).to(device)
    mm.backbone.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in mm.mtp.parameters() if q.requires_grad], lr=w["lr"])
    times = []
    for it in range(cfg["bench"]["warmup_iters"] + (args.repeats or cfg["bench"]["repeats"])):
        t0 = time.perf_counter()
        loss = mm.mtp_ce_loss(batch["input_ids"], batch.get("attention_mask"), loss_mask=batch.get("loss_mask"))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if it >= cfg["bench"]["warmup_iters"]:
            times.append(time.perf_counter() - t0)
    return {"model": p["model"], "K": args.K, "batch_size": len(examples),
            "tokens": int(batch["attention_mask"].sum()), "device": device, **spread(times)}


# ------------------------------------------------------------------------------------------------ pipeline
def pipeline_table(results: Path) -> list[dict]:
    """One row per Snakemake benchmark file under results/benchmarks/rules/<rule>/<wildcards...>.tsv."""
    root = Path(results) / "benchmarks" / "rules"
    rows = []
    for f in sorted(root.rglob("*.tsv")):
        with open(f) as fh:
            recs = list(csv.DictReader(fh, delimiter="\t"))
        if not recs:
            continue
        r = recs[-1]
        rel = f.relative_to(root).with_suffix("")
        rows.append({"rule": rel.parts[0], "job": "/".join(rel.parts[1:]), "s": float(r["s"]),
                     "cpu_time": float(r.get("cpu_time") or "nan"), "max_rss_mb": float(r.get("max_rss") or "nan")})
    return rows


def write_pipeline(rows: list[dict], out_md: Path, out_csv: Path, results: Path) -> None:
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=["rule", "job", "s", "cpu_time", "max_rss_mb"])
        wr.writeheader()
        wr.writerows(rows)
    total = sum(r["s"] for r in rows)
    lines = [f"**Pipeline wall time per rule** — `{results}` (Snakemake `benchmark:` files; job seconds, "
             "summed: jobs that ran in parallel overlap)", "",
             "| Rule | Jobs | Total s | Mean s | Max s | Max RSS (MB) |", "|---|---:|---:|---:|---:|---:|"]
    for rule, rs in sorted(by_rule.items(), key=lambda kv: -sum(r["s"] for r in kv[1])):
        s = [r["s"] for r in rs]
        lines.append(f"| {rule} | {len(rs)} | {sum(s):.1f} | {sum(s) / len(s):.1f} | {max(s):.1f} | "
                     f"{max(r['max_rss_mb'] for r in rs):.0f} |")
    lines.append(f"| **all** | {len(rows)} | {total:.1f} | | | |")
    out_md.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpo.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("update-step", "rollout", "warmup-step", "_one"):
        s = sub.add_parser(name)
        s.add_argument("--config", required=True)
        s.add_argument("--json", required=True, help="output JSON")
        s.add_argument("--model", default=None, help="a model of the config (default: the first)")
        s.add_argument("--dataset", default=None, help="prompts from this dataset's train split (default: gsm8k)")
        s.add_argument("--base", default=None, help="prepared model dir (default results/<name>/models/<model>/base)")
        s.add_argument("--mtp-root", default=None, help="folder holding mtp_k<K>/ (default results/<name>/models/<model>)")
        s.add_argument("--data-root", default=None, help="default results/<name>/data")
        s.add_argument("--repeats", type=int, default=None, help="timed iterations (default: bench.repeats)")
        s.add_argument("--threads", type=int, default=None, help="torch threads (default: bench.threads or all cores)")
        if name == "_one":
            s.add_argument("--variant", required=True)
            s.add_argument("--share-head", action="store_true", help="fresh modules sharing the backbone's LM head")
        if name == "warmup-step":
            s.add_argument("--K", type=int, default=5)
    s = sub.add_parser("pipeline")
    s.add_argument("--results", required=True)
    s.add_argument("--out-md", required=True)
    s.add_argument("--out-csv", required=True)
    args = ap.parse_args(argv)

    from mpo.utils import write_json

    if args.cmd == "pipeline":
        rows = pipeline_table(Path(args.results))
        write_pipeline(rows, Path(args.out_md), Path(args.out_csv), Path(args.results))
        print(Path(args.out_md).read_text())
        return 0
    if args.cmd == "_one":
        write_json(args.json, _one_update_step(args))
        return 0
    if args.cmd == "update-step":
        res = update_step(args)
        write_json(args.json, res)
        print_update_table(res)
    elif args.cmd == "rollout":
        res = rollout(args)
        write_json(args.json, res)
        print(json.dumps({k: res[k] for k in ("hf", "vllm")}, indent=1))
    else:
        res = warmup_step(args)
        write_json(args.json, res)
        print(f"MTP warm-up step (K={res['K']}, batch {res['batch_size']}): median {res['median_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
