"""Paper artifacts (mpo.artifacts): experiments, variant parameters, tables and figure data from the synthetic fixture
results (tests/fixtures/runs), explicit MISSING handling, deterministic figure files, CLI and notebooks."""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from mpo.artifacts import collect, common, figures, render, tables  # noqa: E402
from mpo.artifacts.common import MISSING, NA  # noqa: E402
from mpo.config import ConfigError, load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "runs"


@pytest.fixture(scope="module")
def cfg():
    return load_config(FIXTURE / "config.yaml")


def _rows(table, **match):
    return [r for r in table.rows if all(r.get(k) == v for k, v in match.items())]


def _eval(model, dataset, variant):
    return json.loads((FIXTURE / "eval" / model / dataset / variant / "summary.json").read_text())["pass@1"]


# ------------------------------------------------------------------------------------------------ experiments


@pytest.mark.parametrize("name", ["smoke", "config", "paper"])
def test_every_experiment_of_the_shipped_configs_resolves(repo, name):
    cfg = load_config(repo / "config" / f"{name}.yaml")
    for exp in common.EXPERIMENT_USES:
        e = common.experiment(cfg, exp)
        assert e.models and e.variants
        assert set(e.models) <= set(cfg["models"])
        for v in e.variants:
            common.variant_params(cfg, v)


def test_experiment_models_default_to_all_and_can_shrink(cfg):
    assert common.experiment(cfg, "main").models == ["tiny-a", "tiny-b"]
    assert common.experiment(cfg, "ablation_k").models == ["tiny-a"]
    runs = common.experiment_runs(cfg, "ablation_k")
    assert runs == [("tiny-a", d, v) for d in ("gsm8k", "math") for v in ("mpo_k2", "mpo_k3", "mpo_k5")]


def test_experiment_errors_name_the_key(repo):
    with pytest.raises(ConfigError, match="experiments.ablation_k.models"):
        common.experiment(load_config(repo / "config" / "smoke.yaml",
                                      overrides={"experiments": {"ablation_k": {"models": ["nope"]}}}), "ablation_k")
    with pytest.raises(ConfigError, match="experiments.main.variants"):
        common.experiment(load_config(repo / "config" / "smoke.yaml",
                                      overrides={"experiments": {"main": {"variants": ["ppo", "nope"]}}}), "main")
    with pytest.raises(ConfigError, match="'experiments.main.foo'|experiments.main"):
        load_config(repo / "config" / "smoke.yaml", overrides={"experiments": {"main": {"foo": 1}}})
    with pytest.raises(ConfigError, match="experiments.nope|'experiments'"):
        load_config(repo / "config" / "smoke.yaml", overrides={"experiments": {"nope": {}}})


def test_variant_params_follow_aliases_and_w1(cfg):
    p = common.variant_params(cfg, "mpo_k5")
    assert (p["canonical"], p["method"], p["K"], p["gamma"], p["mtp_share"]) == ("mpo", "mpo", 5, 0.7, 0.2)
    assert common.run_dir("R", "m", "d", "mpo_k5", cfg) == Path("R/runs/m/d/mpo")
    assert common.eval_dir("R", "m", "d", "zero_shot", cfg) == Path("R/eval/m/d/zero_shot")
    assert common.variant_params(cfg, "ppo")["mtp_share"] == 0.0 and common.variant_params(cfg, "ppo")["K"] == 1
    w1cfg = dict(cfg, variants={**cfg["variants"], "mpo_w1": {"method": "mpo", "K": 3, "gamma": 0.5, "w1": 0.2}})
    assert common.variant_params(w1cfg, "mpo_w1")["mtp_share"] == pytest.approx(0.2 + 0.1)


def test_pass_at_1_parsing():
    assert common.pass_at_1(None) is None
    assert common.pass_at_1({}) is None
    assert common.pass_at_1({"pass@1": float("nan")}) is None
    assert common.pass_at_1({"pass@1": 0.25, "accuracy": 0.9}) == 0.25
    assert common.fmt(None) == MISSING and common.fmt(float("nan")) == MISSING and common.fmt(0.1234) == "0.123"


# ------------------------------------------------------------------------------------------------ tables


def test_table1_ours_and_paper(cfg):
    t = tables.table1(cfg, FIXTURE)
    assert t.columns == ["Model", "Source", "Zero-shot", "GRPO", "DAPO", "PPO", "MPO", "MPO − PPO (paired)"]
    (a,) = _rows(t, Model="tiny-a")
    assert a["Source"] == "ours (smoke)"
    # one seed: an interval over problems only, marked †
    assert a["MPO"].startswith(f"{_eval('tiny-a', 'code', 'mpo'):.3f} ± ") and a["MPO"].endswith("† (n=64x1)")
    assert a["Zero-shot"].startswith(f"{_eval('tiny-a', 'code', 'zero_shot'):.3f} ± ") and a["Zero-shot"].endswith("†"
                                                                                                      " (n=64x1)")
    diff = _eval('tiny-a', 'code', 'mpo') - _eval('tiny-a', 'code', 'ppo')
    assert a["MPO − PPO (paired)"].startswith(f"{diff:+.3f} [") and a["MPO − PPO (paired)"].endswith("(n=64x1)")
    (p,) = _rows(t, Model="deepseek-r1-distill-qwen-1.5b")
    assert (p["Source"], p["Zero-shot"], p["MPO"]) == ("paper", "0.451", "0.640")
    assert p["MPO − PPO (paired)"] == "+0.042 (no interval)"
    md = common.table_markdown(t, cfg)
    assert "scale `smoke`" in md and "| tiny-a | ours (smoke) |" in md


def test_missing_inputs_are_marked_never_guessed(cfg):
    t5b = tables.table5b(cfg, FIXTURE)
    (row,) = _rows(t5b, Source="ours (smoke)", **{"γ (decay)": "0.9"})
    assert row["W=0.3 / paper col 3"] == MISSING  # the fixture has no eval of mpo_g09_w30 on gsm8k
    assert row["W=0.1 / paper col 1"] == f"{_eval('tiny-a', 'gsm8k', 'mpo_g09_w10'):.3f} (n=64x1)"
    assert [r["γ (decay)"] for r in _rows(t5b, Source="paper")] == [f"paper row {i} (value lost)" for i in (1, 2, 3)]
    t6 = tables.table6(cfg, FIXTURE)
    (vh,) = _rows(t6, Model="tiny-a", Setting="MPO + MTP value heads")
    assert vh["MATH K=5"] == MISSING and vh["GSM8K K=5"] != MISSING
    (paper,) = _rows(t6, Source="paper", Setting="MPO + MTP value heads")
    assert paper["MATH K=5"] == "0.762"


def test_every_table_of_an_empty_results_root_is_missing(cfg, tmp_path):
    for name, fn in tables.TABLES.items():
        t = fn(cfg, tmp_path)
        ours = [r for r in t.rows if str(r.get("Source", "")).startswith("ours")]
        if name == "table5":  # from the config alone
            assert not ours
            continue
        assert ours, name
        numeric = [c for c in t.columns if c not in ("Model", "Source", "Dataset", "Setting", "Method", "γ (decay)",
                                                       "Memory fraction")]
        for r in ours:
            assert all(r[c] in (MISSING, NA) for c in numeric), (name, r)
            assert any(r[c] == MISSING for c in numeric), (name, r)
        paper = [r for r in t.rows if str(r.get("Source", "")).startswith("paper")]
        if name == "main_comparison":  # the paper gives no GSM8K/MATH numbers for every method (Figure 3: bars only)
            assert not paper
            continue
        assert paper and all(r[c] != MISSING for r in paper for c in numeric), name


def test_one_deleted_file_makes_exactly_one_cell_missing(cfg, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("baseline"))
    before = tables.table5a(cfg, root)
    (root / "eval" / "tiny-a" / "math" / "mpo_k3" / "summary.json").unlink()
    after = tables.table5a(cfg, root)
    diff = [(i, c) for i, (a, b) in enumerate(zip(before.rows, after.rows)) for c in a if a[c] != b[c]]
    assert len(diff) == 1
    i, c = diff[0]
    assert after.rows[i]["Dataset"] == "MATH" and c == "K=3" and after.rows[i][c] == MISSING


def test_table2_and_3_speed_memory(cfg):
    t2 = tables.table2(cfg, FIXTURE)
    (bench,) = [r for r in t2.rows if "benchmark" in r["Source"]]
    assert (bench["PPO"], bench["MPO K=5"], bench["K=5 / PPO"]) == ("0.81", "0.98", f"{0.98 / 0.81:.2f}")
    (paper,) = _rows(t2, Model="llama3.2-1b-instruct")
    assert (paper["PPO"], paper["MPO K=3"]) == ("19.10", "25.00")
    t3 = tables.table3(cfg, FIXTURE)
    assert {r["Method"] for r in t3.rows} == {"PPO", "GRPO (group size 4)", "MPO (K=5)", "MPO (K=5, shared LM head)"}
    (p,) = _rows(t3, Method="GRPO (group size 4)", Source="paper (A100 80GB)")
    assert (p["Memory fraction"], p["Time per step (s)"]) == ("0.306", "43.7")
    (sh,) = _rows(t3, Method="MPO (K=5, shared LM head)")  # benchmark only: no training run, no paper value
    assert (sh["Peak memory (MB)"], sh["Time per step (s)"], sh["Time / PPO"]) == ("960", "0.900", f"{0.9 / 0.81:.2f}")
    off = copy.deepcopy(cfg)
    off["bench"]["shared_head"] = False
    assert "MPO (K=5, shared LM head)" not in {r["Method"] for r in tables.table3(off, FIXTURE).rows}


def test_tables_show_the_benchmarks_paired_ratio(cfg, tmp_path):
    """With bench.interleave the JSON's ratio_to_ppo is against the PPO updates each method alternated with, not
    PPO's overall median: Tables 2 and 3 print that ratio."""
    root = tmp_path / "r"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("baseline"))
    path = root / "benchmarks" / "update_step.json"
    data = json.loads(path.read_text())
    for key in ("mpo_k3", "mpo_k5", "mpo_k5_shared_head"):
        data[key]["ratio_to_ppo"] = 1.234
    path.write_text(json.dumps(data))
    (bench,) = [r for r in tables.table2(cfg, root).rows if "benchmark" in r["Source"]]
    assert bench["K=3 / PPO"] == bench["K=5 / PPO"] == "1.23" and bench["MPO K=5"] == "0.98"
    t3 = tables.table3(cfg, root)
    (mpo,) = _rows(t3, Method="MPO (K=5)", Source=[r["Source"] for r in t3.rows if "benchmark" in r["Source"]][0])
    (sh,) = _rows(t3, Method="MPO (K=5, shared LM head)")
    assert mpo["Time / PPO"] == sh["Time / PPO"] == "1.23"


def test_table2_without_benchmark_is_missing(cfg, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("baseline", "benchmarks"))
    (bench,) = [r for r in tables.table2(cfg, root).rows if "benchmark" in r["Source"]]
    assert bench["PPO"] == MISSING and bench["K=3 / PPO"] == MISSING


def test_table5_renders_config_and_paper(repo):
    cfg = load_config(repo / "config" / "config.yaml")
    t = tables.table5(cfg)
    (bs,) = _rows(t, Parameter="Train batch size")
    assert bs["Paper"] == "256" and bs["Ours"] == f"{cfg['train']['batch_size']} {cfg['train']['batch_unit']}"
    (lr,) = _rows(t, Parameter="Learning rate (actor)")
    assert lr["Paper"] == NA and lr["Ours"] == f"{cfg['train']['lr']:g}"
    (clr,) = _rows(t, Parameter="Learning rate (critic)")
    assert clr["Ours"].startswith(f"{10 * cfg['train']['lr']:g}") if cfg["train"]["critic_lr"] is None else True
    assert any(r["Section"] == "training (ours)" and r["Parameter"] == "ppo_epochs" for r in t.rows)
    assert any(r["Parameter"] == "`mpo_k5`" and "alias=mpo" in r["Ours"] for r in t.rows)


def test_table_csv_is_stable_and_has_scale(cfg, tmp_path):
    t = tables.table1(cfg, FIXTURE)
    common.write_table(t, cfg, tmp_path / "a.md", tmp_path / "a.csv")
    common.write_table(tables.table1(cfg, FIXTURE), cfg, tmp_path / "b.md", tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    header, first = (tmp_path / "a.csv").read_text().splitlines()[:2]
    assert header.startswith("config,scale,Model,Source") and first.startswith("fixture,smoke,tiny-a,ours (smoke)")


# ------------------------------------------------------------------------------------------------ figure data


def test_fig4_data_uses_the_block_ratio(cfg):
    df = collect.fig4_data(cfg, FIXTURE)
    assert set(df["status"]) == {"ok"}
    assert sorted(df["mtp_share"].unique()) == [0.0, 0.1, 0.2, 0.3, 0.5]
    mpo = df[df["variant"] == "mpo_k5"]
    first = json.loads((FIXTURE / "runs/tiny-a/gsm8k/mpo/metrics.jsonl").read_text().splitlines()[0])
    assert mpo.iloc[0]["ratio_var"] == pytest.approx(first["block_ratio_var"])
    assert set(mpo["ratio_var_of"]) == {"block_ratio_var"}
    # steps whose rewards were all equal (reward_std 0: zero advantages) are marked, and the figure leaves them out
    assert list(mpo.loc[~mpo["adv_signal"].astype(bool), "step"]) == [7, 14]
    from mpo.artifacts.collect_beyond import signal_steps

    exact = pd.DataFrame({"reward_std": [0.0, 0.3, 0.3], "adv_nonzero_frac": [0.2, 0.0, 0.5]})
    assert list(signal_steps(exact)) == [True, False, True]  # the exact field wins over reward_std
    assert signal_steps(pd.DataFrame({"step": [1]})).isna().all()


def test_fig6_ratio_statistics_use_only_steps_with_advantages(cfg, tmp_path):
    rows = [json.loads(x) for x in (FIXTURE / "runs/tiny-a/gsm8k/mpo/metrics.jsonl").read_text().splitlines()]
    kept = [r["block_ratio_var"] for r in rows if r["reward_std"] > 0]
    assert len(kept) < len(rows)
    from mpo import stats

    iv = stats.mean_ci(kept)  # one seed: a t interval over the kept steps
    (r,) = collect.fig6_data(cfg, FIXTURE).query("variant == 'mpo_k5'").to_dict("records")
    assert r["ratio_var_mean"] == pytest.approx(iv.mean) and r["ratio_var_lo"] == pytest.approx(iv.lo)
    assert (r["n_steps"], r["n_seeds"], r["interval_over"]) == (len(kept), 1, "steps")


def test_fig7_data_reads_modules_and_warmup(cfg):
    df = collect.fig7_data(cfg, FIXTURE)
    train = df[df["source"] == "train"]
    assert sorted(train["module"].unique()) == [1, 2, 3, 4]
    warm = json.loads((FIXTURE / "models/tiny-a/mtp_k5/metrics.json").read_text())["heldout"]["after"]
    after = df[df["source"] == "warmup_after"].set_index("module")
    assert after.loc[1, "top1"] == warm["top1"][1]  # index 0 of the warm-up lists is the backbone


def test_figure_data_of_an_empty_root_is_all_missing(cfg, tmp_path):
    for name, fn in collect.FIGURE_DATA.items():
        df = fn(cfg, tmp_path)
        status = [c for c in df.columns if c.endswith("status")]
        assert len(df) and (df[status] == MISSING).any(axis=1).all(), name
        fig = figures.FIGURES[name](df, collect.meta(cfg))  # draws MISSING annotations, no exception
        fig.savefig(tmp_path / f"{name}.png", dpi=30)


def test_figures_are_deterministic_and_carry_no_timestamps(cfg, tmp_path):
    df = collect.fig6_data(cfg, FIXTURE)
    for i in (1, 2):
        fig = figures.fig6(df, collect.meta(cfg))
        figures.save(fig, tmp_path / f"f{i}.png", tmp_path / f"f{i}.pdf")
    assert (tmp_path / "f1.png").read_bytes() == (tmp_path / "f2.png").read_bytes()
    assert (tmp_path / "f1.pdf").read_bytes() == (tmp_path / "f2.pdf").read_bytes()
    assert b"CreationDate" not in (tmp_path / "f1.pdf").read_bytes()
    assert b"Software" not in (tmp_path / "f1.png").read_bytes()
    assert "scale: smoke" in fig._suptitle.get_text()


def test_figures_ignore_the_callers_rcparams(cfg, tmp_path):
    df = collect.fig3_data(cfg, FIXTURE)
    figures.save(figures.fig3(df, collect.meta(cfg)), tmp_path / "a.png")
    with matplotlib.rc_context({"font.size": 20, "lines.linewidth": 5, "figure.dpi": 40}):
        figures.save(figures.fig3(df, collect.meta(cfg)), tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


# ------------------------------------------------------------------------------------------------ CLI, notebooks


def test_cli_renders_a_table_and_a_figure(tmp_path):
    py = sys.executable
    base = ["--config", str(FIXTURE / "config.yaml"), "--results", str(FIXTURE)]
    subprocess.run([py, "-m", "mpo.artifacts", "fig3", *base, "--out-png", str(tmp_path / "f.png"),
                    "--out-csv", str(tmp_path / "f.csv")], check=True, capture_output=True)
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "f.csv").read_text().startswith("model,")
    from mpo.artifacts.__main__ import main

    assert main(["table5a", *base, "--out-md", str(tmp_path / "t.md"), "--out-csv", str(tmp_path / "t.csv")]) == 0
    assert "Table 5(a)" in (tmp_path / "t.md").read_text()
    bad = subprocess.run([py, "-m", "mpo.artifacts", "table1", "--config", str(tmp_path / "nope.yaml"), "--results",
                          str(FIXTURE), "--out-md", "x", "--out-csv", "y"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_notebooks_are_generated_and_thin():
    import nbformat

    proc = subprocess.run([sys.executable, str(REPO / "notebooks" / "make_notebooks.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in render.FIGURE_NAMES:
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1
        for key in ("config", "results", "out_png", "out_pdf", "out_csv"):
            assert f"{key} = " in params[0].source
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f"collect.{name}_data(" in code and f"figures.{name}(" in code
        assert hasattr(collect, f"{name}_data") and hasattr(figures, name)
        assert nb.metadata.kernelspec.name == "python3"


# ------------------------------------------------------------------------------------------------ seeds, intervals


def _seed_root(tmp_path, cfg):
    """The fixture plus seed 7 of ppo and mpo on tiny-a/code (their seed-1234 grades shifted by one problem, one
    grade flipped)."""
    root = tmp_path / "r"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("baseline"))
    for v in ("ppo", "mpo"):
        src, dst = root / "eval/tiny-a/code" / v, root / "eval/tiny-a/code" / f"{v}_seed7"
        dst.mkdir()
        rows = [json.loads(x) for x in (src / "completions.jsonl").read_text().splitlines()]
        grades = [r["grade"] for r in rows]
        grades = grades[1:] + grades[:1]
        grades[0] = 1.0 - grades[0]  # and one problem flipped: the seeds' pass@1 differ
        (dst / "completions.jsonl").write_text("".join(json.dumps({**r, "grade": g}) + "\n" for r, g in zip(rows, grades)))
        (dst / "summary.json").write_text(json.dumps({"pass@1": sum(grades) / len(grades), "n_problems": len(grades)}))
    cfg = copy.deepcopy(cfg)
    cfg["seeds"] = [1234, 7]
    return root, cfg


def test_several_seeds_give_an_interval_and_n(cfg, tmp_path):
    from mpo.artifacts import seeds

    root, cfg2 = _seed_root(tmp_path, cfg)
    assert seeds.seed_variant(cfg2, "ppo", 7) == "ppo_seed7" and seeds.seed_variant(cfg2, "ppo", 1234) == "ppo"
    (a,) = _rows(tables.table1(cfg2, root), Model="tiny-a")
    iv, n_problems, n_seeds = seeds.accuracy(root, "tiny-a", "code", "ppo", cfg2)
    assert (n_problems, n_seeds, iv.method) == (64, 2, "bootstrap over problems")
    assert a["PPO"] == f"{iv.mean:.3f} ± {iv.half_width:.3f} (n=64x2)"
    assert a["MPO − PPO (paired)"].endswith("(n=64x2)")
    assert a["GRPO"].endswith("(n=64x1)")  # grpo has only the config seed's evaluation
    (root / "eval/tiny-a/code/mpo_seed7/summary.json").unlink()
    (a,) = _rows(tables.table1(cfg2, root), Model="tiny-a")
    assert a["MPO − PPO (paired)"].endswith("(n=64x1)")  # only the seeds both methods have are paired
    for name in ("ppo", "ppo_seed7"):  # without per-problem grades: a Student-t interval over the seeds' pass@1
        (root / "eval/tiny-a/code" / name / "completions.jsonl").unlink()
    iv, _, _ = seeds.accuracy(root, "tiny-a", "code", "ppo", cfg2)
    p1 = [json.loads((root / "eval/tiny-a/code" / n / "summary.json").read_text())["pass@1"] for n in ("ppo", "ppo_seed7")]
    assert p1[0] != p1[1] and iv.method == "t" and iv.mean == pytest.approx(sum(p1) / 2) and iv.half_width == pytest.approx(
        12.7062 * abs(p1[0] - p1[1]) / 2, rel=1e-4)  # t_{1,0.975} * s / sqrt(2), s = |a - b| / sqrt(2)


def test_paired_difference_within_noise_is_labelled(cfg, tmp_path):
    from mpo.artifacts import seeds

    same = seeds.paired_cell(FIXTURE, "tiny-a", "code", "ppo", "ppo", cfg)
    assert same.startswith("+0.000 [+0.000, +0.000], p=1.000, within noise")
    t = seeds.paired(FIXTURE, "tiny-a", "code", "mpo", "ppo", cfg)
    assert ("within noise" in seeds.paired_cell(FIXTURE, "tiny-a", "code", "mpo", "ppo", cfg)) == (t.lo <= 0 <= t.hi)
    assert seeds.paired_cell(tmp_path, "tiny-a", "code", "mpo", "ppo", cfg) == MISSING


def test_beyond_table_marks_absent_methods_and_other_settings(cfg, tmp_path):
    t = tables.beyond(cfg, FIXTURE)
    ours = _rows(t, Source="ours (smoke)", Model="tiny-a", Dataset="HumanEval")
    assert [r["Method"] for r in ours] == ["GRPO", "TEMPO", "MoT-G", "PPO", "MPO"]
    by = {r["Method"]: r for r in ours}
    assert by["TEMPO"]["pass@1"] == MISSING and "no `tempo` variant in experiment `beyond`" in by["TEMPO"]["Setting"]
    assert by["MPO"]["Setting"] == "variant `mpo_k5`"  # an alias counts as its target's method
    assert by["MPO"]["− PPO (paired)"] == tables.table1(cfg, FIXTURE).rows[0]["MPO − PPO (paired)"]
    others = [r for r in t.rows if "other setting" in r["Source"]]
    assert {r["Method"] for r in others} == {"TEMPO", "MoT-G"} and all(r["pass@1"] == "—" for r in others)
    assert any("Qwen3-1.7B" in r["Setting"] for r in others) and any("Qwen2.5-1.5B" in r["Setting"] for r in others)
    cfg2 = copy.deepcopy(cfg)
    cfg2["variants"]["tempo"] = {"method": "tempo"}  # in the experiment: its cells are read (no run here: MISSING)
    cfg2["experiments"]["beyond"]["variants"].append("tempo")
    (tempo,) = _rows(tables.beyond(cfg2, FIXTURE), Source="ours (smoke)", Model="tiny-a", Dataset="HumanEval",
                     Method="TEMPO")
    assert tempo["pass@1"] == MISSING and tempo["Setting"] == "variant `tempo`"
    df = collect.beyond_curves_data(cfg, FIXTURE)
    assert set(df.loc[df["status"] == MISSING, "variant"]) == {"tempo", "mot_grpo"}
    assert df.loc[df["status"] == "ok", "lo"].isna().all()  # one seed: no band


# ------------------------------------------------------------------------------------------------ registry, rules


def test_registry_every_artifact_has_a_caption_builder_and_known_needs():
    from mpo.artifacts import registry

    kinds = {"runs", "evals", "warmups", "bench", "data", "tokenizer", "bases"}
    for a in registry.ARTIFACTS:
        assert (REPO / "workflow" / "report" / f"{a.name}.rst").is_file(), a.name
        assert callable(a.builder()) and {n.kind for n in a.needs} <= kinds, a.name
        if a.kind == "figure":
            assert callable(a.collector()) and (REPO / "notebooks" / f"{a.name}.ipynb").is_file(), a.name
    names = {a.rule_name for a in registry.ARTIFACTS}
    assert {f"table{i}" for i in (1, 2, 3, 4, 5, 6, 7)} | {"table5a", "table5b", "fig3", "fig7", "beyond_table"} <= names
    g = registry.groups()
    assert g["main_results"] == ["table1", "fig3", "main_comparison"] and g["efficiency"] == ["table2", "table3"]
    assert g["beyond"] == ["beyond_table", "beyond_curves"] and set(g["artifacts"]) == names
    assert "table4" not in registry.REFERENCE_NAMES and "beyond" in registry.REFERENCE_NAMES


def test_smk_inputs_follow_the_registry(cfg, repo):
    from mpo.artifacts import smk

    t4 = smk.artifact_inputs(cfg, "R", "table4")()
    assert t4 == {"data": [f"R/data/{d}/stats.json" for d in cfg["datasets"]], "tokenizer": ["R/models/tiny-a/base"]}
    assert smk.artifact_inputs(cfg, "R", "table7")() == {"bases": ["R/models/tiny-a/base", "R/models/tiny-b/base"]}
    fig3 = smk.artifact_inputs(cfg, "R", "fig3")()
    assert fig3["nb"] == ["notebooks/fig3.ipynb"] and "R/eval/tiny-a/gsm8k/zero_shot/summary.json" in fig3["evals"]
    assert not any("/code/" in f for f in fig3["evals"])
    beyond = smk.artifact_inputs(cfg, "R", "beyond")()["evals"]
    assert {f.split("/")[4] for f in beyond} == {"grpo", "ppo", "mpo"}  # tempo, mot_grpo: not defined here
    cfg2 = copy.deepcopy(cfg)
    cfg2["seeds"] = [1234, 7]
    evals = smk.artifact_inputs(cfg2, "R", "table5a")()["evals"]
    assert "R/eval/tiny-a/math/mpo_k3_seed7/summary.json" in evals and "R/eval/tiny-a/math/mpo_k3/summary.json" in evals
    assert smk.group_inputs("R", "efficiency") == ["R/tables/table2.md", "R/tables/table2.csv", "R/tables/table3.md",
                                                   "R/tables/table3.csv"]
    t4 = smk.command("table4", "R", "R/config.resolved.yaml")
    assert t4 == ("python -m mpo.artifacts table4 --config R/config.resolved.yaml --results R --out-md R/tables/table4.md"
                  " --out-csv R/tables/table4.csv > R/logs/artifacts/table4.log 2>&1")
    nb = smk.command("beyond_curves", "R", "C")
    assert nb.startswith("python -m papermill notebooks/beyond_curves.ipynb R/notebooks/beyond_curves.ipynb ")
    assert "-p out_png R/figures/beyond_curves.png" in nb and nb.endswith("> R/logs/artifacts/beyond_curves.log 2>&1")
