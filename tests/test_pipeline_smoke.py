"""The whole smoke DAG, end to end, as CI runs it: data -> model -> MTP warm-up -> all five methods and the
ablation variants -> pass@1 -> every table, figure, executed notebook and the report.

This is the slowest test (about 5 minutes on 2 cores). It writes to results/<name>/ under a name of its own, so a
developer's results/smoke/ is left alone, and removes it afterwards.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run, snakemake_cmd

NAME = "smoke-pipeline-test"
# ~5 min on 2 idle cores; allow for a loaded CI machine (the suite's default timeout is 900 s per test)
pytestmark = [pytest.mark.timeout(2700), pytest.mark.slow]
TIMEOUT = 2400
TABLES = ["table1", "table2", "table3", "table4", "table5", "table5a", "table5b", "table6", "table7"]
FIGURES = ["fig3", "fig4", "fig6", "fig7", "curves", "regimes"]
METHODS = ["ppo", "grpo", "dapo", "gspo", "mpo"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["name"] = NAME
    cfg_file = tmp_path_factory.mktemp("cfg") / f"{NAME}.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    root = REPO / "results" / NAME
    shutil.rmtree(root, ignore_errors=True)
    try:
        proc = run(snakemake_cmd("--cores", "2", "--configfile", str(cfg_file)), check=False, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
        report = run(snakemake_cmd("--report", f"results/{NAME}/report.html", "--configfile", str(cfg_file)),
                     check=False)
        assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
        again = run(snakemake_cmd("-n", "--configfile", str(cfg_file)))
        yield root, again.stdout + again.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_every_artifact_is_built(pipeline):
    root, dry = pipeline
    assert "Nothing to be done" in dry, dry[-3000:]
    for t in TABLES:
        for ext in ("md", "csv"):
            p = root / "tables" / f"{t}.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p
    for f in FIGURES:
        for ext in ("png", "pdf", "csv"):
            p = root / "figures" / f"{f}.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p
        nb = json.loads((root / "notebooks" / f"{f}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (f, errors)
    html = (root / "report.html").read_text(errors="replace")
    for f in FIGURES:
        assert f"{f}.png" in html


def test_all_five_methods_trained_and_main_ones_evaluated(pipeline):
    root, _ = pipeline
    steps = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["train"].get("steps", 8)
    for m in METHODS:
        run_dir = root / "runs" / "tiny-llama" / "gsm8k" / m
        rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        assert [r["step"] for r in rows] == list(range(1, steps + 1)), m
        for r in rows:
            assert math.isfinite(r["policy_loss"]) and math.isfinite(r["ratio_var"]), (m, r)
        assert (run_dir / "policy" / "model.safetensors").is_file()
    for m in ["zero_shot", "ppo", "grpo", "dapo", "mpo"]:  # the main comparison's columns (GSPO only trains: curves)
        ev = json.loads((root / "eval" / "tiny-llama" / "gsm8k" / m / "summary.json").read_text())
        assert 0.0 <= ev["pass@1"] <= 1.0 and ev["n_problems"] > 0
    # MPO kept its trained MTP modules; PPO has none
    assert (root / "runs" / "tiny-llama" / "gsm8k" / "mpo" / "mtp").is_dir()
    assert not (root / "runs" / "tiny-llama" / "gsm8k" / "ppo" / "mtp").exists()


def test_tables_are_filled_from_runs(pipeline):
    """At smoke scale every run exists, so the only MISSING cells allowed are the benchmark rows when no benchmark
    rule is part of the DAG."""
    root, _ = pipeline
    for t in ["table1", "table5a", "table5b", "table6", "table7"]:
        rows = [ln for ln in (root / "tables" / f"{t}.csv").read_text().splitlines()[1:] if "tiny-llama" in ln]
        assert rows, t
        assert not any("MISSING" in ln for ln in rows), (t, rows)
