"""Shared machinery of the paper artifacts: result paths, experiments, variant parameters, loading, formatting.

Rules of the game (every table and figure follows them):

* Inputs are found by convention under a results root ``R`` (``results/<name>`` or ``results/reference``):

  - training run   ``R/runs/<model>/<dataset>/<variant>/{metrics.jsonl, summary.json, resolved_config.yaml}``
  - evaluation     ``R/eval/<model>/<dataset>/<variant or zero_shot>/summary.json``
  - MTP warm-up    ``R/models/<model>/mtp_k<K>/metrics.json``
  - benchmarks     ``R/benchmarks/update_step.json``

* An absent input is never guessed: loaders return ``None`` and the cell reads ``MISSING`` (figures annotate it).
  ``–`` means "not applicable" (e.g. the paper has no such row, or a value is not defined for that method).
* Which runs an artifact needs is the config's ``experiments`` section (schema: workflow/schemas/config.schema.yaml);
  :func:`experiment` resolves one (models default to every configured model) and :func:`experiment_runs` expands it.
* Variant parameters (method, K, gamma, MTP share, value heads, gradient regime) come from the config's ``variants``
  section through :func:`variant_params`, so table layouts (K columns, gamma x share grids) never depend on names.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from mpo.artifacts import registry as _registry
from mpo.artifacts.registry import ARTIFACT_NAMES, FIGURE_NAMES, REFERENCE_NAMES, TABLE_NAMES  # noqa: F401 (the one list)
from mpo.config import ConfigError

MISSING = "MISSING"  # an input the plan expects is absent
NA = "–"  # not applicable / the paper gives no value

ZERO_SHOT = "zero_shot"

# Experiment -> the artifacts it feeds (documentation, from the registry; definitions live in the config schema).
EXPERIMENT_USES: dict[str, list[str]] = {}
for _a in _registry.ARTIFACTS:
    for _e in dict.fromkeys(n.experiment for n in _a.needs if n.experiment):
        EXPERIMENT_USES.setdefault(_e, []).append(_a.name)

METHOD_LABELS = {"zero_shot": "Zero-shot", "grpo": "GRPO", "dapo": "DAPO", "ppo": "PPO", "mpo": "MPO", "gspo": "GSPO",
                 "tempo": "TEMPO", "mot_grpo": "MoT-G"}
DATASET_LABELS = {"gsm8k": "GSM8K", "math": "MATH", "code": "HumanEval"}

# The paper reports on its own models; which paper row our model stands in for is not claimed anywhere, the paper's
# rows are printed next to ours. Paper-scale model names match reported.yaml keys.
PAPER_SETTING = "the paper: 1 node of 8x A100 80GB, its Table 5 hyperparameters"


# ---------------------------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------------------------


def canonical(cfg: dict | None, variant: str) -> str:
    """The run an alias reuses (``mpo_k5`` -> ``mpo``, ``mpo_k5_seed7`` -> ``mpo_seed7``); zero_shot and unknown names
    pass through."""
    if cfg is None or variant == ZERO_SHOT:
        return variant
    from mpo.train.variants import VariantError, canonical_variant

    try:
        return canonical_variant(cfg, variant)
    except VariantError:
        return variant


def run_dir(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None) -> Path:
    """``R/runs/<model>/<dataset>/<variant>`` (aliases resolved when `cfg` is given)."""
    return Path(results) / "runs" / model / dataset / canonical(cfg, variant)


def eval_dir(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None) -> Path:
    """``R/eval/<model>/<dataset>/<variant or zero_shot>`` (aliases resolved when `cfg` is given)."""
    return Path(results) / "eval" / model / dataset / canonical(cfg, variant)


def warmup_metrics_path(results: str | Path, model: str, K: int) -> Path:
    return Path(results) / "models" / model / f"mtp_k{int(K)}" / "metrics.json"


def bench_path(results: str | Path) -> Path:
    return Path(results) / "benchmarks" / "update_step.json"


# ---------------------------------------------------------------------------------------------------------------
# Experiments and variants
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    name: str
    models: list[str]
    datasets: list[str]  # only datasets the config defines, in the experiment's order
    variants: list[str]
    zero_shot: bool = False
    skipped_datasets: list[str] = field(default_factory=list)  # listed by the experiment, not configured


def experiment(cfg: dict, name: str) -> Experiment:
    """Resolve experiment `name` of a validated config (models: null -> all models). Raises ConfigError on unknown names."""
    exps = cfg.get("experiments") or {}
    if name not in exps:
        raise ConfigError(f"config has no experiment '{name}' (known: {sorted(exps)})")
    e = exps[name]
    models = list(cfg["models"]) if e.get("models") is None else list(e["models"])
    for m in models:
        if m not in cfg["models"]:
            raise ConfigError(f"config error at 'experiments.{name}.models': '{m}' is not a configured model ({list(cfg['models'])})")
    known = cfg.get("variants") or {}
    for v in e["variants"]:
        if v not in known:
            raise ConfigError(
                f"config error at 'experiments.{name}.variants': '{v}' is not defined in 'variants' ({sorted(known)})"
            )
        variant_params(cfg, v)  # resolves aliases and checks the definition (ConfigError on a bad one)
    datasets = [d for d in e["datasets"] if d in cfg["datasets"]]
    skipped = [d for d in e["datasets"] if d not in cfg["datasets"]]
    return Experiment(name, models, datasets, list(e["variants"]), bool(e.get("zero_shot", False)), skipped)


def experiment_runs(cfg: dict, name: str, datasets: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """(model, dataset, variant) triples of an experiment, optionally restricted to `datasets`, in config order."""
    e = experiment(cfg, name)
    keep = e.datasets if datasets is None else [d for d in e.datasets if d in set(datasets)]
    return [(m, d, v) for m in e.models for d in keep for v in e.variants]


def variant_params(cfg: dict, name: str) -> dict:
    """Parameters of a variant as the trainer resolves them (mpo.train.variants.resolve_variant, aliases followed):
    method, K, gamma, mtp_share (computed from w1 where a variant gives w1), value_heads, mtp_grad, group_size,
    plus `canonical` (the run it reuses) and `raw` (its own config entry)."""
    if name == ZERO_SHOT:
        return {"name": name, "canonical": name, "method": ZERO_SHOT, "K": None, "gamma": None, "mtp_share": None,
                "value_heads": False, "mtp_grad": None, "group_size": None, "raw": {}}
    from mpo.train.variants import VariantError, resolve_variant

    try:
        spec = resolve_variant(cfg, name)
    except VariantError as e:
        raise ConfigError(str(e)) from e
    K = int(spec["K"])
    share = spec.get("mtp_share")
    if spec["method"] == "mpo" and share is None and spec.get("w1") is not None:
        g = float(spec.get("gamma") if spec.get("gamma") is not None else 1.0)
        share = sum(float(spec["w1"]) * g ** (k - 1) for k in range(1, K))
    if K == 1:
        share = 0.0
    return {
        "name": name,
        "canonical": spec["name"],
        "method": spec["method"],
        "K": K,
        "gamma": float(spec["gamma"]) if spec.get("gamma") is not None else None,
        "mtp_share": float(share) if share is not None else None,
        "value_heads": bool(spec.get("value_heads")),
        "mtp_grad": spec.get("mtp_grad"),
        "group_size": spec.get("group_size"),
        "raw": dict((cfg.get("variants") or {}).get(name) or {}),
    }


def variant_label(cfg: dict, name: str) -> str:
    """Short human label: 'MPO K=5 γ=0.7 W=0.2', 'PPO', ..."""
    p = variant_params(cfg, name)
    base = METHOD_LABELS.get(p["method"], p["method"].upper())
    if p["method"] != "mpo" or p["K"] == 1:
        return base if p["method"] != "mpo" else f"{base} K=1"
    parts = [base, f"K={p['K']}"]
    if p["gamma"] is not None and (p["K"] or 0) > 2:
        parts.append(f"γ={p['gamma']:g}")
    if p["mtp_share"] is not None:
        parts.append(f"W={p['mtp_share']:g}")
    if p["value_heads"]:
        parts.append("+VH")
    if p["mtp_grad"] not in (None, "hidden"):
        parts.append(f"[{p['mtp_grad']}]")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Loading (absent -> None)
# ---------------------------------------------------------------------------------------------------------------


def load_json(path: str | Path) -> Any | None:
    path = Path(path)
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)


def load_yaml(path: str | Path) -> Any | None:
    path = Path(path)
    if not path.is_file():
        return None
    with open(path) as f:
        return yaml.safe_load(f)


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts -> 'a/b' keys; lists of scalars -> 'key/k1', 'key/k2', ... (1-based: MTP module k)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float, type(None))) for x in v):
            for i, x in enumerate(v, start=1):
                out[f"{key}/k{i}"] = x
        else:
            out[key] = v
    return out


def load_metrics(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None
                 ) -> pd.DataFrame | None:
    """A run's per-step metrics (metrics.jsonl) as a DataFrame with canonical column names (see metrics.py), or None."""
    from mpo.artifacts.metrics import canonicalize

    path = run_dir(results, model, dataset, variant, cfg) / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(_flatten(json.loads(line)))
    df = canonicalize(pd.DataFrame(rows))
    if "step" in df.columns:
        df = df.sort_values("step", kind="stable").reset_index(drop=True)
    return df


def load_run_summary(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None
                     ) -> dict | None:
    return load_json(run_dir(results, model, dataset, variant, cfg) / "summary.json")


def load_eval(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None) -> dict | None:
    return load_json(eval_dir(results, model, dataset, variant, cfg) / "summary.json")


PASS1_KEYS = ("pass@1", "pass_at_1", "pass1", "accuracy")


def pass_at_1(summary: dict | None) -> float | None:
    """pass@1 of an evaluation summary (None when the summary is absent or has no pass@1)."""
    if not summary:
        return None
    for key in PASS1_KEYS:
        v = summary.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    m = summary.get("metrics")
    if isinstance(m, dict):
        return pass_at_1(m)
    return None


def eval_pass1(results: str | Path, model: str, dataset: str, variant: str, cfg: dict | None = None) -> float | None:
    return pass_at_1(load_eval(results, model, dataset, variant, cfg))


# ---------------------------------------------------------------------------------------------------------------
# Formatting and writing tables
# ---------------------------------------------------------------------------------------------------------------


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v, digits: int = 3) -> str:
    """A table cell: None/NaN -> MISSING, NA stays NA, floats with fixed decimals (platform-stable), ints as is."""
    if is_missing(v):
        return MISSING
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ours_source(cfg: dict, what: str | None = None) -> str:
    s = f"ours ({cfg['scale']})"
    return f"{s}, {what}" if what else s


@dataclass
class Table:
    """A rendered table: `rows` (list of dicts, cells already strings), column order, title and notes."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    align: dict[str, str] = field(default_factory=dict)  # column -> 'l' | 'r'
    extra_md: list[str] = field(default_factory=list)  # more Markdown blocks after the table

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


@dataclass(frozen=True)
class Rendered:
    """A table that keeps its own layout (Tables 4 and 7): the Markdown and CSV texts as written."""

    md: str
    csv: str


def markdown_table(columns: list[str], rows: list[dict], align: dict[str, str] | None = None) -> str:
    align = align or {}
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if align.get(c, "r") == "r" else "---" for c in columns) + "|")
    for r in rows:
        lines.append("| " + " | ".join(esc(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def table_markdown(table: Table, cfg: dict) -> str:
    out = [
        f"**{table.title}** — scale `{cfg['scale']}`, config `{cfg['name']}`; our values next to the paper's.",
        "",
        markdown_table(table.columns, table.rows, table.align),
        "",
    ]
    for block in table.extra_md:
        out += [block, ""]
    notes = list(table.notes) + [
        f"`{MISSING}`: the input this cell needs (a training run, evaluation or benchmark of this configuration) is absent; "
        f"`{NA}`: not applicable, or the paper gives no value.",
    ]
    out += [" ".join(notes)]
    return "\n".join(out) + "\n"


def table_csv(table: Table, cfg: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["config", "scale", *table.columns], lineterminator="\n")
    w.writeheader()
    for r in table.rows:
        w.writerow({"config": cfg["name"], "scale": cfg["scale"], **{c: r.get(c, "") for c in table.columns}})
    return buf.getvalue()


def rows_csv(rows: list[dict], columns: list[str], cfg: dict) -> str:
    """CSV of dict rows with the config's name and scale first ('\\r\\n' line ends, as Tables 4 and 7 always had)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["config", "scale"] + columns, lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({"config": cfg["name"], "scale": cfg["scale"], **r})
    return buf.getvalue()


def write_table(table: "Table | Rendered", cfg: dict, out_md: str | Path, out_csv: str | Path) -> str:
    if isinstance(table, Rendered):
        md, csv_text = table.md, table.csv
    else:
        md, csv_text = table_markdown(table, cfg), table_csv(table, cfg)
    for path, text in ((out_md, md), (out_csv, csv_text)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return md


def write_frame_csv(df: pd.DataFrame, path: str | Path) -> None:
    """The data behind a figure: fixed float format, no index, '\\n' line ends (its hash is checked in CI)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(df.to_csv(index=False, float_format="%.6g", lineterminator="\n", na_rep=""))
