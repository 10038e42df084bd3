"""CI-checked figure regeneration: every table and figure re-rendered from the committed metrics of each reference set
(results/reference/ once filled from a real default-config run; tests/fixtures/runs/ always) must match its committed
baseline — CSV/Markdown byte for byte (sha256), PNG within a small RMS tolerance. No training happens here.

A deliberate change of a table or figure fails these tests until the baselines are regenerated with
``python -m mpo.artifacts.reference --regenerate`` (and committed)."""

import json
import shutil

import pytest

from mpo.artifacts import figures, reference

FIXTURE = reference.SETS["fixture"]


@pytest.mark.parametrize("set_name", reference.available_sets())
def test_artifacts_match_committed_baseline(set_name, tmp_path):
    problems = reference.check(set_name, tmp_path)
    assert not problems, "\n".join(problems) + f"\nIf this change is intended, run: {reference.REGENERATE_CMD}"


def test_baseline_manifest_covers_every_artifact():
    manifest = json.loads((FIXTURE.baseline / "MANIFEST.json").read_text())
    from mpo.artifacts.common import ARTIFACT_NAMES, FIGURE_NAMES, REFERENCE_NAMES

    # every artifact built from a results root alone; Tables 4 and 7 need prepared data and model configs
    assert {e["artifact"] for e in manifest["files"].values()} == set(REFERENCE_NAMES)
    assert set(ARTIFACT_NAMES) - set(REFERENCE_NAMES) == {"table4", "table7"}
    for name in FIGURE_NAMES:
        assert f"figures/{name}.png" in manifest["files"] and f"figures/{name}.csv" in manifest["files"]
    assert manifest["regenerate"] == reference.REGENERATE_CMD


def test_a_plotting_change_fails_the_check(monkeypatch, tmp_path):
    monkeypatch.setitem(figures.STYLE, "lines.linewidth", 4.0)
    problems = reference.check("fixture", tmp_path, names=["fig4"])
    assert any("figures/fig4.png differs from the baseline" in p for p in problems), problems
    assert not any("fig4.csv" in p for p in problems)  # the data did not change


def test_a_data_change_fails_the_check(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURE.root, root, ignore=shutil.ignore_patterns("baseline"))
    summary = root / "eval" / "tiny-b" / "code" / "ppo" / "summary.json"
    s = json.loads(summary.read_text())
    s["pass@1"] = 0.5
    summary.write_text(json.dumps(s))
    grades = summary.with_name("completions.jsonl")  # the cell's mean and interval come from the per-problem grades
    rows = [json.loads(x) for x in grades.read_text().splitlines() if x.strip()]
    rows[0]["grade"] = 1.0 - float(rows[0]["grade"] or 0.0)
    grades.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = reference.check("fixture", tmp_path / "out", names=["table1"], root=root)
    assert problems and all("table1" in p and "sha256" in p for p in problems), problems


def test_regenerate_then_check_round_trip(monkeypatch, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(FIXTURE.root, root, ignore=shutil.ignore_patterns("baseline"))
    monkeypatch.setitem(reference.SETS, "tmp", reference.ReferenceSet("tmp", root, root / "config.yaml"))
    monkeypatch.setattr(reference, "render_set",
                        lambda ref, out, names=None, _orig=reference.render_set: _orig(ref, out, names or ["table5a", "fig6"]))
    reference.regenerate("tmp")
    manifest = json.loads((root / "baseline" / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"tables/table5a.md", "tables/table5a.csv", "figures/fig6.png", "figures/fig6.csv"}
    assert reference.check("tmp", tmp_path / "out") == []
    (root / "baseline" / "figures" / "fig6.png").unlink()
    assert any("fig6.png" in p for p in reference.check("tmp", tmp_path / "out2"))


def test_collect_copies_only_small_metrics(tmp_path):
    src = tmp_path / "results" / "default"
    files = {
        "config.resolved.yaml": "name: default\n",
        "runs/m/gsm8k/mpo/metrics.jsonl": "{}\n",
        "runs/m/gsm8k/mpo/summary.json": "{}",
        "runs/m/gsm8k/mpo/policy/model.safetensors": "weights",
        "eval/m/gsm8k/mpo/summary.json": "{}",
        "eval/m/gsm8k/mpo/completions.jsonl": '{"id": "p1", "sample": 0, "grade": 1.0, "completion": "long text"}\n',
        "models/m/mtp_k5/metrics.json": "{}",
        "models/m/mtp_k5/mtp.safetensors": "weights",
        "benchmarks/update_step.json": "{}",
    }
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    dest = reference.collect(src, tmp_path / "ref")
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["benchmarks/update_step.json", "config.yaml", "eval/m/gsm8k/mpo/completions.jsonl",
                   "eval/m/gsm8k/mpo/summary.json", "models/m/mtp_k5/metrics.json", "runs/m/gsm8k/mpo/metrics.jsonl",
                   "runs/m/gsm8k/mpo/summary.json"]
    # of the completions only the per-problem grades (the paired tests read them), not the generated text
    assert json.loads((dest / "eval/m/gsm8k/mpo/completions.jsonl").read_text()) == {"id": "p1", "sample": 0,
                                                                                      "grade": 1.0}
