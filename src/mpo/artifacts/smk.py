"""Helpers of workflow/rules/artifacts.smk (kept here: Snakemake's linter wants functions out of rule files).

The input functions expand the config's ``experiments`` into the files an artifact needs, so that asking for one
artifact (``snakemake table5a``) schedules only the training runs and evaluations of its experiment(s).
"""

from __future__ import annotations

from pathlib import Path

from mpo.artifacts import common as art
from mpo.artifacts import registry
from mpo.config import config_hash


def settings_hash(config: dict) -> str:
    """What the renderings depend on besides their input files (a rule param: editing it reruns the artifacts)."""
    keys = ("name", "scale", "device", "resources", "experiments", "variants", "train", "models", "datasets", "mtp",
            "seed", "seeds")
    return config_hash({k: config.get(k) for k in keys})


def inputs(config: dict, results: str, experiment: str, kind: str, datasets=None, zero_shot: bool = False,
           variants=None):
    """Input function: the files `experiment` needs, deduplicated (aliases share a run), in config order.

    kind: "runs" (metrics.jsonl of the training runs), "evals" (evaluation summary.json; with zero_shot=True also the
    untrained model's when the experiment asks for it), "warmups" (the MTP warm-up directory models/<model>/mtp_k<K>,
    which holds metrics.json, per model and K > 1). `variants` replaces the experiment's variants (those the config
    does not define are skipped: their cells read MISSING). Every seed of the experiment's ``seeds`` (else the
    config's) has its own run (mpo.artifacts.seeds.seed_variant).
    """

    def files(wildcards=None):
        e = art.experiment(config, experiment)
        keep = e.datasets if datasets is None else [d for d in e.datasets if d in datasets]
        out = []
        if kind == "evals" and zero_shot and e.zero_shot:
            out += [str(art.eval_dir(results, m, d, art.ZERO_SHOT) / "summary.json") for m in e.models for d in keep]
        vs = e.variants if variants is None else [v for v in variants if v in (config.get("variants") or {})]
        for m, d, v in ((m, d, v) for m in e.models for d in keep for v in vs):
            out += _run_files(config, results, kind, m, d, v, experiment)
        return list(dict.fromkeys(out))

    return files


def _run_files(config: dict, results: str, kind: str, m: str, d: str, v: str, experiment: str | None = None
               ) -> list[str]:
    from mpo.artifacts.seeds import seed_list, seed_variant

    if kind == "warmups":  # the warm-up's output directory (it holds metrics.json), as rule train uses it
        K = art.variant_params(config, v)["K"]
        return [str(art.warmup_metrics_path(results, m, K).parent)] if K > 1 else []
    if kind not in ("runs", "evals"):
        raise ValueError(f"unknown input kind {kind!r}")
    out = []
    for s in seed_list(config, experiment):
        name = seed_variant(config, v, s)  # an alias resolves to its target's run, per seed (mpo_k5_seed7 -> mpo_seed7)
        if kind == "runs":
            out.append(str(art.run_dir(results, m, d, name, config) / "metrics.jsonl"))
        else:
            out.append(str(art.eval_dir(results, m, d, name, config) / "summary.json"))
    return out


def bench_input(results: str, workflow):
    """Input function: benchmarks/update_step.json when a rule makes it (or it exists); otherwise nothing, and the
    tables print MISSING for the benchmark rows."""

    def files(wildcards=None):
        path = str(art.bench_path(results))
        if Path(path).exists() or any(r.is_producer(path) for r in workflow.rules):
            return [path]
        return []

    return files


def outputs(results: str, name: str) -> dict:
    """Outputs of artifact `name`'s rule. Table: the Markdown and the CSV (in the Snakemake report with its
    caption). Figure: PNG (in the report), PDF, the CSV behind it, and the executed notebook."""
    from snakemake.io import report

    a = registry.get(name)
    labels = {"artifact": name, "kind": "table (CSV)" if a.kind == "table" else "figure"}
    where = dict(caption=f"../report/{name}.rst", category=a.category, subcategory=a.subcategory, labels=labels)
    if a.kind == "table":
        return dict(md=f"{results}/tables/{name}.md", csv=report(f"{results}/tables/{name}.csv", **where))
    return dict(png=report(f"{results}/figures/{name}.png", **where), pdf=f"{results}/figures/{name}.pdf",
                csv=f"{results}/figures/{name}.csv", nb=f"{results}/notebooks/{name}.ipynb")


def output_paths(results: str, name: str) -> list[str]:
    """The plain paths of `outputs` (what a group target asks for)."""
    a = registry.get(name)
    if a.kind == "table":
        return [f"{results}/tables/{name}.{ext}" for ext in ("md", "csv")]
    return [f"{results}/figures/{name}.{ext}" for ext in ("png", "pdf", "csv")] + [f"{results}/notebooks/{name}.ipynb"]


def group_inputs(results: str, group: str) -> list[str]:
    """Every output of the artifacts of a named target (registry.groups(): main_results, efficiency, artifacts...)."""
    return [p for rule in registry.groups()[group] for p in output_paths(results, _by_rule(rule).name)]


def default_targets(config: dict, results: str, everything: list[str], always: list[str]) -> list[str]:
    """What rule all builds: `everything` when the config's ``targets`` is null, else `always` (prepared data and
    models) plus the outputs of each named target -- a group of :func:`registry.groups` or one artifact."""
    if not config.get("targets"):
        return list(everything)
    named = registry.groups()
    out = list(always)
    for t in config["targets"]:
        out += group_inputs(results, t) if t in named else output_paths(results, t)
    return list(dict.fromkeys(out))


def _by_rule(rule: str) -> registry.Artifact:
    return next(a for a in registry.ARTIFACTS if a.rule_name == rule)


def artifact_inputs(config: dict, results: str, name: str, workflow=None):
    """Input function (for ``unpack``) of artifact `name`: {kind: [files]} from its registry needs, plus the
    notebook of a figure."""
    a = registry.get(name)

    def files(wildcards=None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"nb": [f"notebooks/{name}.ipynb"]} if a.kind == "figure" else {}
        for need in a.needs:
            out.setdefault(need.kind, [])
            out[need.kind] = list(dict.fromkeys(out[need.kind] + _need_files(config, results, need, workflow)))
        return out

    return files


def _need_files(config: dict, results: str, need: registry.Need, workflow) -> list[str]:
    first = next(iter(config["models"]))
    if need.kind == "bench":
        return bench_input(results, workflow)()
    if need.kind == "data":
        return [f"{results}/data/{d}/stats.json" for d in config["datasets"]]
    if need.kind == "tokenizer":
        return [f"{results}/models/{first}/base"]
    if need.kind == "bases":
        return [f"{results}/models/{m}/base" for m in config["models"]]
    return inputs(config, results, need.experiment, need.kind, datasets=list(need.datasets) if need.datasets else None,
                  zero_shot=need.zero_shot, variants=need.variants)()


def command(name: str, results: str, config_file: str) -> str:
    """The complete shell command of artifact `name`'s rule, every path literal: the CLI for a table, papermill for a
    figure's notebook. (A rule defined in a loop runs its `shell:` expression when the job runs, after the loop has
    moved on, so the rule passes this string as a param and runs "{params.cmd}".)"""
    log = f"{results}/logs/artifacts/{name}.log"
    if registry.get(name).kind == "table":
        return (f"python -m mpo.artifacts {name} --config {config_file} --results {results}"
                f" --out-md {results}/tables/{name}.md --out-csv {results}/tables/{name}.csv > {log} 2>&1")
    fig = f"{results}/figures/{name}"
    return (f"python -m papermill notebooks/{name}.ipynb {results}/notebooks/{name}.ipynb -k python3 --no-progress-bar"
            f" -p config {config_file} -p results {results} -p out_png {fig}.png -p out_pdf {fig}.pdf"
            f" -p out_csv {fig}.csv > {log} 2>&1")
