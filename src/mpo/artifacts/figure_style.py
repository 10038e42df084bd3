"""Figure style and helpers shared by :mod:`.figures` (the paper's figures) and :mod:`.figures_beyond`.

Deterministic by construction: figures are built with ``matplotlib.figure.Figure`` (no pyplot, no GUI backend), inside
:func:`style` (rcParams reset to matplotlib's defaults, then :data:`STYLE`: DejaVu Sans, fixed sizes, constrained
layout), with fixed figure sizes and dpi; :func:`save` strips the timestamp and software fields from PNG/PDF metadata.
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
    "tempo": "#8c564b",
    "mot_grpo": "#e377c2",
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
