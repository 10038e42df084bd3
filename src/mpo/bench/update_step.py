"""**update-step**: one full training update of the real trainer per method, on one identical batch (see
``mpo.bench``), each method in its own process; PPO's updates interleaved with every other method's."""

from __future__ import annotations

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

from mpo.bench.common import bench_paths, check_inputs, current_rss_mb, device_total_mem_mb, spread

METHODS = {"ppo": "ppo", "grpo": "grpo", "mpo_k2": "mpo_k2", "mpo_k3": "mpo_k3", "mpo_k5": "mpo_k5"}
# beyond the paper: MPO K=5 with the modules sharing the backbone's LM head (``mtp.share_head``, DeepSeek-V3 style)
SHARED_HEAD = {"mpo_k5_shared_head": "mpo_k5"}


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
        self.p = bench_paths(cfg, args)
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
    p = bench_paths(cfg, args)
    check_inputs(p)
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
