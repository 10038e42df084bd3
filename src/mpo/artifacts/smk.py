"""Helpers of workflow/rules/artifacts.smk (kept here: Snakemake's linter wants functions out of rule files).

The input functions expand the config's ``experiments`` into the files an artifact needs, so that asking for one
artifact (``snakemake table5a``) schedules only the training runs and evaluations of its experiment(s).
"""

from __future__ import annotations

from pathlib import Path

from mpo.artifacts import common as art
from mpo.config import config_hash


def settings_hash(config: dict) -> str:
    """What the renderings depend on besides their input files (a rule param: editing it reruns the artifacts)."""
    keys = ("name", "scale", "device", "resources", "experiments", "variants", "train", "models")
    return config_hash({k: config.get(k) for k in keys})


def inputs(config: dict, results: str, experiment: str, kind: str, datasets=None, zero_shot: bool = False):
    """Input function: the files `experiment` needs, deduplicated (aliases share a run), in config order.

    kind: "runs" (metrics.jsonl of the training runs), "evals" (evaluation summary.json; with zero_shot=True also the
    untrained model's when the experiment asks for it), "warmups" (the MTP warm-up directory models/<model>/mtp_k<K>,
    which holds metrics.json, per model and K > 1).
    """

    def files(wildcards=None):
        out = []
        e = art.experiment(config, experiment)
        keep = e.datasets if datasets is None else [d for d in e.datasets if d in datasets]
        if kind == "evals" and zero_shot and e.zero_shot:
            out += [str(art.eval_dir(results, m, d, art.ZERO_SHOT) / "summary.json") for m in e.models for d in keep]
        for m, d, v in art.experiment_runs(config, experiment, keep):
            if kind == "runs":
                out.append(str(art.run_dir(results, m, d, v, config) / "metrics.jsonl"))
            elif kind == "evals":
                out.append(str(art.eval_dir(results, m, d, v, config) / "summary.json"))
            elif kind == "warmups":  # the warm-up's output directory (it holds metrics.json), as rule train uses it
                K = art.variant_params(config, v)["K"]
                if K > 1:
                    out.append(str(art.warmup_metrics_path(results, m, K).parent))
            else:
                raise ValueError(f"unknown input kind {kind!r}")
        return list(dict.fromkeys(out))

    return files


def bench_input(results: str, workflow):
    """Input function: benchmarks/update_step.json when a rule makes it (or it exists); otherwise nothing, and the
    tables print MISSING for the benchmark rows."""

    def files(wildcards=None):
        path = str(art.bench_path(results))
        if Path(path).exists() or any(r.is_producer(path) for r in workflow.rules):
            return [path]
        return []

    return files


def table_outputs(results: str, name: str, category: str, subcategory: str) -> dict:
    """Outputs of a table rule: the Markdown, and the CSV (shown in the Snakemake report with its caption)."""
    from snakemake.io import report

    return dict(
        md=f"{results}/tables/{name}.md",
        csv=report(f"{results}/tables/{name}.csv", caption=f"../report/{name}.rst", category=category,
                   subcategory=subcategory, labels={"artifact": name, "kind": "table (CSV)"}),
    )


def figure_outputs(results: str, name: str, category: str, subcategory: str) -> dict:
    """Outputs of a figure rule: PNG (in the report), PDF, the CSV behind it, and the executed notebook."""
    from snakemake.io import report

    return dict(
        png=report(f"{results}/figures/{name}.png", caption=f"../report/{name}.rst", category=category,
                   subcategory=subcategory, labels={"artifact": name, "kind": "figure"}),
        pdf=f"{results}/figures/{name}.pdf",
        csv=f"{results}/figures/{name}.csv",
        nb=f"{results}/notebooks/{name}.ipynb",
    )


def results_param(wildcards, output) -> str:
    """results/<name>, from a rule's first output (results/<name>/{tables,figures}/<artifact>.<ext>)."""
    return str(Path(output[0]).parents[1])


def artifact_param(wildcards, output) -> str:
    """The CLI's artifact name (table1, fig3, ...), from a rule's first output."""
    return Path(output[0]).stem


TABLE_CMD = (
    "python -m mpo.artifacts {params.artifact} --config {params.config} --results {params.results}"
    " --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"
)
NOTEBOOK_CMD = (
    "python -m papermill {input.nb} {output.nb} -k python3 --no-progress-bar"
    " -p config {params.config} -p results {params.results}"
    " -p out_png {output.png} -p out_pdf {output.pdf} -p out_csv {output.csv} > {log} 2>&1"
)
