"""Helpers shared by the table modules (tables_main, tables_ablation, tables_beyond): row order, method columns,
the paper's cells, ratios."""

from __future__ import annotations

import statistics
from collections import OrderedDict

from mpo.artifacts.common import METHOD_LABELS, MISSING, NA, ZERO_SHOT, is_missing, variant_params

PAPER = "paper"

def ordered_rows(ours: "OrderedDict[str, list[dict]]", paper: "OrderedDict[str, list[dict]]") -> list[dict]:
    """Our rows per model, each followed by the paper's rows of the same model; then the paper's other models."""
    rows: list[dict] = []
    for m, rs in ours.items():
        rows += rs
        rows += paper.get(m, [])
    for m, rs in paper.items():
        if m not in ours:
            rows += rs
    return rows


def method_columns(cfg: dict, variants: list[str], zero_shot: bool) -> list[tuple[str, str, str]]:
    """[(column label, variant or zero_shot, method)] — one column per variant, labelled by method."""
    cols = [(METHOD_LABELS[ZERO_SHOT], ZERO_SHOT, ZERO_SHOT)] if zero_shot else []
    methods = [variant_params(cfg, v)["method"] for v in variants]
    for v, method in zip(variants, methods):
        label = METHOD_LABELS.get(method, method.upper())
        if methods.count(method) > 1:
            label = f"{label} ({v})"
        cols.append((label, v, method))
    return cols


def paper_value(block: dict, model: str, column: str):
    row = (block.get("rows") or {}).get(model)
    if row is None or column not in block["columns"]:
        return NA
    v = row[block["columns"].index(column)]
    return NA if v is None else v


def median(series) -> float | None:
    vals = [float(x) for x in series if not is_missing(x)]
    return statistics.median(vals) if vals else None


def max_value(series) -> float | None:
    vals = [float(x) for x in series if not is_missing(x)]
    return max(vals) if vals else None


def ratio(a, b, digits=2) -> str:
    if isinstance(a, str) or isinstance(b, str):
        return NA if (a == NA or b == NA) else MISSING
    if is_missing(a) or is_missing(b):
        return MISSING
    return f"{a / b:.{digits}f}" if b else NA


def bench_ratio(given, a, b) -> str:
    """The benchmark's own ``ratio_to_ppo`` (paired under ``bench.interleave``) where it has one, else a / b."""
    return f"{given:.2f}" if given is not None else ratio(a, b)


def first_variant(cfg: dict, variants: list[str], method: str, K: int | None = None) -> str | None:
    for v in variants:
        p = variant_params(cfg, v)
        if p["method"] == method and (K is None or p["K"] == K):
            return v
    return None

