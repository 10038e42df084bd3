"""Uncertainty of our numbers: means with 95 % intervals and a paired bootstrap test (pure functions, numpy only).

* :func:`mean_ci` -- mean of per-unit values with a Student-t interval, ``mean ± t_{n-1, 0.975} · s / √n``.
  Used for quantities measured once per seed or per training step (pass@1 per seed, ratio variance per step).
* :func:`cluster_mean_ci` -- mean over problems × seeds with a **percentile bootstrap over problems**: a problem is
  resampled together with all its seeds (the seeds of one problem are not independent draws), ``n_boot`` resamples.
* :func:`paired_bootstrap` -- method A minus method B on the same (problem, seed) pairs: the mean difference, its
  percentile bootstrap interval (problems resampled as clusters) and a two-sided p-value from the bootstrap
  distribution re-centred on the null (difference 0): ``p = (1 + #{|d*| ≥ |d|}) / (1 + n_boot)``.

Every bootstrap takes an explicit ``seed`` (numpy ``default_rng``), so a table renders identically every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

LEVEL = 0.95
N_BOOT = 10_000

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (no scipy in the environment); beyond 30 the
# normal quantile with the Cornish-Fisher correction below is accurate to < 1e-3.
_T975 = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423]


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95 % interval)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class Interval:
    """A mean with its 95 % interval (lo/hi None when there is one unit only) and how it was made."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    method: str  # "t" | "bootstrap over problems" | "none (n=1)"

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None else (self.hi - self.lo) / 2

    def contains(self, x: float) -> bool:
        return self.lo is not None and self.lo <= x <= self.hi


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return a[np.isfinite(a)]


def mean_ci(values: Sequence[float]) -> Interval | None:
    """Mean and Student-t 95 % interval of independent values (None/NaN dropped); None when no value is left."""
    a = _finite(values)
    if a.size == 0:
        return None
    m = float(a.mean())
    if a.size == 1:
        return Interval(m, None, None, 1, "none (n=1)")
    h = t_quantile_975(a.size - 1) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return Interval(m, m - h, m + h, int(a.size), "t")


def _cluster_matrix(scores: Mapping[str, Sequence[float]]) -> np.ndarray:
    """{problem: [score per seed]} -> [problems, seeds] array; every problem must have the same number of seeds."""
    rows = [list(map(float, v)) for v in scores.values()]
    if not rows:
        return np.zeros((0, 0))
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"every problem needs one score per seed; got seed counts {sorted(widths)}")
    return np.asarray(rows, dtype=float)


def _boot_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of `n_boot` resamples of the rows of x (problems as clusters, all their seeds kept)."""
    rows = x.mean(axis=1)  # every problem keeps all its seeds: the mean of a resample is the mean of its row means
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # chunks: [1000, problems] indices at a time (GSM8K: 1319 problems)
        stop = min(n_boot, start + 1000)
        out[start:stop] = rows[rng.integers(0, rows.size, size=(stop - start, rows.size))].mean(axis=1)
    return out


def _percentile(boot: np.ndarray) -> tuple[float, float]:
    a = (1 - LEVEL) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def cluster_mean_ci(scores: Mapping[str, Sequence[float]], n_boot: int = N_BOOT, seed: int = 0) -> Interval | None:
    """Mean over problems × seeds of {problem: [score per seed]}, percentile bootstrap 95 % interval over problems."""
    x = _cluster_matrix(scores)
    if x.size == 0:
        return None
    m = float(x.mean())
    if x.shape[0] < 2:
        return Interval(m, None, None, int(x.size), "none (n=1)")
    lo, hi = _percentile(_boot_means(x, n_boot, seed))
    return Interval(m, lo, hi, int(x.size), "bootstrap over problems")


@dataclass(frozen=True)
class PairedTest:
    """A - B over matched (problem, seed) pairs: mean difference, its 95 % interval, two-sided p-value."""

    diff: float
    lo: float
    hi: float
    p_value: float
    n_problems: int
    n_seeds: int

    @property
    def within_noise(self) -> bool:
        """The interval contains 0: the data cannot tell the two methods apart."""
        return self.lo <= 0.0 <= self.hi


def paired_bootstrap(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], n_boot: int = N_BOOT,
                     seed: int = 0) -> PairedTest | None:
    """Paired bootstrap of mean(a - b) over the (problem, seed) pairs both have; problems resampled as clusters.

    a, b: {problem id: [score of seed 1, seed 2, ...]} (same seed order). Problems missing from either side are
    dropped; None when fewer than 2 shared problems remain.
    """
    shared = [p for p in a if p in b]
    if len(shared) < 2:
        return None
    xa = _cluster_matrix({p: a[p] for p in shared})
    xb = _cluster_matrix({p: b[p] for p in shared})
    if xa.shape != xb.shape:
        raise ValueError(f"paired scores need the same seeds on both sides: {xa.shape[1]} vs {xb.shape[1]}")
    d = xa - xb
    diff = float(d.mean())
    boot = _boot_means(d, n_boot, seed)
    lo, hi = _percentile(boot)
    null = boot - diff  # the bootstrap distribution shifted to the null hypothesis (mean difference 0)
    p = (1 + int(np.sum(np.abs(null) >= abs(diff) - 1e-12))) / (1 + n_boot)
    return PairedTest(diff, lo, hi, min(1.0, p), d.shape[0], d.shape[1])


def format_interval(iv: Interval | None, digits: int = 3, missing: str = "MISSING") -> str:
    """'0.412 ± 0.031' (or '0.412' without an interval); `missing` for None."""
    if iv is None:
        return missing
    if iv.lo is None:
        return f"{iv.mean:.{digits}f}"
    return f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}"


def format_paired(t: PairedTest | None, digits: int = 3, missing: str = "MISSING") -> str:
    """'+0.031 [-0.012, +0.074], p=0.17, within noise' (the label when the interval contains 0)."""
    if t is None:
        return missing
    p = "p<0.001" if t.p_value < 0.001 else f"p={t.p_value:.3f}"  # a bootstrap p of 0 means below its resolution
    s = f"{t.diff:+.{digits}f} [{t.lo:+.{digits}f}, {t.hi:+.{digits}f}], {p}"
    return s + (", within noise" if t.within_noise else "")
