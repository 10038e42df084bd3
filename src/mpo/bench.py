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
allocated on GPU) is its own. ``bench.warmup_iters`` untimed updates, then ``bench.repeats`` timed ones; with
``bench.interleave`` (default) PPO's process stays up and every other method's timed updates alternate with PPO's,
so each ratio to PPO compares updates made side by side in time (machine speed drifts; measured here: the same PPO
update took 10.5 s and 13.7 s twenty minutes apart). The JSON
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
class _UpdateRunner:
    """One method's trainer and the fixed batch, in its own process: :meth:`iteration` times one full update."""

    def __init__(self, args):
        from mpo.config import load_config
        from mpo.train.variants import resolve_variant
        from mpo.utils import set_threads

        self.args = args
        self.cfg = cfg = load_config(args.config)
        self.b = cfg["bench"]
        set_threads(args.threads or self.b["threads"] or os.cpu_count() or 1)
        self.p = _paths(cfg, args)
        self.common = common_train_sizes(cfg)
        cfg["train"] = self.common["train"]  # same rows, same mini batches for every method
        self.spec = resolve_variant(cfg, args.variant)
        self.tmp = Path(tempfile.mkdtemp(prefix="mpo-bench-"))  # fresh modules (K=5: ~0.5 GB at 135M), run dir
        try:
            self._setup()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _setup(self) -> None:
        import torch

        from mpo.mtp import MTPModel
        from mpo.train.trainer import Trainer

        cfg, spec, p, args = self.cfg, self.spec, self.p, self.args
        mtp_dir, self.modules = None, None
        if spec["uses_mtp_modules"]:
            mtp_dir = p["mtp_root"] / f"mtp_k{spec['K']}"
            self.modules = "warmed-up"
            if args.share_head or not (mtp_dir / "mtp_config.json").is_file():
                from transformers import AutoModelForCausalLM

                share = bool(args.share_head or cfg["mtp"]["share_head"])
                mtp_dir, self.modules = self.tmp / f"mtp_k{spec['K']}", "fresh init" + (", shared LM head" if share else "")
                bb = AutoModelForCausalLM.from_pretrained(p["base"], dtype=torch.float32)
                MTPModel.from_backbone(bb, spec["K"], share_head=share).save_modules(mtp_dir)
                del bb
        self.tr = tr = Trainer(cfg, model=p["model"], dataset=p["dataset"], variant=args.variant, base=p["base"],
                               data_root=p["data_root"], out=self.tmp / "run", mtp=mtp_dir)
        n = tr.sizes.responses
        assert n == self.common["n"], (n, self.common)
        vocab = tr.acc.unwrap_model(tr.actor).backbone.config.vocab_size
        self.resp_len = self.b["response_len"] or cfg["train"]["max_response_length"]
        batch, self.digest = fixed_batch(tr.records, n, self.common["G"], self.resp_len, vocab,
                                         tr.tokenizer.pad_token_id, cfg["seed"])
        self.batch = batch.to(tr.device)
        self.dev = tr.device
        self.base_rss = current_rss_mb()
        self.base_cuda = 0.0
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
            self.base_cuda = torch.cuda.memory_allocated(self.dev) / 2**20
        self.load0 = os.getloadavg()[0]
        self.count = 0

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            import torch

            torch.cuda.synchronize(self.dev)

    def iteration(self, timed: bool) -> dict:
        """One update (score + update) on a copy of the fixed batch: wall / CPU / phase seconds."""
        import copy

        self.count += 1
        bt = copy.copy(self.batch)
        bt.resp, bt.row = dict(self.batch.resp), dict(self.batch.row)
        c0, t0 = time.process_time(), time.perf_counter()
        self.tr._advantages(bt, self.tr._score(bt))
        self._sync()
        t1 = time.perf_counter()
        self.tr._update(bt, self.count)
        self._sync()
        t2, c2 = time.perf_counter(), time.process_time()
        print(f"[bench] {self.args.variant}: iteration {self.count} {'' if timed else '(untimed) '}{t2 - t0:.3f} s "
              f"(CPU {c2 - c0:.3f} s)", file=sys.stderr, flush=True)
        return {"wall": t2 - t0, "cpu": c2 - c0, "score": t1 - t0, "update": t2 - t1}

    def result(self, recs: list[dict]) -> dict:
        import resource

        import torch

        if self.dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.dev) / 2**20
            delta = max(0.0, peak - self.base_cuda)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            delta = max(0.0, peak - self.base_rss)
        cfg, spec, tr = self.cfg, self.spec, self.tr
        return {**spread([r["wall"] for r in recs]), "peak_mem_mb": peak, "update_peak_delta_mb": delta,
                "score_median_s": statistics.median(r["score"] for r in recs),
                "update_median_s": statistics.median(r["update"] for r in recs),
                # process CPU seconds (all threads): far less sensitive than wall time to other jobs on the machine
                "cpu_median_s": statistics.median(r["cpu"] for r in recs), "cpu_times_s": [r["cpu"] for r in recs],
                "loadavg_1min": [self.load0, os.getloadavg()[0]], "threads": torch.get_num_threads(),
                "variant": self.args.variant, "method": spec["method"], "K": spec["K"],
                "group_size": spec["group_size"], "batch_hash": self.digest, "responses": self.common["n"],
                "response_len": self.resp_len, "prompt_len": self.batch.prompt_len,
                "batch_group_size": self.common["G"], "mini_batch_size": self.common["mini"],
                "response_tokens": int(self.batch.resp["mask"].sum()), "mtp_modules": self.modules,
                "share_head": bool(getattr(tr.acc.unwrap_model(tr.actor), "share_head", False)),
                "device": str(self.dev), "device_total_mem_mb": device_total_mem_mb(self.dev),
                "optimizer_steps_per_update": tr.sizes.n_mini * cfg["train"]["ppo_epochs"]}

    def close(self) -> None:
        try:
            self.tr.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _one_update_step(args) -> dict:
    """Runs in a subprocess: one method, `warmup_iters` untimed + `repeats` timed updates, back to back."""
    r = _UpdateRunner(args)
    try:
        for _ in range(r.b["warmup_iters"]):
            r.iteration(False)
        return r.result([r.iteration(True) for _ in range(args.repeats)])
    finally:
        r.close()


def _serve(args) -> None:
    """Runs in a subprocess (``_one --serve FD``): set up once, then obey the parent, one line per command on
    stdin -- ``untimed`` / ``timed`` (one update, answered with its timings) and ``result`` (the JSON of every
    timed update so far) -- answering on file descriptor FD (stdout stays free for library output)."""
    r = _UpdateRunner(args)
    recs: list[dict] = []
    with os.fdopen(args.serve, "w") as reply:
        def say(obj) -> None:
            reply.write(json.dumps(obj) + "\n")
            reply.flush()

        try:
            say({"ready": True})
            for line in sys.stdin:
                cmd = line.strip()
                if cmd in ("timed", "untimed"):
                    rec = r.iteration(cmd == "timed")
                    if cmd == "timed":
                        recs.append(rec)
                    say(rec)
                elif cmd == "result":
                    say(r.result(recs))
                    break
                else:
                    raise ValueError(f"mpo.bench _one --serve: unknown command {cmd!r} (timed, untimed, result)")
        finally:
            r.close()


class _Server:
    """Parent side of :func:`_serve`: one method's process, kept alive to interleave its updates with PPO's."""

    def __init__(self, cmd: list[str], what: str):
        rfd, wfd = os.pipe()
        self.what = what
        self.proc = subprocess.Popen([*cmd, "--serve", str(wfd)], stdin=subprocess.PIPE, text=True, pass_fds=(wfd,))
        os.close(wfd)
        self.reply = os.fdopen(rfd)
        self._read()  # {"ready": true} once the trainer is built

    def _read(self) -> dict:
        line = self.reply.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"benchmark of {self.what} failed (exit {code}); see the output above")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()
        self.reply.close()


def update_step(args) -> dict:
    """Every method on the fixed batch. ``bench.interleave`` (default): PPO's process stays alive and each other
    method's timed updates alternate with PPO's (PPO, X, X, PPO, PPO, X, ...), so a ratio to PPO compares updates
    made minutes, not tens of minutes, apart -- on a shared or throttled machine speed drifts -- and each ratio
    is the ratio of the medians of those paired updates. Two processes are resident at a time (peak memory is
    still per process). ``interleave: false``: each method alone in turn, ratios to PPO's own median."""
    from mpo.config import load_config
    from mpo.runinfo import library_versions

    cfg = load_config(args.config)
    p = _paths(cfg, args)
    _check_inputs(p)
    b = cfg["bench"]
    repeats = args.repeats or b["repeats"]
    interleave = bool(b["interleave"])
    out: dict = {"what": "median wall seconds (and process CPU seconds) of one training update - old log-probs + "
                         "reference + critic values + advantages, then every mini-batch forward/backward/optimizer "
                         "step, MTP terms where used - on one identical batch; peak memory per method in its own "
                         "process" + ("; each method's timed updates alternate with PPO's (paired ratios)"
                                      if interleave else ""),
                 "model": p["model"], "dataset": p["dataset"], "repeats": repeats, "interleave": interleave,
                 "warmup_iters": b["warmup_iters"], "config": cfg["name"], "scale": cfg["scale"],
                 "threads": args.threads or b["threads"] or os.cpu_count()}
    versions = library_versions()
    out.update({k: versions.get(k) for k in ("torch", "transformers", "accelerate")})
    methods = {**METHODS, **(SHARED_HEAD if b["shared_head"] else {})}
    for key, variant in methods.items():
        if variant not in cfg["variants"]:
            out[key] = {"status": "missing", "reason": f"variant {variant!r} is not defined in the config"}

    def cmd_for(key: str) -> list[str]:
        cmd = [sys.executable, "-m", "mpo.bench", "_one", "--config", args.config, "--variant", methods[key],
               "--repeats", str(repeats), "--model", p["model"], "--dataset", p["dataset"], "--base", str(p["base"]),
               "--mtp-root", str(p["mtp_root"]), "--data-root", str(p["data_root"])]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if key in SHARED_HEAD:
            cmd += ["--share-head"]
        return cmd

    todo = [k for k in methods if "status" not in out.get(k, {})]
    if interleave and "ppo" in todo:
        _interleaved(out, todo, cmd_for, b["warmup_iters"], repeats)
    else:
        for key in todo:
            with tempfile.TemporaryDirectory() as td:
                res_file = Path(td) / "one.json"
                print(f"[bench] {key} ({methods[key]}) ...", file=sys.stderr, flush=True)
                proc = subprocess.run([*cmd_for(key), "--json", str(res_file)])
                if proc.returncode != 0:
                    raise SystemExit(f"benchmark of {methods[key]} failed (exit {proc.returncode}); see the output above")
                out[key] = json.loads(res_file.read_text())
    ppo = out.get("ppo", {})
    for key in methods:
        e = out[key]
        if "median_s" in e and "median_s" in ppo:
            # interleaved: against the PPO updates this method alternated with; else PPO's own medians
            ref_s = e.get("ppo_paired_median_s", ppo["median_s"])
            ref_cpu = e.get("ppo_paired_cpu_median_s", ppo["cpu_median_s"])
            e["ratio_to_ppo"] = e["median_s"] / ref_s
            e["cpu_ratio_to_ppo"] = e["cpu_median_s"] / ref_cpu if ref_cpu > 0 else None
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


def _interleaved(out: dict, todo: list[str], cmd_for, warmup: int, repeats: int) -> None:
    """PPO stays up; every other method's timed updates alternate with PPO's (the order flips each round)."""
    print("[bench] ppo (paired with every other method) ...", file=sys.stderr, flush=True)
    ppo = _Server(cmd_for("ppo"), "ppo")
    try:
        for _ in range(warmup):
            ppo.ask("untimed")
        for key in todo:
            if key == "ppo":
                continue
            print(f"[bench] {key} (alternating with ppo) ...", file=sys.stderr, flush=True)
            x = _Server(cmd_for(key), key)
            try:
                for _ in range(warmup):
                    x.ask("untimed")
                paired = []
                for i in range(repeats):
                    order = (ppo, x) if i % 2 == 0 else (x, ppo)
                    recs = {srv: srv.ask("timed") for srv in order}
                    paired.append(recs[ppo])
                out[key] = x.ask("result")
            finally:
                x.close()
            out[key]["ppo_paired_median_s"] = statistics.median(r["wall"] for r in paired)
            out[key]["ppo_paired_cpu_median_s"] = statistics.median(r["cpu"] for r in paired)
        out["ppo"] = ppo.ask("result")
    finally:
        ppo.close()


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
        s.add_argument("--json", required=name != "_one", help="output JSON")
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
            s.add_argument("--serve", type=int, default=None, metavar="FD",
                           help="internal: stay up and run updates on command (see _serve), answering on FD")
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
        if args.serve is not None:
            _serve(args)
        elif not args.json:
            ap.error("_one: --json is required without --serve")
        else:
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
