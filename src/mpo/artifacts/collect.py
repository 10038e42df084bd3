"""The data behind each figure, as tidy DataFrames (written next to the figure as CSV).

``<fig>_data(cfg, results) -> DataFrame``; every frame has a ``status`` column: ``ok`` or ``MISSING`` (the run,
evaluation or warm-up file is absent — a MISSING row carries no numbers, never a guess). Rows follow the config's
order (models, then datasets, then the experiment's variants), so the CSV is deterministic.
"""

from __future__ import annotations

import math

import pandas as pd

from mpo.artifacts.common import (
    METHOD_LABELS,
    MISSING,
    ZERO_SHOT,
    eval_pass1,
    experiment,
    load_json,
    load_metrics,
    variant_label,
    variant_params,
    warmup_metrics_path,
)
from mpo import stats
from mpo.artifacts.collect_beyond import beyond_curves_data, seed_runs, signal_steps  # noqa: F401 (beyond_curves_data: registry)
from mpo.artifacts.metrics import module_columns, ratio_var_column
from mpo.artifacts.seeds import accuracy

OK = "ok"


def meta(cfg: dict) -> dict:
    """What every figure prints in its title: the scale and the config name."""
    return {"scale": cfg["scale"], "config": cfg["name"]}


def _vinfo(cfg: dict, v: str) -> dict:
    p = variant_params(cfg, v)
    return {"variant": v, "method": p["method"], "label": variant_label(cfg, v), "K": p["K"], "gamma": p["gamma"],
            "mtp_share": p["mtp_share"], "value_heads": p["value_heads"], "mtp_grad": p["mtp_grad"]}


def _mean(s: pd.Series | None) -> float:
    if s is None:
        return math.nan
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.mean()) if len(s) else math.nan


# ---------------------------------------------------------------------------------------------------------------


FIG3_COLUMNS = ["model", "dataset", "variant", "method", "label", "pass_at_1", "lo", "hi", "n_problems", "n_seeds",
                "status"]


def fig3_data(cfg: dict, results) -> pd.DataFrame:
    """pass@1 on GSM8K and MATH of zero-shot and every method of the `main` experiment: the mean over the
    experiment's seeds with its 95 % interval (``lo``/``hi``, :func:`mpo.artifacts.seeds.accuracy`; empty with one
    seed) and n = ``n_problems`` x ``n_seeds``."""
    e = experiment(cfg, "main")
    cols = ([ZERO_SHOT] if e.zero_shot else []) + e.variants
    rows = []
    for m in e.models:
        for d in [x for x in ("gsm8k", "math") if x in e.datasets + e.skipped_datasets]:
            for v in cols:
                info = ({"variant": ZERO_SHOT, "method": ZERO_SHOT, "label": METHOD_LABELS[ZERO_SHOT]} if v == ZERO_SHOT
                        else {k: _vinfo(cfg, v)[k] for k in ("variant", "method", "label")})
                if sum(variant_params(cfg, x)["method"] == info["method"] for x in e.variants) <= 1 or v == ZERO_SHOT:
                    info["label"] = METHOD_LABELS.get(info["method"], info["method"].upper())
                acc = accuracy(results, m, d, v, cfg) if d in e.datasets else None
                iv = acc[0] if acc else None
                rows.append({"model": m, "dataset": d, **info, "pass_at_1": iv.mean if iv else None,
                             "lo": iv.lo if iv else None, "hi": iv.hi if iv else None,
                             "n_problems": acc[1] if acc else None, "n_seeds": acc[2] if acc else None,
                             "status": OK if iv is not None else MISSING})
    out = pd.DataFrame(rows, columns=FIG3_COLUMNS)
    for c in ("n_problems", "n_seeds"):
        out[c] = out[c].astype("Int64")
    return out


FIG4_COLUMNS = ["model", "dataset", "variant", "label", "mtp_share", "K", "gamma", "step", "ratio_var",
                "ratio_var_of", "clip_frac", "adv_signal", "status"]


def fig4_data(cfg: dict, results) -> pd.DataFrame:
    """Per-step variance of the importance ratio (rtilde for MPO, the token ratio for PPO) and clip fraction;
    ``adv_signal`` False marks a step whose rewards were all equal (zero advantages; the figure leaves it out)."""
    e = experiment(cfg, "mtp_share")
    rows = []
    for m in e.models:
        for d in e.datasets:
            for v in e.variants:
                info = _vinfo(cfg, v)
                base = {"model": m, "dataset": d, "variant": v, "label": info["label"], "mtp_share": info["mtp_share"],
                        "K": info["K"], "gamma": info["gamma"]}
                df = load_metrics(results, m, d, v, cfg)
                if df is None or "step" not in df.columns:
                    rows.append({**base, "status": MISSING})
                    continue
                rc = ratio_var_column(df)
                for (_, r), sig in zip(df.iterrows(), signal_steps(df)):
                    rows.append({**base, "step": int(r["step"]),
                                 "ratio_var": r[rc] if rc else math.nan, "ratio_var_of": rc or "",
                                 "clip_frac": r["clip_frac"] if "clip_frac" in df.columns else math.nan,
                                 "adv_signal": None if pd.isna(sig) else bool(sig), "status": OK})
    return pd.DataFrame(rows, columns=FIG4_COLUMNS)


FIG6_COLUMNS = ["model", "dataset", "variant", "label", "mtp_share", "K", "gamma", "pass_at_1", "ratio_var_mean",
                "ratio_var_lo", "ratio_var_hi", "clip_frac_mean", "clip_frac_lo", "clip_frac_hi", "n_steps", "n_seeds",
                "interval_over", "eval_status", "run_status"]


def step_stats(runs: list[pd.DataFrame], col_of) -> dict:
    """Mean of a per-step metric over the steps with non-zero advantages, with a 95 % t interval: over the seeds'
    run means with 2+ seeds, else over the steps of the one run."""
    per_run, steps = [], []
    for df in runs:
        col = col_of(df)
        if col is None:
            continue
        keep = signal_steps(df).fillna(True).astype(bool)
        vals = pd.to_numeric(df.loc[keep, col], errors="coerce").dropna().tolist()
        if vals:
            per_run.append(sum(vals) / len(vals))
            steps += vals
    iv = stats.mean_ci(per_run if len(per_run) >= 2 else steps)
    if iv is None:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_steps": 0, "n_seeds": 0}
    return {"mean": iv.mean, "lo": iv.lo if iv.lo is not None else math.nan,
            "hi": iv.hi if iv.hi is not None else math.nan, "n_steps": len(steps), "n_seeds": len(per_run)}


def fig6_data(cfg: dict, results) -> pd.DataFrame:
    """pass@1 (mean over seeds), and mean ratio variance and clip fraction over the steps with non-zero advantages
    (95 % intervals), against the cumulative MTP share W."""
    e = experiment(cfg, "mtp_share")
    rows = []
    for m in e.models:
        for d in e.datasets:
            for v in e.variants:
                info = _vinfo(cfg, v)
                acc = accuracy(results, m, d, v, cfg)
                runs = seed_runs(cfg, results, m, d, v)
                rv = step_stats(runs, ratio_var_column)
                cf = step_stats(runs, lambda df: "clip_frac" if "clip_frac" in df.columns else None)
                rows.append({
                    "model": m, "dataset": d, "variant": v, "label": info["label"], "mtp_share": info["mtp_share"],
                    "K": info["K"], "gamma": info["gamma"], "pass_at_1": acc[0].mean if acc else None,
                    "ratio_var_mean": rv["mean"], "ratio_var_lo": rv["lo"], "ratio_var_hi": rv["hi"],
                    "clip_frac_mean": cf["mean"], "clip_frac_lo": cf["lo"], "clip_frac_hi": cf["hi"],
                    "n_steps": rv["n_steps"], "n_seeds": rv["n_seeds"],
                    "interval_over": "seeds" if rv["n_seeds"] >= 2 else "steps",
                    "eval_status": OK if acc else MISSING,
                    "run_status": OK if runs else MISSING,
                })
    out = pd.DataFrame(rows, columns=FIG6_COLUMNS)
    return out.sort_values(["model", "dataset", "mtp_share"], kind="stable").reset_index(drop=True)


FIG7_COLUMNS = ["model", "dataset", "variant", "label", "K", "mtp_share", "source", "step", "module", "mean_rank",
                "top1", "grad_norm", "status"]


def _warmup_rows(results, model: str, K: int) -> list[dict] | None:
    """Held-out top-1 / mean rank per MTP module before and after the warm-up (mpo.warmup's metrics.json:
    ``heldout.{before,after}.{top1,mean_rank}``, one entry per predictor, index 0 = the backbone), or None if absent."""
    w = load_json(warmup_metrics_path(results, model, K))
    if w is None:
        return None
    rows = []
    for phase in ("before", "after"):
        block = (w.get("heldout") or {}).get(phase) or w.get(phase) or {}
        top1, rank = block.get("top1") or [], block.get("mean_rank") or []
        for k in range(1, int(K)):
            rows.append({"source": f"warmup_{phase}", "module": k,
                         "top1": top1[k] if k < len(top1) else math.nan,
                         "mean_rank": rank[k] if k < len(rank) else math.nan})
    return rows


def fig7_data(cfg: dict, results) -> pd.DataFrame:
    """Per step and MTP module: mean rank and top-1 of the realised token, batch grad norm; warm-up held-out rows."""
    e = experiment(cfg, "mtp_noise")
    rows = []
    warm_done = set()
    for m in e.models:
        for d in e.datasets:
            for v in e.variants:
                info = _vinfo(cfg, v)
                base = {"model": m, "dataset": d, "variant": v, "label": info["label"], "K": info["K"],
                        "mtp_share": info["mtp_share"]}
                if info["K"] and info["K"] > 1 and (m, info["K"]) not in warm_done:
                    warm_done.add((m, info["K"]))
                    wr = _warmup_rows(results, m, info["K"])
                    if wr is None:
                        rows.append({**base, "dataset": "", "variant": "", "label": f"warm-up K={info['K']}",
                                     "mtp_share": math.nan, "source": "warmup", "status": MISSING})
                    else:
                        rows += [{**base, "dataset": "", "variant": "", "label": f"warm-up K={info['K']}",
                                  "mtp_share": math.nan, **r, "status": OK} for r in wr]
                df = load_metrics(results, m, d, v, cfg)
                if df is None or "step" not in df.columns:
                    rows.append({**base, "source": "train", "status": MISSING})
                    continue
                ranks, top1s = module_columns(df, "mtp_rank"), module_columns(df, "mtp_top1")
                for k in sorted(set(ranks) | set(top1s)):
                    for _, r in df.iterrows():
                        rows.append({**base, "source": "train", "step": int(r["step"]), "module": k,
                                     "mean_rank": r[ranks[k]] if k in ranks else math.nan,
                                     "top1": r[top1s[k]] if k in top1s else math.nan,
                                     "grad_norm": r["grad_norm"] if "grad_norm" in df.columns else math.nan,
                                     "status": OK})
    return pd.DataFrame(rows, columns=FIG7_COLUMNS)


CURVE_METRICS = ["reward", "response_length", "approx_kl", "clip_frac"]
LONG_COLUMNS = ["model", "dataset", "variant", "method", "label", "mtp_grad", "step", "metric", "value", "status"]


def _long_metrics(cfg: dict, results, exp: str, metrics: list[str]) -> list[dict]:
    e = experiment(cfg, exp)
    rows = []
    for m in e.models:
        for d in e.datasets:
            for v in e.variants:
                info = _vinfo(cfg, v)
                base = {"model": m, "dataset": d, "variant": v, "method": info["method"], "label": info["label"],
                        "mtp_grad": info["mtp_grad"] or ""}
                df = load_metrics(results, m, d, v, cfg)
                if df is None or "step" not in df.columns:
                    rows.append({**base, "status": MISSING})
                    continue
                for metric in metrics:
                    if metric == "ratio_var":
                        col = ratio_var_column(df)
                    else:
                        col = metric if metric in df.columns else None
                    if col is None:
                        continue
                    for step, val in zip(df["step"], df[col]):
                        rows.append({**base, "step": int(step), "metric": metric, "value": val, "status": OK})
    return rows


def curves_data(cfg: dict, results) -> pd.DataFrame:
    """Reward, response length, approx. KL and clip fraction per step for every method of the `curves` experiment:
    the mean over the experiment's seeds, with a 95 % Student-t interval over seeds (``lo``/``hi``; empty with one
    seed) and ``n_seeds``."""
    from mpo.artifacts.collect_beyond import seed_curve_rows, seed_curves_frame, seed_runs

    e = experiment(cfg, "curves")
    rows = []
    for m in e.models:
        for d in e.datasets:
            for v in e.variants:
                info = _vinfo(cfg, v)
                base = {"model": m, "dataset": d, "variant": v, "method": info["method"], "label": info["label"]}
                rows += seed_curve_rows(base, seed_runs(cfg, results, m, d, v), CURVE_METRICS)
    return seed_curves_frame(rows)


REGIME_METRICS = ["reward", "ratio_var", "clip_frac", "grad_norm", "mtp_top1/k1"]


def regimes_data(cfg: dict, results) -> pd.DataFrame:
    """The three MTP gradient regimes: per-step curves plus final pass@1 (metric 'pass_at_1', no step)."""
    rows = _long_metrics(cfg, results, "regimes", REGIME_METRICS)
    e = experiment(cfg, "regimes")
    for m in e.models:
        for d in e.datasets:
            for v in e.variants:
                info = _vinfo(cfg, v)
                p1 = eval_pass1(results, m, d, v, cfg)
                rows.append({"model": m, "dataset": d, "variant": v, "method": info["method"], "label": info["label"],
                             "mtp_grad": info["mtp_grad"] or "", "metric": "pass_at_1", "value": p1,
                             "status": OK if p1 is not None else MISSING})
    out = pd.DataFrame(rows, columns=LONG_COLUMNS)
    out["step"] = out["step"].astype("Int64")
    return out


FIGURE_DATA = {
    "fig3": fig3_data,
    "fig4": fig4_data,
    "fig6": fig6_data,
    "fig7": fig7_data,
    "curves": curves_data,
    "regimes": regimes_data,
    "beyond_curves": beyond_curves_data,
}
