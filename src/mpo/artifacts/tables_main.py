"""Tables 1, 2 and 3 of the paper (main results, speed, memory), rebuilt from pipeline outputs, the paper's beside ours.

Each ``tableX(cfg, results) -> Table`` is pure (reads files under the results root). Accuracy cells are
:func:`mpo.artifacts.seeds.accuracy_cell` (mean, 95 % interval when several seeds exist, n = problems x seeds).
"""

from __future__ import annotations

from collections import OrderedDict

from mpo.artifacts.common import MISSING, NA, ZERO_SHOT, Table, bench_path, experiment, fmt, load_json, load_metrics, ours_source, variant_params
from mpo.artifacts.table_helpers import (
    PAPER,
    bench_ratio,
    first_variant,
    max_value,
    median,
    method_columns,
    ordered_rows,
    paper_value,
    ratio,
)
from mpo.artifacts.seeds import INTERVAL_NOTE, accuracy_cell, paired_cell
from mpo.reported import load_reported


# ---------------------------------------------------------------------------------------------------------------
# Table 1: HumanEval pass@1
# ---------------------------------------------------------------------------------------------------------------


PAIRED_COLUMN = "MPO − PPO (paired)"


def _paper_diff(block: dict, model: str, a: str, b: str) -> str:
    va, vb = paper_value(block, model, a), paper_value(block, model, b)
    return NA if NA in (va, vb) else f"{va - vb:+.3f} (no interval)"


def table1(cfg: dict, results) -> Table:
    e = experiment(cfg, "main")
    block = load_reported()["table1_humaneval_pass1"]
    cols = method_columns(cfg, e.variants, e.zero_shot)
    mpo, ppo = first_variant(cfg, e.variants, "mpo"), first_variant(cfg, e.variants, "ppo")
    ours: OrderedDict = OrderedDict()
    has_code = "code" in e.datasets
    for m in e.models:
        row = {"Model": m, "Source": ours_source(cfg)}
        for label, v, _ in cols:
            row[label] = accuracy_cell(results, m, "code", v if has_code else None, cfg)
        row[PAIRED_COLUMN] = paired_cell(results, m, "code", mpo, ppo, cfg) if has_code else MISSING
        ours[m] = [row]
    paper: OrderedDict = OrderedDict()
    for m in block["rows"]:
        row = {"Model": m, "Source": PAPER}
        for label, _, method in cols:
            row[label] = fmt(paper_value(block, m, method))
        row[PAIRED_COLUMN] = _paper_diff(block, m, "mpo", "ppo")
        paper[m] = [row]
    columns = ["Model", "Source"] + [c[0] for c in cols] + [PAIRED_COLUMN]
    notes = ["pass@1 on HumanEval (our `code` dataset: trained on MBPP or its stand-in, tested on HumanEval).",
             INTERVAL_NOTE + f" Variants compared: MPO = `{mpo or MISSING}`, PPO = `{ppo or MISSING}`."]
    if not has_code:
        notes.append("Experiment `main` of this config does not train on `code`, so every cell of ours is MISSING "
                     "(table `main_comparison` has the datasets it trains on).")
    return Table("table1", "Table 1: HumanEval pass@1", columns, ordered_rows(ours, paper), notes,
                 align={"Model": "l", "Source": "l"})


# ---------------------------------------------------------------------------------------------------------------
# The main comparison on every dataset of experiment `main` (not a paper table: the paper shows GSM8K/MATH as bars)
# ---------------------------------------------------------------------------------------------------------------


def main_comparison(cfg: dict, results) -> Table:
    """pass@1 of zero-shot and each method of experiment `main` on each of its datasets (one row per method), with
    intervals over problems and seeds, and two paired bootstraps per method: against the untrained model and against
    PPO. The numbers behind Figure 3 (and Table 1 where `code` is trained)."""
    e = experiment(cfg, "main")
    cols = method_columns(cfg, e.variants, e.zero_shot)
    ppo = first_variant(cfg, e.variants, "ppo")
    vs_zs, vs_ppo = "− zero-shot (paired)", "− PPO (paired)"
    rv_col, cf_col = "ratio variance", "clip fraction"
    rows = []
    for m in e.models:
        for d in e.datasets + e.skipped_datasets:
            trained = d in e.datasets
            for label, v, method in cols:
                row = {"Model": m, "Dataset": d, "Source": ours_source(cfg), "Method": label,
                       "pass@1": accuracy_cell(results, m, d, v if trained else None, cfg)}
                is_zs = v == ZERO_SHOT
                row[vs_zs] = NA if is_zs else (paired_cell(results, m, d, v, ZERO_SHOT, cfg) if trained and e.zero_shot
                                               else MISSING)
                row[vs_ppo] = NA if is_zs or v == ppo else (paired_cell(results, m, d, v, ppo, cfg) if trained
                                                            else MISSING)
                row[rv_col], row[cf_col] = ((NA, NA) if is_zs else _ratio_cells(cfg, results, m, d, v) if trained
                                            else (MISSING, MISSING))
                rows.append(row)
    columns = ["Model", "Dataset", "Source", "Method", "pass@1", vs_zs, vs_ppo, rv_col, cf_col]
    notes = ["pass@1 (greedy) on each test set of experiment `main`. " + INTERVAL_NOTE.replace("MPO − PPO", "− PPO")
             + " − zero-shot: the same paired bootstrap against the untrained model's grades (evaluated once, so"
             " paired with every seed).",
             "ratio variance, clip fraction: the variance of the importance ratio each method clips (MPO: the block "
             "ratio r̃; the others: the token ratio; GSPO: the sequence ratio) and the fraction of clipped tokens, "
             "averaged over the training steps whose advantages are not all zero, mean over seeds ± 95 % Student-t "
             "half-width over the seeds' run means (one seed: over its steps); the signal steps and seeds counted.",
             "The paper gives no numbers to set beside these: its Figure 3 shows GSM8K/MATH as bars without values "
             "(its MPO numbers are in Tables 5(a) and 6, its HumanEval numbers in Table 1)."]
    return Table("main_comparison", "Main comparison: pass@1 of every method with 95 % intervals and paired tests",
                 columns, rows, notes, align={"Model": "l", "Dataset": "l", "Source": "l", "Method": "l"})


def _ratio_cells(cfg: dict, results, model: str, dataset: str, variant: str) -> tuple[str, str]:
    """(ratio variance, clip fraction) over the non-zero-advantage steps of every seed's run (MISSING without runs)."""
    from mpo.artifacts.collect import seed_runs, step_stats
    from mpo.artifacts.metrics import ratio_var_column

    runs = seed_runs(cfg, results, model, dataset, variant)
    if not runs:
        return MISSING, MISSING
    out = []
    for col_of, spec in ((ratio_var_column, ".2e"), (lambda df: "clip_frac" if "clip_frac" in df.columns else None,
                                                     ".4f")):
        st = step_stats(runs, col_of)
        if not st["n_steps"]:
            out.append(MISSING)
            continue
        hw = "" if st["lo"] != st["lo"] else f" ± {(st['hi'] - st['lo']) / 2:{spec}}"
        out.append(f"{st['mean']:{spec}}{hw} ({st['n_steps']} steps, {st['n_seeds']} seed{'s' * (st['n_seeds'] > 1)})")
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------------------
# Table 2: seconds per iteration (PPO, MPO K=3, K=5)
# ---------------------------------------------------------------------------------------------------------------


def load_bench(results) -> dict | None:
    return load_json(bench_path(results))


def _bench_entry(bench: dict | None, key: str) -> dict | None:
    if not bench:
        return None
    entry = bench.get(key)
    if entry is None and isinstance(bench.get("results"), dict):
        entry = bench["results"].get(key)
    return entry if isinstance(entry, dict) else None


def _bench_model(cfg: dict, bench: dict | None) -> str:
    if bench and isinstance(bench.get("model"), str):
        return bench["model"]
    return next(iter(cfg["models"]))


def _train_stats(cfg: dict, results, model: str, dataset: str, variant: str | None) -> dict:
    """Median seconds per training step and peak memory (MB) of a run; None where absent."""
    if variant is None:
        return {"seconds": None, "peak_mem_mb": None}
    df = load_metrics(results, model, dataset, variant, cfg)
    if df is None:
        return {"seconds": None, "peak_mem_mb": None}
    return {
        "seconds": median(df["time_step"]) if "time_step" in df.columns else None,
        "peak_mem_mb": max_value(df["peak_mem_mb"]) if "peak_mem_mb" in df.columns else None,
    }


TABLE2_COLUMNS = [("PPO", "ppo", None), ("MPO K=3", "mpo", 3), ("MPO K=5", "mpo", 5)]


def table2(cfg: dict, results) -> Table:
    e = experiment(cfg, "efficiency")
    block = load_reported()["table2_speed_s_per_iter"]
    paper_keys = {"PPO": "ppo", "MPO K=3": "mpo_k3", "MPO K=5": "mpo_k5"}
    variants = {label: first_variant(cfg, e.variants, method, K) for label, method, K in TABLE2_COLUMNS}
    ds = e.datasets[0] if e.datasets else None
    bench = load_bench(results)
    bmodel = _bench_model(cfg, bench)

    def finish(row: dict, values: dict, ratios: dict | None = None) -> dict:
        for label, _, _ in TABLE2_COLUMNS:
            row[label] = values[label] if isinstance(values[label], str) else fmt(values[label], 2)
        for label in ("MPO K=3", "MPO K=5"):  # the benchmark's own (paired) ratio where it has one
            row[f"K={label[-1]} / PPO"] = bench_ratio((ratios or {}).get(label), values[label], values["PPO"])
        return row

    ours: OrderedDict = OrderedDict()
    for m in e.models:
        vals = {label: (_train_stats(cfg, results, m, ds, v)["seconds"] if ds else None) for label, v in variants.items()}
        ours.setdefault(m, []).append(
            finish({"Model": m, "Source": ours_source(cfg, f"training, median s/step on {ds or MISSING}")}, vals))
    vals, ratios = {}, {}
    for label, _, _ in TABLE2_COLUMNS:
        entry = _bench_entry(bench, paper_keys[label])
        vals[label] = entry.get("median_s") if entry else None
        ratios[label] = entry.get("ratio_to_ppo") if entry else None
    device = (bench or {}).get("device")
    what = "update-step benchmark, median s" + (f" ({device})" if device else "")
    ours.setdefault(bmodel, []).append(finish({"Model": bmodel, "Source": ours_source(cfg, what)}, vals, ratios))
    paper: OrderedDict = OrderedDict()
    for m in block["rows"]:
        vals = {label: paper_value(block, m, paper_keys[label]) for label, _, _ in TABLE2_COLUMNS}
        paper[m] = [finish({"Model": m, "Source": f"{PAPER} (8x A100 80GB)"}, vals)]
    columns = ["Model", "Source"] + [c[0] for c in TABLE2_COLUMNS] + ["K=3 / PPO", "K=5 / PPO"]
    notes = [
        "Seconds per training iteration (the paper) vs. our median seconds per training step (rollout + old log-probs"
        " + update, from metrics.jsonl) and the median time of one isolated update step (benchmarks/update_step.json).",
        "Ratios to PPO are comparable across hardware; absolute times are not. The benchmark's ratios are its own"
        " `ratio_to_ppo`: with `bench.interleave` each method's updates alternate with PPO's and are divided by"
        " those paired PPO updates (machine speed drifts), so they can differ from the ratio of the printed medians.",
        f"Variants: {', '.join(f'{k} = `{v}`' for k, v in variants.items() if v)}.",
    ]
    return Table("table2", "Table 2: training speed (seconds per iteration)", columns, ordered_rows(ours, paper), notes,
                 align={"Model": "l", "Source": "l"})


# ---------------------------------------------------------------------------------------------------------------
# Table 3: memory and time per step (PPO, GRPO group 4, MPO K=5)
# ---------------------------------------------------------------------------------------------------------------


def table3(cfg: dict, results) -> Table:
    e = experiment(cfg, "efficiency")
    block = load_reported()["table3_memory_time"]
    spec = [("ppo", "ppo", None, "ppo"), ("grpo", "grpo", None, "grpo"), ("mpo", "mpo", 5, "mpo_k5")]
    variants = {key: first_variant(cfg, e.variants, method, K) for key, method, K, _ in spec}

    def label(key: str) -> str:
        v = variants[key]
        if key == "grpo":
            g = variant_params(cfg, v)["group_size"] if v else None
            return f"GRPO (group size {g if g is not None else '?'})"
        return "MPO (K=5)" if key == "mpo" else "PPO"

    bench = load_bench(results)
    bmodel = _bench_model(cfg, bench)
    total_mb = (bench or {}).get("device_total_mem_mb") or (bench or {}).get("total_mem_mb")
    ds = e.datasets[0] if e.datasets else None
    rows = []
    ppo_sec = (_bench_entry(bench, "ppo") or {}).get("median_s")

    def bench_row(lab: str, bench_key: str) -> dict:
        entry = _bench_entry(bench, bench_key)
        mem = entry.get("peak_mem_mb") if entry else None
        sec = entry.get("median_s") if entry else None
        return {
            "Method": lab, "Model": bmodel, "Source": ours_source(cfg, "update-step benchmark"),
            "Peak memory (MB)": fmt(mem, 0), "Memory fraction": (fmt(mem / total_mb, 3) if (mem and total_mb) else
                                                                  (MISSING if mem is None else NA)),
            "Time per step (s)": fmt(sec, 3),
            "Time / PPO": bench_ratio(entry.get("ratio_to_ppo") if entry else None, sec, ppo_sec),
        }

    for key, _, _, bench_key in spec:
        lab = label(key)
        rows.append(bench_row(lab, bench_key))
        # training rows
        for m in e.models:
            st = _train_stats(cfg, results, m, ds, variants[key]) if ds else {"seconds": None, "peak_mem_mb": None}
            ppo = _train_stats(cfg, results, m, ds, variants["ppo"]) if ds else {"seconds": None}
            rows.append({
                "Method": lab, "Model": m, "Source": ours_source(cfg, f"training on {ds or MISSING}"),
                "Peak memory (MB)": fmt(st["peak_mem_mb"], 0), "Memory fraction": NA,
                "Time per step (s)": fmt(st["seconds"], 3), "Time / PPO": ratio(st["seconds"], ppo["seconds"]),
            })
        # paper row
        pcols = block["columns"]
        prow = block["rows"].get(key)
        frac = prow[pcols.index("gpu_memory_fraction")] if prow else None
        psec = prow[pcols.index("seconds_per_step")] if prow else None
        rows.append({
            "Method": lab, "Model": "deepseek-r1-distill-qwen-1.5b", "Source": f"{PAPER} (A100 80GB)",
            "Peak memory (MB)": NA, "Memory fraction": fmt(frac, 3) if frac is not None else NA,
            "Time per step (s)": fmt(psec, 1) if psec is not None else NA,
            "Time / PPO": ratio(psec, block["rows"]["ppo"][pcols.index("seconds_per_step")]),
        })
    if cfg["bench"]["shared_head"]:  # beyond the paper: K=5 modules sharing the backbone's LM head (mtp.share_head)
        rows.append(bench_row("MPO (K=5, shared LM head)", "mpo_k5_shared_head"))
    columns = ["Method", "Model", "Source", "Peak memory (MB)", "Memory fraction", "Time per step (s)", "Time / PPO"]
    notes = [
        "The paper gives GPU memory as a fraction of one A100 80GB and seconds per step; ours: peak memory in MB"
        " (fraction of the device's memory where the benchmark records it) and the median seconds of one isolated"
        " update step (benchmark) or of a whole training step (training). A benchmark row's Time / PPO is the"
        " benchmark's own `ratio_to_ppo`: with `bench.interleave` against the PPO updates it alternated with.",
        f"Variants: {', '.join(f'`{v}`' for v in variants.values() if v)}.",
    ]
    if cfg["bench"]["shared_head"]:
        notes.append("MPO (K=5, shared LM head), beyond the paper: the same update with freshly initialised modules that"
                     " use the backbone's LM head (mtp.share_head, as DeepSeek-V3 does) instead of four [vocab, d] copies.")
    return Table("table3", "Table 3: memory and time per step", columns, rows, notes,
                 align={"Method": "l", "Model": "l", "Source": "l"})
