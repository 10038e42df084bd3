"""Figures beyond the paper: training curves of every method (`curves`), the MTP gradient regimes (`regimes`) and
the GRPO / TEMPO / MoT-G / PPO / MPO comparison (`beyond_curves`, mean over seeds with a 95 % band)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mpo.artifacts.figure_style import (
    METHOD_COLORS,
    MISSING_TEXT,
    REGIME_STYLES,
    _empty,
    _missing_box,
    _note,
    _smooth,
    _step_axis,
    _title,
    new_figure,
    style,
)

METRIC_TITLES = {
    "reward": "reward (mean)",
    "response_length": "response length (tokens)",
    "approx_kl": "approx. KL (new vs old)",
    "clip_frac": "clip fraction",
    "ratio_var": "ratio variance",
    "grad_norm": "gradient norm",
    "mtp_top1/k1": "MTP module 1 top-1",
    "pass_at_1": "pass@1 (eval)",
}


def _plot_metric(ax, sub: pd.DataFrame, metric: str, color_of, style_of, label_of) -> None:
    """Per-step values (thin) and their moving average (thick) of one metric, one line per variant."""
    _step_axis(ax)
    mm = sub[(sub["metric"] == metric) & (sub["status"] == "ok")]
    for v in dict.fromkeys(sub["variant"]):
        r = mm[mm["variant"] == v]
        if r.empty:
            continue
        x, y = r["step"].to_numpy(dtype=float), r["value"].to_numpy(dtype=float)
        c, ls = color_of(r.iloc[0]), style_of(r.iloc[0])
        if "lo" in r.columns and r["lo"].notna().any():
            ax.fill_between(x, r["lo"].to_numpy(dtype=float), r["hi"].to_numpy(dtype=float), color=c, alpha=0.15,
                            linewidth=0)
        ax.plot(x, y, color=c, linestyle=ls, alpha=0.25, linewidth=0.8)
        ax.plot(x, _smooth(y), color=c, linestyle=ls, label=label_of(r.iloc[0]))
    if not ax.lines:
        _empty(ax)


def _bars(ax, bars: pd.DataFrame, color_of, label_of) -> None:
    x = np.arange(len(bars))
    for xi, (_, r) in zip(x, bars.iterrows()):
        if r["status"] == "ok" and not pd.isna(r["value"]):
            ax.bar(xi, r["value"], color=color_of(r), width=0.6)
            ax.text(xi, r["value"] + 0.01, f"{r['value']:.3f}", ha="center", va="bottom", fontsize=6)
        else:
            ax.bar(xi, 1.0, color="none", edgecolor="#b00000", hatch="///", linewidth=0.6, width=0.6)
            ax.text(xi, 0.5, MISSING_TEXT, rotation=90, ha="center", va="center", fontsize=6.5, color="#b00000")
    ax.set_ylim(0, 1.08)
    ax.set_xticks(x, [label_of(r) for _, r in bars.iterrows()])
    ax.grid(axis="x", visible=False)


def _missing_runs(sub: pd.DataFrame) -> list[str]:
    bad = sub[(sub["status"] != "ok") & (sub["metric"] != "pass_at_1")]
    return [f"run {v}: {MISSING_TEXT}" for v in dict.fromkeys(bad["variant"])]


def _curves_page(df: pd.DataFrame, meta: dict, metrics: list[str], title: str, note: str) -> Figure:
    """One column per (model, dataset), one row per metric, one line per variant (a 95 % band where the data has
    `lo`/`hi` columns: several seeds)."""
    color_of = lambda r: METHOD_COLORS.get(r["method"], "#444444")  # noqa: E731
    with style():
        cols = list(dict.fromkeys(zip(df["model"], df["dataset"]))) or [("(none)", "")]
        fig = new_figure(3.2 * len(cols) + 0.4, 1.9 * len(metrics) + 0.7)
        axes = fig.subplots(len(metrics), len(cols), squeeze=False)
        for j, (m, d) in enumerate(cols):
            sub = df[(df["model"] == m) & (df["dataset"] == d)]
            for i, metric in enumerate(metrics):
                ax = axes[i][j]
                ax.set_title(f"{METRIC_TITLES.get(metric, metric)} — {m}, {d}", fontsize=7.5)
                if i == len(metrics) - 1:
                    ax.set_xlabel("training step")
                _plot_metric(ax, sub, metric, color_of, lambda r: "-", lambda r: r["label"])
                if i == 0:
                    if ax.lines:
                        ax.legend(loc="best", fontsize=6)
                    _missing_box(ax, _missing_runs(sub))
        _title(fig, title, meta)
        _note(fig, note)
    return fig


def curves(df: pd.DataFrame, meta: dict) -> Figure:
    """Reward, response length, approx. KL and clip fraction over training, every method, one page."""
    from mpo.artifacts.collect import CURVE_METRICS

    return _curves_page(df, meta, CURVE_METRICS, "Training curves of every method (beyond the paper)",
                        "thin: mean over the experiment's seeds per step (band: 95 % Student-t interval over seeds, "
                        "drawn with 2+ seeds); thick: centred moving average (window n/10). No paper values: the paper "
                        "shows no training curves.")


def beyond_curves(df: pd.DataFrame, meta: dict) -> Figure:
    """GRPO, TEMPO, MoT-G, PPO and MPO on the `beyond` experiment: mean over seeds per step, 95 % band (t over seeds)."""
    from mpo.artifacts.collect_beyond import BEYOND_METRICS

    return _curves_page(df, meta, BEYOND_METRICS, "Beyond token-level PPO: GRPO, TEMPO, MoT-G, PPO, MPO",
                        "thin: mean over seeds per step (band: 95 % Student-t interval over seeds, drawn with 2+ seeds); "
                        "thick: centred moving average (window n/10). No paper curves: the MPO, TEMPO and MoT-G papers' "
                        "numbers are in table `beyond`.")


def regimes(df: pd.DataFrame, meta: dict) -> Figure:
    """MTP gradient regimes hidden / detach / joint (docs/method.md §4): curves and final pass@1."""
    from mpo.artifacts.collect import REGIME_METRICS

    regime_colors = {"hidden": "#d62728", "detach": "#1f77b4", "joint": "#9467bd"}
    color_of = lambda r: regime_colors.get(r["mtp_grad"], "#444444")  # noqa: E731
    style_of = lambda r: REGIME_STYLES.get(r["mtp_grad"], "-")  # noqa: E731
    label_of = lambda r: f"{r['mtp_grad'] or '?'} ({r['variant']})"  # noqa: E731
    with style():
        groups = list(dict.fromkeys(zip(df["model"], df["dataset"]))) or [("(none)", "")]
        fig = new_figure(9.5, 4.6 * len(groups) + 0.6)
        axes = fig.subplots(2 * len(groups), 3, squeeze=False)
        for g, (m, d) in enumerate(groups):
            sub = df[(df["model"] == m) & (df["dataset"] == d)]
            panels = [axes[2 * g][0], axes[2 * g][1], axes[2 * g][2], axes[2 * g + 1][0], axes[2 * g + 1][1]]
            for ax, metric in zip(panels, REGIME_METRICS):
                ax.set_title(f"{METRIC_TITLES.get(metric, metric)} — {m}, {d}", fontsize=7.5)
                ax.set_xlabel("training step")
                _plot_metric(ax, sub, metric, color_of, style_of, label_of)
            if panels[0].lines:
                panels[0].legend(loc="best", fontsize=6)
            _missing_box(panels[0], _missing_runs(sub))
            axb = axes[2 * g + 1][2]
            axb.set_title(f"{METRIC_TITLES['pass_at_1']} — {m}, {d}", fontsize=7.5)
            _bars(axb, sub[sub["metric"] == "pass_at_1"], color_of, lambda r: r["mtp_grad"] or r["variant"])
        _title(fig, "MTP gradient regimes (beyond the paper)", meta)
        _note(fig, "hidden (default): the policy gradient reaches the backbone through all K terms, the MTP modules "
                   "train on an auxiliary CE; detach: the MTP terms are constants in the loss; joint: the policy loss "
                   "also trains the MTP modules. The paper (App. A.1) describes only the first; no paper values. "
                   "thin: per step; thick: moving average (window n/10).")
    return fig
