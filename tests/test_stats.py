"""mpo.stats: t intervals, cluster bootstrap over problems, paired bootstrap test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpo import stats


def test_t_quantile_table_and_large_df():
    assert stats.t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert stats.t_quantile_975(10) == pytest.approx(2.228, abs=1e-3)
    assert stats.t_quantile_975(60) == pytest.approx(2.0003, abs=2e-3)  # tabulated value 2.000
    assert stats.t_quantile_975(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError):
        stats.t_quantile_975(0)


def test_mean_ci_t_interval_by_hand():
    iv = stats.mean_ci([1.0, 2.0, 3.0, 4.0, None, float("nan")])
    s = np.std([1, 2, 3, 4], ddof=1)
    h = 3.1824 * s / 2  # t_{3, 0.975} * s / sqrt(4)
    assert (iv.mean, iv.n, iv.method) == (2.5, 4, "t")
    assert iv.lo == pytest.approx(2.5 - h) and iv.hi == pytest.approx(2.5 + h)
    one = stats.mean_ci([0.4])
    assert one.lo is None and one.n == 1 and stats.format_interval(one) == "0.400"
    assert stats.mean_ci([]) is None and stats.format_interval(None) == "MISSING"


def test_mean_ci_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = sum(stats.mean_ci(rng.normal(1.0, 2.0, size=5)).contains(1.0) for _ in range(2000))
    assert 0.93 < hits / 2000 < 0.97  # a z instead of a t quantile (n=5) covers ~88 %


def test_cluster_bootstrap_resamples_problems_not_samples():
    # 20 problems, 4 seeds each; seeds of one problem identical -> the effective n is 20, not 80
    rng = np.random.default_rng(1)
    per_problem = rng.integers(0, 2, size=20).astype(float)
    scores = {f"p{i}": [v] * 4 for i, v in enumerate(per_problem)}
    iv = stats.cluster_mean_ci(scores, n_boot=4000, seed=0)
    se_problems = per_problem.std(ddof=0) / math.sqrt(20)
    assert iv.n == 80 and iv.method == "bootstrap over problems"
    assert iv.half_width == pytest.approx(1.96 * se_problems, rel=0.15)  # over 80 i.i.d. samples: half as wide
    assert stats.cluster_mean_ci(scores, n_boot=500, seed=3) == stats.cluster_mean_ci(scores, n_boot=500, seed=3)
    with pytest.raises(ValueError, match="one score per seed"):
        stats.cluster_mean_ci({"a": [1.0, 0.0], "b": [1.0]})


def test_paired_bootstrap_detects_a_real_difference_and_labels_noise():
    rng = np.random.default_rng(2)
    base = rng.random((40, 3))
    a = {f"p{i}": list(base[i] + 0.2) for i in range(40)}
    b = {f"p{i}": list(base[i]) for i in range(40)}
    t = stats.paired_bootstrap(a, b, n_boot=2000, seed=0)
    # pairing removes the per-problem variation entirely: the difference is exactly 0.2 with a tiny interval
    assert t.diff == pytest.approx(0.2) and t.lo == pytest.approx(0.2) and t.p_value < 0.01
    assert not t.within_noise and (t.n_problems, t.n_seeds) == (40, 3)
    assert "p<0.001" in stats.format_paired(t) and "p=0.000" not in stats.format_paired(t)  # no bootstrap p is 0
    same = stats.paired_bootstrap(b, b, n_boot=500, seed=0)
    assert same.within_noise and same.p_value == 1.0 and "within noise" in stats.format_paired(same)


def test_paired_bootstrap_is_paired_not_two_sample():
    # a small consistent gain on top of a large per-problem spread: only a paired test sees it
    rng = np.random.default_rng(3)
    spread = rng.normal(0, 1.0, size=(30, 1))
    noise = rng.normal(0, 0.01, size=(30, 1))
    a = {f"p{i}": [spread[i, 0] + 0.05 + noise[i, 0]] for i in range(30)}
    b = {f"p{i}": [spread[i, 0]] for i in range(30)}
    t = stats.paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert t.p_value < 0.01 and t.lo > 0
    p_null = stats.paired_bootstrap(
        {f"p{i}": [float(rng.normal())] for i in range(30)}, {f"p{i}": [float(rng.normal())] for i in range(30)},
        n_boot=2000, seed=0).p_value
    assert p_null > 0.01


def test_paired_bootstrap_uses_only_shared_problems():
    a = {"x": [1.0], "y": [1.0], "z": [0.0]}
    b = {"x": [0.0], "y": [0.0], "w": [1.0]}
    t = stats.paired_bootstrap(a, b, n_boot=200, seed=0)
    assert t.n_problems == 2 and t.diff == 1.0
    assert stats.paired_bootstrap({"x": [1.0]}, {"x": [0.0]}) is None
