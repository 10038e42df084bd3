"""The artifact rules (workflow/rules/artifacts.smk) for real: tables via the CLI, figures via papermill-executed
notebooks, the Snakemake report with captions; and the dry-run of one target schedules only its experiment's runs."""

import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import REPO, run, snakemake_cmd

FIXTURE = REPO / "tests" / "fixtures" / "runs"
PATH_ENV = {"PATH": f"{Path(sys.executable).parent}:{__import__('os').environ.get('PATH', '')}"}

# A workflow of only the shared frame + the artifact rules: the fixture's metrics are plain source files there.
SNAKEFILE = f'''include: "{REPO}/workflow/rules/common.smk"
include: "{REPO}/workflow/rules/artifacts.smk"
'''


@pytest.fixture(scope="module")
def fixture_workflow(tmp_path_factory) -> Path:
    wf = tmp_path_factory.mktemp("artifacts-wf")
    (wf / "Snakefile").write_text(SNAKEFILE)
    (wf / "notebooks").symlink_to(REPO / "notebooks")
    shutil.copytree(FIXTURE, wf / "results" / "fixture", ignore=shutil.ignore_patterns("baseline", "*.py"))
    return wf


def _smk(wf: Path, *args: str, check=True):
    return run(snakemake_cmd("-s", str(wf / "Snakefile"), "-d", str(wf), "--configfile",
                             str(wf / "results" / "fixture" / "config.yaml"), *args), env=PATH_ENV, check=check)


@pytest.mark.slow
def test_rules_render_tables_notebooks_and_report(fixture_workflow):
    from matplotlib.testing.compare import compare_images

    wf = fixture_workflow
    _smk(wf, "--cores", "2", "table1", "fig3", "table5a")
    res = wf / "results" / "fixture"
    for rel in ("tables/table1.md", "tables/table1.csv", "tables/table5a.csv", "figures/fig3.png", "figures/fig3.pdf",
                "figures/fig3.csv", "notebooks/fig3.ipynb"):
        assert (res / rel).is_file(), rel
    # the pipeline's route (CLI, papermill notebook) gives exactly the CI baseline of the same metrics
    base = FIXTURE / "baseline"
    assert (res / "tables/table1.csv").read_bytes() == (base / "tables/table1.csv").read_bytes()
    assert (res / "figures/fig3.csv").read_bytes() == (base / "figures/fig3.csv").read_bytes()
    assert compare_images(str(base / "figures/fig3.png"), str(res / "figures/fig3.png"), tol=2.0) is None
    executed = (res / "notebooks/fig3.ipynb").read_text()
    assert '"papermill"' in executed and "config fixture (scale smoke)" in executed and "image/png" in executed
    # rerunning one target retrains/re-renders nothing
    again = _smk(wf, "-n", "table1", "fig3", "table5a")
    assert "Nothing to be done" in again.stdout + again.stderr
    # the report: every requested artifact with its caption
    _smk(wf, "--report", str(res / "report.html"), "table1", "fig3", "table5a")
    html = (res / "report.html").read_text()
    for text in ("Table 1: HumanEval pass&#64;1", "Figure 3: GSM8K and MATH pass&#64;1", "Table 5(a): MPO accuracy by block",
                 "Scale: smoke", "MISSING"):
        assert text in html, text


@pytest.mark.slow
def test_missing_input_stops_the_rule(fixture_workflow):
    """Table 5(b)'s fixture lacks one evaluation: the rule needs all inputs (the renderer would print MISSING)."""
    proc = _smk(fixture_workflow, "-n", "table5b", check=False)
    assert proc.returncode != 0 and "mpo_g09_w30" in proc.stdout + proc.stderr


def _jobs(dry_run_output: str) -> list[tuple[str, dict]]:
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\S+):\n((?:[ \t]+.*\n?)*)", dry_run_output, re.M):
        wc = re.search(r"wildcards: (.*)", m.group(2))
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), wildcards))
    return jobs


@pytest.mark.slow
def test_one_target_schedules_only_its_experiment(repo):
    if 'include: "workflow/rules/artifacts.smk"' not in (repo / "Snakefile").read_text():
        pytest.skip("workflow/rules/artifacts.smk is not included in the Snakefile yet")
    from mpo.artifacts import common
    from mpo.config import load_config

    cfg = load_config(repo / "config" / "smoke.yaml")
    allowed = {common.canonical(cfg, v) for v in common.experiment(cfg, "ablation_k").variants}
    proc = run(snakemake_cmd("-n", "table5a", "--configfile", "config/smoke.yaml", "--forceall"), env=PATH_ENV)
    jobs = _jobs(proc.stdout)
    names = {name for name, _ in jobs}
    assert "table5a" in names
    assert not names & (set(common.ARTIFACT_NAMES) - {"table5a"})
    variants = {wc["variant"] for _, wc in jobs if "variant" in wc}
    assert variants == allowed, (variants, allowed)
