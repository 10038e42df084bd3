"""Table `beyond`: GRPO, TEMPO, MoT-G, PPO and MPO on the main comparison (docs/method.md §8 TEMPO, §9 MoT-G).

One row per (dataset, model, method): our pass@1 with the same seeds and intervals as the main tables
(:mod:`mpo.artifacts.seeds`), the paired difference to PPO over (problem, seed) pairs, and -- in rows of their own --
what the papers report: the MPO paper's Table 1 (HumanEval; its GSM8K / MATH bars have no numbers in the text) and
the TEMPO and MoT-G papers' claims (src/mpo/reported_beyond.yaml), which come from other models and benchmarks.
A method the `beyond` experiment does not list, or whose run is absent, reads MISSING.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from mpo.artifacts.common import DATASET_LABELS, MISSING, NA, Table, experiment, fmt, ours_source, variant_params
from mpo.artifacts.registry import BEYOND_METHODS
from mpo.artifacts.seeds import INTERVAL_NOTE, accuracy_cell, paired_cell
from mpo.artifacts.table_helpers import paper_value
from mpo.reported import load_reported

# (label, method) -- each row reads the first variant of experiment `beyond` that trains this method (an alias such as
# mpo_k5 counts as its target's method); PPO is the paired reference
METHODS: list[tuple[str, str]] = list(zip(["GRPO", "TEMPO", "MoT-G", "PPO", "MPO"], BEYOND_METHODS))
REFERENCE = "ppo"
DASH = "—"  # a paper states no number for this cell
COLUMNS = ["Dataset", "Model", "Method", "Source", "pass@1", "− PPO (paired)", "Setting"]
REPORTED_BEYOND = Path(__file__).resolve().parents[1] / "reported_beyond.yaml"


@lru_cache(maxsize=1)
def reported_beyond() -> dict:
    with open(REPORTED_BEYOND) as f:
        return yaml.safe_load(f)


def beyond_variants(cfg: dict) -> dict[str, str | None]:
    """{label: variant} of the comparison: the first of experiment `beyond`'s variants with the label's method; None
    where the experiment has none (e.g. MoT-G at paper scale, which runs on one process only)."""
    variants = experiment(cfg, "beyond").variants
    return {label: next((v for v in variants if variant_params(cfg, v)["method"] == method), None)
            for label, method in METHODS}


def _ours_rows(cfg: dict, results, e, variants: dict[str, str | None]) -> list[dict]:
    rows = []
    ref = variants["PPO"]
    for d in e.datasets:
        for m in e.models:
            for label, v in variants.items():
                diff = NA if label == "PPO" else paired_cell(results, m, d, v, ref, cfg)
                setting = f"variant `{v}`" if v else f"no `{dict(METHODS)[label]}` variant in experiment `beyond`"
                rows.append({"Dataset": DATASET_LABELS.get(d, d), "Model": m, "Method": label,
                             "Source": ours_source(cfg), "pass@1": accuracy_cell(results, m, d, v, cfg),
                             "− PPO (paired)": diff, "Setting": setting})
    return rows


def _mpo_paper_rows(e) -> list[dict]:
    """The MPO paper's HumanEval numbers (Table 1) for the methods it ran; no other dataset has numbers in its text."""
    if "code" not in e.datasets:
        return []
    block = load_reported()["table1_humaneval_pass1"]
    rows = []
    for model in block["rows"]:
        ppo = paper_value(block, model, REFERENCE)
        for label, v in METHODS:
            val = paper_value(block, model, v)
            if val == NA:
                continue
            diff = NA if v == REFERENCE else f"{val - ppo:+.3f} (no interval)"
            rows.append({"Dataset": DATASET_LABELS["code"], "Model": model, "Method": label, "Source": "paper (MPO)",
                         "pass@1": fmt(val), "− PPO (paired)": diff, "Setting": "the MPO paper's Table 1"})
    return rows


def _other_paper_rows() -> list[dict]:
    """One row per other paper: its setting and claim; pass@1 only where its text states one for our datasets."""
    rows = []
    for info in reported_beyond().values():
        stated = {d: v for d, v in (info.get("pass1") or {}).items() if v is not None}
        rows.append({"Dataset": ", ".join(DATASET_LABELS.get(d, d) for d in stated) or DASH, "Model": DASH,
                     "Method": info["label"], "Source": f"paper ({info['label']}), other setting",
                     "pass@1": ", ".join(fmt(v) for v in stated.values()) or DASH, "− PPO (paired)": DASH,
                     "Setting": f"{info['setting']}: {info['claim']}"})
    return rows


def beyond(cfg: dict, results) -> Table:
    e = experiment(cfg, "beyond")
    variants = beyond_variants(cfg)
    for label, v in variants.items():
        if v is not None:
            variant_params(cfg, v)  # a bad definition is a ConfigError naming the variant
    rows = _ours_rows(cfg, results, e, variants) + _mpo_paper_rows(e) + _other_paper_rows()
    absent = [dict(METHODS)[label] for label, v in variants.items() if v is None]
    notes = [
        "Token-level credit beyond PPO: GRPO, TEMPO (tree-estimated prefix values, docs/method.md §8), MoT-G (mixture"
        " of tokens, §9), PPO and MPO trained on the `beyond` experiment's models and datasets, pass@1 on its test sets.",
        INTERVAL_NOTE.replace("MPO − PPO", "− PPO"),
        f"`{DASH}`: the paper's text states no number for this cell. The TEMPO and MoT-G rows are other models and"
        " benchmarks (their own papers' settings, src/mpo/reported_beyond.yaml), not comparable with ours.",
    ]
    if absent:
        notes.append(f"Not defined in this config (cells {MISSING}): {', '.join(f'`{v}`' for v in absent)}.")
    return Table("beyond", "Beyond token-level PPO: GRPO, TEMPO, MoT-G, PPO, MPO", COLUMNS, rows, notes,
                 align={c: "l" for c in ("Dataset", "Model", "Method", "Source", "Setting")})
