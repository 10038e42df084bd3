"""Plotting the paper's figures: each ``figX(df, meta) -> matplotlib Figure`` draws the DataFrame from
``mpo.artifacts.collect`` (style and determinism: :mod:`.figure_style`; beyond-the-paper figures: :mod:`.figures_beyond`).

Rows marked ``MISSING`` in the data are drawn as an explicit "MISSING" annotation, never as a number.
The paper gives no numbers for these figures; what it states is printed on the figure as a note ("paper: ...").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mpo.artifacts.figure_style import (  # noqa: F401 (re-exported: figures.STYLE, figures.save)
    PNG_DPI,
    MISSING_TEXT,
    METHOD_COLORS,
    MODULE_COLORS,
    REGIME_STYLES,
    STYLE,
    style,
    new_figure,
    save,
    _title,
    _note,
    _missing_box,
    _step_axis,
    _smooth,
    _share_colors,
    _share_label,
    _empty,
)



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
                ax.set_ylim(0, 1.22)  # room for the two-line labels above a bar at 1.0
                ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
                ax.set_ylabel("pass@1")
                if sub.empty:
                    _empty(ax)
                    continue
                x = np.arange(len(sub))
                for xi, (_, r) in zip(x, sub.iterrows()):
                    color = METHOD_COLORS.get(r["method"], "#444444")
                    if r["status"] == "ok":
                        p, lo, hi = r["pass_at_1"], r.get("lo"), r.get("hi")
                        has_ci = lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi))
                        yerr = [[p - lo], [hi - p]] if has_ci else None
                        ax.bar(xi, p, color=color, width=0.7, yerr=yerr, capsize=2.5, error_kw={"linewidth": 0.8})
                        n = (f"\nn={r['n_problems']}x{r['n_seeds']}" if not pd.isna(r.get("n_seeds", pd.NA)) else "")
                        ax.text(xi, (hi if has_ci else p) + 0.015, f"{p:.3f}{n}", ha="center", va="bottom", fontsize=5.5)
                    else:
                        ax.bar(xi, 1.0, color="none", edgecolor="#b00000", hatch="///", linewidth=0.6, width=0.7)
                        ax.text(xi, 0.5, MISSING_TEXT, rotation=90, ha="center", va="center", fontsize=6.5,
                                color="#b00000")
                ax.set_xticks(x, list(sub["label"]), rotation=30, ha="right")
                ax.grid(axis="x", visible=False)
        _title(fig, "Figure 3: pass@1 on GSM8K and MATH", meta)
        _note(fig, "ours: mean pass@1 over the training seeds; error bar: 95 % interval (bootstrap over problems, each "
                   "with all its seeds; none with one seed); n = test problems x seeds. paper: Figure 3 shows the same "
                   "five columns for its three models; its bar heights are not given in the text (see Tables 5(a) and "
                   "6 for its MPO numbers on GSM8K/MATH).")
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
                r = r[r["adv_signal"].astype("boolean").fillna(True).astype(bool)]  # zero-advantage steps left out
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
        _note(fig, "thin: per step; thick: centred moving average (window n/10); steps whose rewards were all equal (zero "
                   f"advantages: {_zero_adv_text(df)}) left out. Ratio: rtilde for MPO, the token ratio for PPO (W=0). "
                   "paper (Fig. 4, GSM8K, no numbers in the text): both decrease as the MTP weight grows.")
    return fig


def _zero_adv_text(df: pd.DataFrame) -> str:
    """How many steps the zero-advantage filter dropped, or that the runs do not log reward_std."""
    sig = df["adv_signal"] if "adv_signal" in df.columns else pd.Series([], dtype=object)
    known = sig.dropna()
    if known.empty:
        return "not logged (no reward_std), every step kept"
    return f"{int((~known.astype(bool)).sum())} of {len(known)} steps"


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
                    color = "#d62728" if gi == 0 else MODULE_COLORS[gi % len(MODULE_COLORS)]
                    ax.plot(ok["mtp_share"], ok[col], marker=markers[gi % len(markers)], color=color, label=f"{m}, {d}")
                    lo_col = col.replace("_mean", "_lo")
                    if lo_col != col and lo_col in ok.columns and ok[lo_col].notna().any():
                        ax.fill_between(ok["mtp_share"], ok[lo_col], ok[col.replace("_mean", "_hi")], color=color,
                                        alpha=0.15, linewidth=0)
            if col == "pass_at_1":
                ax.axvspan(0.1, 0.2, color="#2ca02c", alpha=0.12, label="paper: best at W = 10–20%")
            if ax.lines or col == "pass_at_1":
                ax.legend(loc="best")
            _missing_box(ax, missing)
        _title(fig, "Figure 6: accuracy vs. share of the signal from MTP modules", meta)
        _note(fig, "(b), (c): mean over the steps with non-zero advantages, band: 95 % Student-t interval (over seeds "
                   "with 2+ seeds, else over steps). paper (Fig. 6, GSM8K, DeepSeek-R1-Distill-Qwen-1.5B, fixed decay): "
                   "best pass@1 when about 10–20% of the training signal comes from the MTP modules; larger shares add "
                   "bias and hurt.")
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


from mpo.artifacts.figures_beyond import beyond_curves, curves, regimes  # noqa: E402

FIGURES = {"fig3": fig3, "fig4": fig4, "fig6": fig6, "fig7": fig7, "curves": curves, "regimes": regimes,
           "beyond_curves": beyond_curves}
