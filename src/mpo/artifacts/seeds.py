"""Accuracy over training seeds with 95 % intervals, and the paired MPO-vs-PPO test, for the tables.

Seeds. The config's ``seed`` is the run ``R/runs/<model>/<dataset>/<variant>`` (and its evaluation) as today; a config
that lists ``seeds: [s1, s2, ...]`` (s1 = ``seed``) adds one run per further seed named ``<variant>_seed<s>`` next to
it (:func:`seed_variant`). Tables group a variant's evaluations by seed; the seeds whose evaluation is absent are left
out (and counted in n), a variant with none reads MISSING.

A cell: ``mean ± half-width (n=PxS)`` -- P problems (test set), S seeds. The interval is a percentile bootstrap over
problems (each problem resampled with all its seeds; :func:`mpo.stats.cluster_mean_ci`) when the per-problem grades
(completions.jsonl) exist, else a Student-t interval over the S per-seed pass@1 values. With one seed there is no
interval (``0.412 (n=16x1)``): problem sampling alone would understate the run-to-run spread.

The MPO-vs-PPO comparison is :func:`mpo.stats.paired_bootstrap` over the (problem, seed) pairs both evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mpo import stats
from mpo.artifacts.common import MISSING, ZERO_SHOT, eval_dir, load_eval, pass_at_1

N_BOOT = 10_000
BOOT_SEED = 0  # fixed: a table renders identically every time


def seed_list(cfg: dict, experiment: str | None = None) -> list[int]:
    """Training seeds of a config: ``seeds`` if given, else [``seed``]; with `experiment`, its own
    ``experiments.<name>.seeds`` when set (:func:`mpo.train.variants.seeds_of`)."""
    from mpo.train.variants import seeds_of

    return seeds_of(cfg, experiment)


def for_experiment(cfg: dict, experiment: str | None) -> dict:
    """`cfg` with ``seeds`` set to `experiment`'s seeds: what an artifact of that experiment renders from (a table
    reads exactly the seeds its experiment trains, never whatever other runs happen to lie in the folder)."""
    if not experiment:
        return cfg
    return {**cfg, "seeds": seed_list(cfg, experiment)}


def seed_variant(cfg: dict, variant: str, seed: int) -> str:
    """The run name of `variant` trained with `seed`: the variant itself for the config's ``seed``."""
    return variant if int(seed) == int(cfg["seed"]) or variant == ZERO_SHOT else f"{variant}_seed{int(seed)}"


def problem_scores(results, model: str, dataset: str, variant: str, cfg: dict | None = None) -> dict[str, float] | None:
    """{problem id: fraction of its samples graded correct} from the evaluation's completions.jsonl (None if absent)."""
    path = eval_dir(results, model, dataset, variant, cfg) / "completions.jsonl"
    if not Path(path).is_file():
        return None
    hits: dict[str, list[float]] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                hits.setdefault(str(r["id"]), []).append(1.0 if float(r.get("grade") or 0.0) >= 1.0 else 0.0)
    return {p: sum(v) / len(v) for p, v in hits.items()}


@dataclass(frozen=True)
class SeedEval:
    seed: int
    pass1: float
    n_problems: int | None
    scores: dict[str, float] | None  # per problem, when completions.jsonl exists


def seed_evals(results, model: str, dataset: str, variant: str, cfg: dict) -> list[SeedEval]:
    """The evaluations of `variant` that exist, one per seed (zero-shot: the single untrained-model evaluation)."""
    seeds = [cfg["seed"]] if variant == ZERO_SHOT else seed_list(cfg)
    out = []
    for s in seeds:
        name = seed_variant(cfg, variant, s)
        summary = load_eval(results, model, dataset, name, cfg if name == variant else None)
        p1 = pass_at_1(summary)
        if p1 is None:
            continue
        n = summary.get("n_problems", summary.get("n"))
        scores = problem_scores(results, model, dataset, name, cfg if name == variant else None)
        out.append(SeedEval(int(s), p1, int(n) if isinstance(n, int) else (len(scores) if scores else None), scores))
    return out


def _by_problem(evals: list[SeedEval]) -> dict[str, list[float]] | None:
    """{problem: [score per seed]} over the problems every seed graded; None when a seed lacks per-problem grades."""
    if not evals or any(e.scores is None for e in evals):
        return None
    shared = [p for p in evals[0].scores if all(p in e.scores for e in evals[1:])]
    return {p: [e.scores[p] for e in evals] for p in shared}


def accuracy(results, model: str, dataset: str, variant: str, cfg: dict
             ) -> tuple[stats.Interval, int | None, int] | None:
    """(mean with 95 % interval, problems, seeds) of a variant; None when no seed was evaluated."""
    evals = seed_evals(results, model, dataset, variant, cfg)
    if not evals:
        return None
    n_problems = evals[0].n_problems
    grid = _by_problem(evals)
    if grid:  # one seed: the interval covers problem sampling only (the cell marks it with PROBLEMS_ONLY)
        return stats.cluster_mean_ci(grid, n_boot=N_BOOT, seed=BOOT_SEED), len(grid), len(evals)
    return stats.mean_ci([e.pass1 for e in evals]), n_problems, len(evals)


def accuracy_cell(results, model: str, dataset: str, variant: str | None, cfg: dict, digits: int = 3) -> str:
    """'0.412 ± 0.031 (n=16x3)'; with one seed '0.412 ± 0.120† (n=16x1)' (†: over problems only) when per-problem
    grades exist, else '0.412 (n=16x1)'; MISSING without an evaluation."""
    acc = accuracy(results, model, dataset, variant, cfg) if variant else None
    if acc is None:
        return MISSING
    iv, n_problems, n_seeds = acc
    mark = PROBLEMS_ONLY if n_seeds == 1 and iv.lo is not None else ""
    return f"{stats.format_interval(iv, digits)}{mark} (n={n_problems if n_problems is not None else '?'}x{n_seeds})"


PROBLEMS_ONLY = "†"


def paired(results, model: str, dataset: str, a: str | None, b: str | None, cfg: dict) -> stats.PairedTest | None:
    """Paired bootstrap of variant a minus variant b over the (problem, seed) pairs both have (None without
    per-problem grades on either side)."""
    if not a or not b:
        return None
    ea = {e.seed: e for e in seed_evals(results, model, dataset, a, cfg)}
    eb = {e.seed: e for e in seed_evals(results, model, dataset, b, cfg)}
    if b == ZERO_SHOT and eb:  # the untrained model is evaluated once: the same grades pair with every seed of a
        eb = {s: next(iter(eb.values())) for s in ea}
    both = [s for s in ea if s in eb]
    ga, gb = _by_problem([ea[s] for s in both]), _by_problem([eb[s] for s in both])
    if not ga or not gb:
        return None
    return stats.paired_bootstrap(ga, gb, n_boot=N_BOOT, seed=BOOT_SEED)


def paired_cell(results, model: str, dataset: str, a: str | None, b: str | None, cfg: dict) -> str:
    """'+0.031 [-0.012, +0.074], p=0.170, within noise (n=16x1)' or MISSING."""
    t = paired(results, model, dataset, a, b, cfg)
    if t is None:
        return MISSING
    return f"{stats.format_paired(t)} (n={t.n_problems}x{t.n_seeds})"


INTERVAL_NOTE = (
    "Our accuracy cells: mean pass@1 (n = test problems x training seeds) ± the half-width of a 95 % percentile"
    " bootstrap interval over problems (each problem resampled with all its seeds; Student-t over the per-seed pass@1"
    " when per-problem grades are absent). With one seed (n=Px1) the interval is marked †: it covers the sampling of"
    " test problems only, not the run-to-run spread of training. MPO − PPO: paired bootstrap over the (problem, seed)"
    " pairs both methods were evaluated on — difference, 95 % interval, two-sided p; `within noise` when the interval"
    " contains 0."
)
