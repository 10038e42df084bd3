"""Plotting: each ``figX(df, meta) -> matplotlib Figure`` draws the DataFrame from ``mpo.artifacts.collect``.

Deterministic by construction: figures are built with ``matplotlib.figure.Figure`` (no pyplot, no GUI backend), inside
:func:`style` (rcParams reset to matplotlib's defaults, then :data:`STYLE`: DejaVu Sans, fixed sizes, constrained
layout), with fixed figure sizes and dpi; :func:`save` strips the timestamp and software fields from PNG/PDF metadata.
Rows marked ``MISSING`` in the data are drawn as an explicit "MISSING" annotation, never as a number.
The paper gives no numbers for these figures; what it states is printed on the figure as a note ("paper: ...").
"""

from __future__ import annotations

import math
import textwrap
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PNG_DPI = 100
MISSING_TEXT = "MISSING"

METHOD_COLORS = {
    "zero_shot": "#8c8c8c",
    "grpo": "#1f77b4",
    "dapo": "#ff7f0e",
    "ppo": "#2ca02c",
    "mpo": "#d62728",
    "gspo": "#9467bd",
}
MODULE_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
REGIME_STYLES = {"hidden": "-", "detach": "--", "joint": ":"}

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "pdf.fonttype": 42,
    "svg.hashsalt": "mpo-repro",
    "axes.prop_cycle": cycler(color=MODULE_COLORS),
}


@contextmanager
def style():
    """matplotlib defaults + STYLE, whatever the caller's rcParams (e.g. a notebook's inline backend) were."""
    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(STYLE)
        yield


def new_figure(w: float, h: float) -> Figure:
    return Figure(figsize=(w, h), layout="constrained")


def save(fig: Figure, png: str | Path | None = None, pdf: str | Path | None = None) -> None:
    """Write PNG and/or PDF without timestamps or software strings in the metadata."""
    with style():
        if png:
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
        if pdf:
            Path(pdf).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(pdf, format="pdf", metadata={"Creator": None, "Producer": None, "CreationDate": None})


def _title(fig: Figure, text: str, meta: dict) -> None:
    """Title + scale on one line, or wrapped onto several where one line would not fit the figure's width (~0.075 in/char)."""
    scale = f"scale: {meta['scale']} (config {meta['config']})"
    one = f"{text} — {scale}"
    width = max(20, int((fig.get_size_inches()[0] - 0.2) / 0.075))
    fig.suptitle(one if len(one) <= width else "\n".join(textwrap.wrap(text, width) + textwrap.wrap(scale, width)))


def _note(fig: Figure, text: str) -> None:
    """A footnote under the axes; the constrained layout leaves room for its (wrapped) lines."""
    w, h = fig.get_size_inches()
    per_line = max(20, int((w - 0.2) / 0.047))  # characters per line at 6.5 pt
    words, lines, cur = text.split(), [], ""
    for word in words:
        if cur and len(cur) + 1 + len(word) > per_line:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    lines.append(cur)
    fig.text(0.01, 0.004, "\n".join(lines), fontsize=6.5, ha="left", va="bottom", style="italic", color="#444444")
    bottom = (0.11 * len(lines) + 0.04) / h
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))


def _missing_box(ax, lines: list[str]) -> None:
    if lines:
        ax.text(0.99, 0.02, "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5,
                color="#b00000", bbox={"boxstyle": "round,pad=0.2", "fc": "#fff0f0", "ec": "#b00000", "lw": 0.5})


def _step_axis(ax) -> None:
    """Training steps are integers: no 1.25 ticks on short runs."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _smooth(y: np.ndarray) -> np.ndarray:
    """Centred moving average, window max(1, n // 10) (odd), edges averaged over what exists."""
    n = len(y)
    w = max(1, n // 10)
    w = w if w % 2 == 1 else w + 1
    if w <= 1:
        return y
    s = pd.Series(y).rolling(w, center=True, min_periods=1).mean()
    return s.to_numpy()


def _share_colors(shares: list[float]) -> dict[float, tuple]:
    cmap = mpl.colormaps["viridis"]
    uniq = sorted({s for s in shares if s is not None and not (isinstance(s, float) and math.isnan(s))})
    n = max(len(uniq) - 1, 1)
    return {s: cmap(0.9 * i / n) for i, s in enumerate(uniq)}


def _share_label(share, label: str) -> str:
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return label
    return f"W={share:g}" + (" (PPO)" if share == 0 else "")


def _empty(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#b00000")


# ---------------------------------------------------------------------------------------------------------------
# Figure 3
# ---------------------------------------------------------------------------------------------------------------


def fig3(df: pd.DataFrame, meta: dict) -> Figure:
    """Grouped bars: pass@1 per method, one panel per (model, dataset)."""
    with style():
        models = list(dict.fromkeys(df["model"])) or ["(none)"]
        datasets = list(dict.fromkeys(df["dataset"])) or ["gsm8k", "math"]
        fig = new_figure(3.4 * len(datasets), 2.6 * len(models) + 0.5)
        axes = fig.subplots(len(models), len(datasets), squeeze=False)
        for i, m in enumerate(models):
            for j, d in enumerate(datasets):
                ax = axes[i][j]
                sub = df[(df["model"] == m) & (df["dataset"] == d)]
                ax.set_title(f"{m} — {'GSM8K' if d == 'gsm8k' else 'MATH' if d == 'math' else d}")
                ax.set_ylim(0, 1.08)
                ax.set_ylabel("pass@1")
                if sub.empty:
                    _empty(ax)
                    continue
                x = np.arange(len(sub))
                for xi, (_, r) in zip(x, sub.iterrows()):
                    color = METHOD_COLORS.get(r["method"], "#444444")
                    if r["status"] == "ok":
                        ax.bar(xi, r["pass_at_1"], color=color, width=0.7)
                        ax.text(xi, r["pass_at_1"] + 0.015, f"{r['pass_at_1']:.3f}", ha="center", va="bottom", fontsize=6)
                    else:
                        ax.bar(xi, 1.0, color="none", edgecolor="#b00000", hatch="///", linewidth=0.6, width=0.7)
                        ax.text(xi, 0.5, MISSING_TEXT, rotation=90, ha="center", va="center", fontsize=6.5,
                                color="#b00000")
                ax.set_xticks(x, list(sub["label"]), rotation=30, ha="right")
                ax.grid(axis="x", visible=False)
        _title(fig, "Figure 3: pass@1 on GSM8K and MATH", meta)
        _note(fig, "paper: Figure 3 shows the same five columns for its three models; its bar heights are not given "
                   "in the text (see Tables 5(a) and 6 for its MPO numbers on GSM8K/MATH).")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Figure 4
# ---------------------------------------------------------------------------------------------------------------


def fig4(df: pd.DataFrame, meta: dict) -> Figure:
    """(a) variance of the importance ratio and (b) clip fraction over training, one line per MTP share."""
    with style():
        models = list(dict.fromkeys(df["model"])) or ["(none)"]
        datasets = list(dict.fromkeys(df["dataset"])) or [""]
        panels = [(m, d) for m in models for d in datasets]
        fig = new_figure(8.0, 2.7 * len(panels) + 0.5)
        axes = fig.subplots(len(panels), 2, squeeze=False)
        colors = _share_colors(list(df["mtp_share"]))
        for i, (m, d) in enumerate(panels):
            sub = df[(df["model"] == m) & (df["dataset"] == d)]
            axv, axc = axes[i]
            axv.set_title(f"(a) importance-ratio variance — {m}, {d}")
            axc.set_title(f"(b) clip fraction — {m}, {d}")
            axv.set_ylabel("variance of the ratio")
            axc.set_ylabel("clip fraction")
            for ax in (axv, axc):
                ax.set_xlabel("training step")
                _step_axis(ax)
            missing = []
            positive = True
            for v in dict.fromkeys(sub["variant"]):
                r = sub[sub["variant"] == v]
                share, label = r["mtp_share"].iloc[0], r["label"].iloc[0]
                name = _share_label(share, label)
                if (r["status"] != "ok").all():
                    missing.append(f"{name} ({v}): {MISSING_TEXT}")
                    continue
                color = colors.get(share, "#444444")
                steps = r["step"].to_numpy(dtype=float)
                for ax, col in ((axv, "ratio_var"), (axc, "clip_frac")):
                    y = r[col].to_numpy(dtype=float)
                    if np.isnan(y).all():
                        continue
                    ax.plot(steps, y, color=color, alpha=0.25, linewidth=0.8)
                    ax.plot(steps, _smooth(y), color=color, label=name)
                    if col == "ratio_var":
                        positive = positive and bool(np.nanmin(y) > 0)
            if positive and axv.lines:
                axv.set_yscale("log")
            if axv.lines:
                axv.legend(loc="upper right")
            _missing_box(axc, missing)
        _title(fig, "Figure 4: ratio variance and clip fraction by MTP weight", meta)
        _note(fig, "thin: per step; thick: centred moving average (window n/10). Ratio: rtilde for MPO, the token ratio "
                   "for PPO (W=0). paper (Fig. 4, GSM8K, no numbers in the text): both decrease as the MTP weight grows.")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Figure 6
# ---------------------------------------------------------------------------------------------------------------


def fig6(df: pd.DataFrame, meta: dict) -> Figure:
    """pass@1, mean ratio variance and mean clip fraction against the cumulative MTP share W."""
    with style():
        fig = new_figure(10.0, 3.2)
        axes = fig.subplots(1, 3, squeeze=False)[0]
        specs = [("pass_at_1", "eval_status", "(a) pass@1", "pass@1"),
                 ("ratio_var_mean", "run_status", "(b) mean ratio variance over training", "variance of the ratio"),
                 ("clip_frac_mean", "run_status", "(c) mean clip fraction over training", "clip fraction")]
        groups = list(dict.fromkeys(zip(df["model"], df["dataset"])))
        markers = ["o", "s", "^", "D", "v"]
        for ax, (col, status, title, ylabel) in zip(axes, specs):
            ax.set_title(title)
            ax.set_xlabel("cumulative MTP share W (0 = PPO)")
            ax.set_ylabel(ylabel)
            missing = []
            for gi, (m, d) in enumerate(groups):
                sub = df[(df["model"] == m) & (df["dataset"] == d)]
                ok = sub[(sub[status] == "ok") & sub[col].notna()]
                for _, r in sub[sub[status] != "ok"].iterrows():
                    missing.append(f"{m}/{d} W={r['mtp_share']:g}: {MISSING_TEXT}")
                if len(ok):
                    ax.plot(ok["mtp_share"], ok[col], marker=markers[gi % len(markers)], color="#d62728" if gi == 0
                            else MODULE_COLORS[gi % len(MODULE_COLORS)], label=f"{m}, {d}")
            if col == "pass_at_1":
                ax.axvspan(0.1, 0.2, color="#2ca02c", alpha=0.12, label="paper: best at W = 10–20%")
            if ax.lines or col == "pass_at_1":
                ax.legend(loc="best")
            _missing_box(ax, missing)
        _title(fig, "Figure 6: accuracy vs. share of the signal from MTP modules", meta)
        _note(fig, "paper (Fig. 6, GSM8K, DeepSeek-R1-Distill-Qwen-1.5B, fixed decay): best pass@1 when about 10–20% "
                   "of the training signal comes from the MTP modules; larger shares add bias and hurt.")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Figure 7
# ---------------------------------------------------------------------------------------------------------------


def _legend_proxies(ax, module_ks, variants, markers, linestyles, extra=()):
    """Legends right of `ax`: colour = MTP module k; marker (panel a) / line style (panel b) = variant; extra markers."""
    from matplotlib.lines import Line2D

    h1 = [Line2D([], [], color=MODULE_COLORS[(k - 1) % len(MODULE_COLORS)], marker="o", linestyle="", label=f"k={k}")
          for k in module_ks]
    first = ax.legend(handles=h1, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="MTP module", fontsize=6,
                      title_fontsize=6.5)
    ax.add_artist(first)
    h2 = [Line2D([], [], color="#444444", marker=markers[i % len(markers)], linestyle=linestyles[i % len(linestyles)],
                 label=label) for i, label in enumerate(variants)]
    h2 += [Line2D([], [], color="#444444", marker=mk, linestyle="", label=lab) for mk, lab in extra]
    ax.legend(handles=h2, loc="lower left", bbox_to_anchor=(1.02, 0.0), title="run (a: marker, b: line)",
              fontsize=6, title_fontsize=6.5)


def fig7(df: pd.DataFrame, meta: dict) -> Figure:
    """(a) mean rank of the k-th predicted token vs batch grad norm; (b) MTP top-1 accuracy over training."""
    with style():
        models = list(dict.fromkeys(df["model"])) or ["(none)"]
        fig = new_figure(10.5, 3.4 * len(models) + 0.5)
        axes = fig.subplots(len(models), 2, squeeze=False)
        markers = ["o", "s", "^", "D", "v"]
        linestyles = ["-", "--", ":", "-."]
        for i, m in enumerate(models):
            axa, axb = axes[i]
            sub = df[df["model"] == m]
            train = sub[(sub["source"] == "train") & (sub["status"] == "ok")]
            axa.set_title(f"(a) rank of the k-th predicted token vs. grad norm — {m}")
            axa.set_xlabel("mean rank of the realised token under MTP module k (1 = top)")
            axa.set_ylabel("batch gradient norm")
            axb.set_title(f"(b) MTP top-1 accuracy during RL — {m}")
            axb.set_xlabel("training step (0: held-out, warm-up)")
            _step_axis(axb)
            axb.set_ylabel("top-1 accuracy of module k")
            variants = list(dict.fromkeys(sub[sub["source"] == "train"]["variant"]))
            labels = {v: sub[sub["variant"] == v]["label"].iloc[0] for v in variants}
            missing = [f"{r['label']} ({r['variant'] or r['source']}): {MISSING_TEXT}"
                       for _, r in sub[sub["status"] != "ok"].iterrows()]
            ks = sorted(int(k) for k in train["module"].dropna().unique())
            for vi, v in enumerate(variants):
                tv = train[train["variant"] == v]
                for k in ks:
                    tk = tv[tv["module"] == k]
                    c = MODULE_COLORS[(k - 1) % len(MODULE_COLORS)]
                    ok = tk[tk["mean_rank"].notna() & tk["grad_norm"].notna()]
                    if len(ok):
                        axa.scatter(ok["mean_rank"], ok["grad_norm"], s=10, color=c, marker=markers[vi % len(markers)],
                                    alpha=0.7)
                    okb = tk[tk["top1"].notna()]
                    if len(okb):
                        axb.plot(okb["step"], okb["top1"], color=c, linestyle=linestyles[vi % len(linestyles)])
            extra = []
            for source, mk, size, lab in (("warmup_after", "*", 40, "after warm-up"),
                                          ("warmup_before", "x", 20, "before warm-up")):
                w = sub[(sub["source"] == source) & (sub["status"] == "ok") & sub["top1"].notna()]
                for _, r in w.iterrows():
                    c = MODULE_COLORS[(int(r["module"]) - 1) % len(MODULE_COLORS)]
                    axb.scatter([0], [r["top1"]], marker=mk, s=size, color=c, zorder=5)
                if len(w):
                    extra.append((mk, lab))
            if axa.collections:
                xs = train["mean_rank"].dropna()
                if len(xs) and xs.min() > 0 and xs.max() / xs.min() > 20:
                    axa.set_xscale("log")
            else:
                _empty(axa)
            if axb.lines or axb.collections:
                _legend_proxies(axb, ks, [labels[v] for v in variants], markers, linestyles, extra=extra)
            else:
                _empty(axb)
            _missing_box(axb, missing)
        _title(fig, "Figure 7: MTP prediction noise", meta)
        _note(fig, "paper (Fig. 7, no numbers in the text): (a) higher ranks of the k-th predicted token go with larger "
                   "batch gradient norms; (b) after the warm-up, MTP predictions keep improving during RL. "
                   "Warm-up points are held-out accuracies from the warm-up's metrics.json.")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Beyond the paper: training curves of every method; MTP gradient regimes
# ---------------------------------------------------------------------------------------------------------------

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


def curves(df: pd.DataFrame, meta: dict) -> Figure:
    """Reward, response length, approx. KL and clip fraction over training, every method, one page."""
    from mpo.artifacts.collect import CURVE_METRICS

    color_of = lambda r: METHOD_COLORS.get(r["method"], "#444444")  # noqa: E731
    with style():
        cols = list(dict.fromkeys(zip(df["model"], df["dataset"]))) or [("(none)", "")]
        fig = new_figure(3.2 * len(cols) + 0.4, 1.9 * len(CURVE_METRICS) + 0.7)
        axes = fig.subplots(len(CURVE_METRICS), len(cols), squeeze=False)
        for j, (m, d) in enumerate(cols):
            sub = df[(df["model"] == m) & (df["dataset"] == d)]
            for i, metric in enumerate(CURVE_METRICS):
                ax = axes[i][j]
                ax.set_title(f"{METRIC_TITLES.get(metric, metric)} — {m}, {d}", fontsize=7.5)
                if i == len(CURVE_METRICS) - 1:
                    ax.set_xlabel("training step")
                _plot_metric(ax, sub, metric, color_of, lambda r: "-", lambda r: r["label"])
                if i == 0:
                    if ax.lines:
                        ax.legend(loc="best", fontsize=6)
                    _missing_box(ax, _missing_runs(sub))
        _title(fig, "Training curves of every method (beyond the paper)", meta)
        _note(fig, "thin: per step; thick: centred moving average (window n/10). No paper values: the paper shows no "
                   "training curves.")
    return fig


def regimes(df: pd.DataFrame, meta: dict) -> Figure:
    """MTP gradient regimes hidden / detach / joint (METHOD.md section 4): curves and final pass@1."""
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


FIGURES = {"fig3": fig3, "fig4": fig4, "fig6": fig6, "fig7": fig7, "curves": curves, "regimes": regimes}
