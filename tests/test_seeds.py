"""Several training seeds: run names <variant>_seed<s>, their specs, the DAG that trains them, the seed they use."""

import copy
import re

import pytest
import yaml

from conftest import REPO, run, run_variant, snakemake_cmd
from mpo.config import ConfigError, load_config, validate_config
from mpo.train import variants as V


@pytest.fixture(scope="module")
def cfg():
    c = load_config(REPO / "config" / "smoke.yaml")
    c["seeds"] = [c["seed"], 7, 8]
    return c


def test_seed_runs_resolve(cfg):
    assert V.split_seed(cfg, "ppo_seed7") == ("ppo", 7)
    assert V.split_seed(cfg, "ppo_seed9") == ("ppo_seed9", None)  # 9 is not one of the seeds
    assert V.split_seed(cfg, f"ppo_seed{cfg['seed']}") == (f"ppo_seed{cfg['seed']}", None)  # the config seed: plain ppo
    assert V.canonical_variant(cfg, "mpo_k5_seed8") == "mpo_seed8"  # alias, per seed
    spec = V.resolve_variant(cfg, "mpo_k5_seed8")
    assert spec["seed"] == 8 and {k: v for k, v in spec.items() if k != "seed"} == V.resolve_variant(cfg, "mpo")
    assert "seed" not in V.resolve_variant(cfg, "ppo")
    names = V.trained_variants(cfg)
    assert {"ppo", "ppo_seed7", "ppo_seed8", "mpo_seed7"} <= set(names) and "mpo_k5_seed7" not in names
    with pytest.raises(V.VariantError, match="ppo_seed9"):
        V.resolve_variant(cfg, "ppo_seed9")


def test_seeds_must_contain_seed(cfg):
    bad = copy.deepcopy(cfg)
    bad["seeds"] = [7, 8]
    with pytest.raises(ConfigError, match="at 'seeds'"):
        validate_config(bad)


@pytest.mark.slow
def test_a_seed_run_trains_with_its_seed(env, cfg):
    c = copy.deepcopy(env["cfg"])
    c["seeds"] = [c["seed"], 7]
    c["train"]["steps"] = 1
    s0, rows0, _ = run_variant(env, "grpo", out=env["root"] / "seed_base", cfg=c)
    s7, rows7, _ = run_variant(env, "grpo_seed7", out=env["root"] / "seed_7", cfg=c)
    assert s7["spec"]["seed"] == 7 and "seed" not in s0["spec"]
    assert rows0[0]["response_length"] != rows7[0]["response_length"] or rows0[0]["reward"] != rows7[0]["reward"]


@pytest.mark.slow
def test_dag_trains_and_evaluates_every_seed(tmp_path):
    raw = yaml.safe_load(open(REPO / "config" / "smoke.yaml"))
    raw["seeds"] = [raw.get("seed", 1234), 7]
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(raw))
    dry = run(snakemake_cmd("-n", "table1", "--configfile", str(tmp_path / "seeds.yaml"), "--printshellcmds"),
              timeout=300).stdout
    for name in ("ppo", "ppo_seed7", "mpo", "mpo_seed7"):  # MPO K=5 is the alias mpo_k5: one run per seed
        assert re.search(rf"--variant {name}\b", dry) and re.search(rf"eval/tiny-llama/code/{name}\b", dry), name
    assert not re.search(r"--variant mpo_k5_seed7\b", dry)


# ---- per-experiment seeds: the main comparison gets several, the ablations keep the config's ----


def _fixture_copy(tmp_path):
    """A writable copy of the synthetic results root tests/fixtures/runs (without its baselines)."""
    import shutil

    root = tmp_path / "r"
    shutil.copytree(REPO / "tests" / "fixtures" / "runs", root, ignore=shutil.ignore_patterns("baseline"))
    return root


def _main_seeds(cfg, seeds):
    c = copy.deepcopy(cfg)
    c["seeds"] = None
    c["experiments"]["main"]["seeds"] = seeds
    return c


def test_experiment_seeds_override_the_config_seeds(cfg):
    c = _main_seeds(cfg, [cfg["seed"], 7, 8])
    assert V.seeds_of(c) == [c["seed"]] and V.seeds_of(c, "ablation_k") == [c["seed"]]
    assert V.seeds_of(c, "main") == [c["seed"], 7, 8]
    assert V.split_seed(c, "ppo_seed8") == ("ppo", 8)  # a seed of one experiment names a run
    assert {"ppo_seed7", "mpo_seed8"} <= set(V.trained_variants(c))
    from mpo.artifacts import smk

    main = smk.inputs(c, "R", "main", "evals", zero_shot=True)()
    for name in ("ppo", "ppo_seed7", "ppo_seed8", "mpo_seed8"):
        assert any(p.endswith(f"/{name}/summary.json") for p in main), name
    assert sum("zero_shot" in p for p in main) == len(c["experiments"]["main"]["datasets"])  # one untrained eval
    ablation = smk.inputs(c, "R", "ablation_k", "evals")()
    assert ablation and not any("_seed" in p for p in ablation)


def test_experiment_seeds_must_contain_seed(cfg):
    with pytest.raises(ConfigError, match=r"at 'experiments\.main\.seeds'"):
        validate_config(_main_seeds(cfg, [7, 8]))


def test_an_artifact_reports_exactly_its_experiments_seeds(tmp_path):
    """Table 1 reads experiment main's seeds: two when main lists two, one otherwise -- even with a stray seed run in
    the folder, and even though the config's own `seeds` has one."""
    import json
    import shutil

    from mpo.artifacts import registry, render

    fixture = REPO / "tests" / "fixtures" / "runs"
    root = _fixture_copy(tmp_path)
    src = root / "eval" / "tiny-a" / "code" / "ppo"
    shutil.copytree(src, src.parent / "ppo_seed7")
    summary = json.loads((src / "summary.json").read_text())
    summary["pass@1"] = min(1.0, summary["pass@1"] + 0.25)
    (src.parent / "ppo_seed7" / "summary.json").write_text(json.dumps(summary))
    base = load_config(fixture / "config.yaml")
    assert registry.get("table1").experiment == "main" and registry.get("table5").experiment is None

    def ppo_cell(c):
        md = render.render_table("table1", c, root, tmp_path / "t.md", tmp_path / "t.csv")
        row = next(line for line in md.splitlines() if line.startswith("| tiny-a | ours"))
        return row.split("|")[6]  # Model, Source, Zero-shot, GRPO, DAPO, PPO

    two = ppo_cell(_main_seeds(base, [base["seed"], 7]))
    assert "x2)" in two and "±" in two and "†" not in two, two
    one = ppo_cell(_main_seeds(base, None))
    assert "x1)" in one and "†" in one, one  # one seed: an interval over problems only


def test_rule_all_builds_the_configs_targets_only(cfg):
    from mpo.artifacts import smk

    c = copy.deepcopy(cfg)
    everything, always = ["E1", "E2"], ["R/data/gsm8k/stats.json"]
    assert smk.default_targets(c, "R", everything, always) == everything  # targets: null
    c["targets"] = ["main_results", "table4"]
    out = smk.default_targets(c, "R", everything, always)
    assert always[0] in out and "E1" not in out
    assert {"R/tables/table1.md", "R/figures/fig3.png", "R/tables/main_comparison.csv", "R/tables/table4.md"} <= set(out)
    assert not any("table5a" in p or "beyond" in p for p in out)
    c["targets"] = ["main_results", "tabel4"]
    with pytest.raises(ConfigError, match="at 'targets': 'tabel4'"):
        validate_config(c)


def test_default_config_reproduces_the_main_comparison_with_three_seeds():
    """`make reproduce`'s DAG: each main method trained with 3 seeds, on gsm8k only, nothing from the ablations."""
    dry = run(snakemake_cmd("-n", "--printshellcmds"), timeout=300).stdout
    trained = sorted(set(re.findall(r"--dataset (\w+) --variant (\S+)", dry)))
    c = load_config(REPO / "config" / "config.yaml")
    seeds = V.seeds_of(c, "main")
    assert len(seeds) >= 3
    want = sorted(("gsm8k", v if s == c["seed"] else f"{v}_seed{s}") for v in ("grpo", "dapo", "ppo", "mpo") for s in seeds)
    assert trained == want


def test_figures_3_and_curves_aggregate_the_experiments_seeds(tmp_path):
    """With two seeds of PPO, Figure 3's bar has a 95 % interval and n = problems x 2, and the curves are the mean
    over both runs with a band; with one seed neither has an interval."""
    import json
    import shutil

    from mpo.artifacts import render

    fixture = REPO / "tests" / "fixtures" / "runs"
    root = _fixture_copy(tmp_path)
    ev = root / "eval" / "tiny-a" / "gsm8k" / "ppo"
    shutil.copytree(ev, ev.parent / "ppo_seed7")
    s = json.loads((ev / "summary.json").read_text())
    (ev.parent / "ppo_seed7" / "summary.json").write_text(json.dumps({**s, "pass@1": s["pass@1"] + 0.2}))
    run_ = root / "runs" / "tiny-a" / "gsm8k" / "ppo"
    shutil.copytree(run_, run_.parent / "ppo_seed7")
    rows = [json.loads(x) for x in (run_ / "metrics.jsonl").read_text().splitlines() if x.strip()]
    (run_.parent / "ppo_seed7" / "metrics.jsonl").write_text(
        "".join(json.dumps({**r, "reward": r["reward"] + 0.1}) + "\n" for r in rows))
    base = load_config(fixture / "config.yaml")
    two = copy.deepcopy(base)
    for e in ("main", "curves"):
        two["experiments"][e]["seeds"] = [base["seed"], 7]

    f3 = render.figure_data("fig3", two, root)
    ppo = f3[(f3["dataset"] == "gsm8k") & (f3["variant"] == "ppo")].iloc[0]
    assert ppo["n_seeds"] == 2 and ppo["n_problems"] == s["n"]
    assert ppo["pass_at_1"] == pytest.approx(s["pass@1"] + 0.1) and ppo["lo"] < ppo["pass_at_1"] < ppo["hi"]
    cv = render.figure_data("curves", two, root)
    r1 = cv[(cv["variant"] == "ppo") & (cv["dataset"] == "gsm8k") & (cv["metric"] == "reward") & (cv["step"] == 1)]
    assert len(r1) == 1 and r1.iloc[0]["n_seeds"] == 2
    assert r1.iloc[0]["value"] == pytest.approx(rows[0]["reward"] + 0.05) and r1.iloc[0]["lo"] < r1.iloc[0]["value"]

    f3 = render.figure_data("fig3", base, root)
    ppo = f3[(f3["dataset"] == "gsm8k") & (f3["variant"] == "ppo")].iloc[0]
    assert ppo["n_seeds"] == 1 and ppo["pass_at_1"] == pytest.approx(s["pass@1"])
    assert ppo["lo"] is None or ppo["lo"] != ppo["lo"]  # no interval with one seed (None or NaN)


def test_one_seed_gets_a_problems_only_interval_and_methods_pair_with_zero_shot(tmp_path):
    """One seed with per-problem grades: a bootstrap interval over problems, marked †. Against zero-shot (evaluated
    once) each seed of a method pairs with the same untrained grades; table main_comparison prints both tests."""
    import json
    import shutil

    from mpo.artifacts import seeds as S
    from mpo.artifacts import tables

    fixture = REPO / "tests" / "fixtures" / "runs"
    base = load_config(fixture / "config.yaml")
    cell = S.accuracy_cell(fixture, "tiny-a", "code", "grpo", base)
    assert "± " in cell and S.PROBLEMS_ONLY in cell and "x1)" in cell, cell

    root = _fixture_copy(tmp_path)
    ev = root / "eval" / "tiny-a" / "code"
    shutil.copytree(ev / "grpo", ev / "grpo_seed7")
    rows = [json.loads(x) for x in (ev / "grpo" / "completions.jsonl").read_text().splitlines() if x.strip()]
    (ev / "grpo_seed7" / "completions.jsonl").write_text("".join(json.dumps({**r, "grade": 1.0}) + "\n" for r in rows))
    two = S.for_experiment(_main_seeds(base, [base["seed"], 7]), "main")  # what render does for a main artifact
    zs = S.seed_evals(root, "tiny-a", "code", "zero_shot", two)[0]
    g1 = S.seed_evals(root, "tiny-a", "code", "grpo", two)
    assert len(g1) == 2
    t = S.paired(root, "tiny-a", "code", "grpo", "zero_shot", two)
    assert t.n_seeds == 2 and t.n_problems == len(zs.scores)
    want = sum(sum(e.scores[p] for e in g1) / 2 - zs.scores[p] for p in zs.scores) / len(zs.scores)
    assert t.diff == pytest.approx(want) and t.lo > 0

    table = tables.main_comparison(two, root)
    row = next(r for r in table.rows if r["Dataset"] == "code" and r["Method"] == "GRPO")
    assert row["− zero-shot (paired)"].startswith(f"{want:+.3f}") and "(n=" in row["− zero-shot (paired)"]
    assert "x2)" in row["pass@1"] and S.PROBLEMS_ONLY not in row["pass@1"]
    zrow = next(r for r in table.rows if r["Dataset"] == "code" and r["Method"] == "Zero-shot")
    assert zrow["− zero-shot (paired)"] == "–" and zrow["− PPO (paired)"] == "–"


def test_main_comparison_ratio_statistics_use_signal_steps_over_seeds(tmp_path):
    """The ratio-variance cell averages only steps with non-zero advantages, per seed, then over seeds."""
    import json
    import shutil

    from mpo.artifacts import seeds as S
    from mpo.artifacts import tables

    fixture = REPO / "tests" / "fixtures" / "runs"
    root = _fixture_copy(tmp_path)
    runs = root / "runs" / "tiny-a" / "gsm8k"
    shutil.copytree(runs / "ppo", runs / "ppo_seed7")
    rows = [json.loads(x) for x in (runs / "ppo" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    # seed 7: ratio variance 1.0 on signal steps, 1000 on one zero-advantage step (must be left out)
    new = [{**r, "block_ratio_var": 1.0, "adv_nonzero_frac": 0.5} for r in rows]
    new[0] = {**new[0], "block_ratio_var": 1000.0, "adv_nonzero_frac": 0.0}
    (runs / "ppo_seed7" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new))
    cfg = S.for_experiment(_main_seeds(load_config(fixture / "config.yaml"), [1234, 7]), "main")
    row = next(r for r in tables.main_comparison(cfg, root).rows if r["Dataset"] == "gsm8k" and r["Method"] == "PPO")
    import pandas as pd

    from mpo.artifacts.collect import signal_steps

    df = pd.DataFrame(rows)
    base = df.loc[signal_steps(df).fillna(True).astype(bool), "block_ratio_var"].tolist()  # seed 1234's signal steps
    want = (sum(base) / len(base) + 1.0) / 2
    assert row["ratio variance"].startswith(f"{want:.2e} ± "), row["ratio variance"]
    assert f"({len(base) + len(rows) - 1} steps, 2 seeds)" in row["ratio variance"]
