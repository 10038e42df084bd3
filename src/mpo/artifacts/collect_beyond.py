"""Data of the `beyond_curves` figure and the non-zero-advantage step filter used by Figures 4 and 6.

``beyond_curves_data``: per (model, dataset, method, step) the mean over the seeds' runs of each metric, with a
Student-t 95 % interval over seeds (``lo``/``hi``, empty with one seed) and ``n_seeds``; methods whose variant the
config does not define, or whose runs are all absent, are ``MISSING`` rows.

Zero-advantage steps: when every response of a step gets the same reward (``reward_std == 0``, logged by the trainer
per step), the group-relative advantages are all zero and PPO's advantages are critic noise only, so the policy
update carries no signal and the importance ratios stay at 1 -- such steps would pull ratio statistics towards
"stable". :func:`signal_steps` marks them; Figure 4 and the ratio statistics of Figure 6 use only the other steps.
A run whose metrics lack ``reward_std`` keeps every step (``adv_signal`` empty, said in the figure's note). Where
the trainer logs ``adv_nonzero_frac`` (the fraction of response tokens with a non-zero advantage), that decides.
"""

from __future__ import annotations

import pandas as pd

from mpo import stats
from mpo.artifacts.common import MISSING, experiment, load_metrics
from mpo.artifacts.seeds import seed_list, seed_variant

OK = "ok"
BEYOND_METRICS = ["reward", "response_length", "entropy"]
BEYOND_COLUMNS = ["model", "dataset", "variant", "method", "label", "step", "metric", "value", "lo", "hi", "n_seeds",
                  "status"]


def signal_steps(df: pd.DataFrame) -> pd.Series:
    """Per step: True where the step's advantages are not all zero, False where they are, NA when the run logs
    neither ``adv_nonzero_frac`` (exact: fraction of response tokens with A != 0) nor ``reward_std`` (all rewards
    equal: every group-relative advantage is 0; PPO's GAE advantages are then critic noise only)."""
    if "adv_nonzero_frac" in df.columns and df["adv_nonzero_frac"].notna().any():
        return (pd.to_numeric(df["adv_nonzero_frac"], errors="coerce") > 0).astype("boolean")
    if "reward_std" not in df.columns:
        return pd.Series(pd.NA, index=df.index, dtype="boolean")
    return (pd.to_numeric(df["reward_std"], errors="coerce") > 0).astype("boolean")


def seed_runs(cfg: dict, results, model: str, dataset: str, variant: str) -> list[pd.DataFrame]:
    """The metrics of every seed's run of `variant` that exists (config seed first)."""
    out = []
    for s in seed_list(cfg):
        name = seed_variant(cfg, variant, s)
        df = load_metrics(results, model, dataset, name, cfg if name == variant else None)
        if df is not None and "step" in df.columns:
            out.append(df)
    return out


def over_seeds(runs: list[pd.DataFrame], metric: str) -> list[tuple[int, stats.Interval]]:
    """(step, mean over seeds with t interval) of `metric` for the steps any seed logged."""
    vals: dict[int, list[float]] = {}
    for df in runs:
        if metric in df.columns:
            for step, v in zip(df["step"], pd.to_numeric(df[metric], errors="coerce")):
                vals.setdefault(int(step), []).append(v)
    out = []
    for step in sorted(vals):
        iv = stats.mean_ci(vals[step])
        if iv is not None:
            out.append((step, iv))
    return out


def seed_curve_rows(base: dict, runs: list[pd.DataFrame], metrics: list[str]) -> list[dict]:
    """Rows (``base`` plus step, metric, mean over the seeds' runs, t interval, n_seeds) of each metric; one MISSING
    row when there is no run."""
    if not runs:
        return [{**base, "status": MISSING}]
    return [{**base, "step": step, "metric": metric, "value": iv.mean, "lo": iv.lo, "hi": iv.hi, "n_seeds": iv.n,
             "status": OK} for metric in metrics for step, iv in over_seeds(runs, metric)]


def seed_curves_frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=BEYOND_COLUMNS)
    for c in ("step", "n_seeds"):
        out[c] = out[c].astype("Int64")
    return out


def beyond_curves_data(cfg: dict, results) -> pd.DataFrame:
    from mpo.artifacts.tables_beyond import METHODS, beyond_variants

    e = experiment(cfg, "beyond")
    variants = beyond_variants(cfg)
    rows = []
    for m in e.models:
        for d in e.datasets:
            for label, v in variants.items():
                name = v or dict(METHODS)[label]
                base = {"model": m, "dataset": d, "variant": name, "method": name, "label": label}
                rows += seed_curve_rows(base, seed_runs(cfg, results, m, d, v) if v else [], BEYOND_METRICS)
    return seed_curves_frame(rows)
