"""Table 7 of the paper: model size of backbone + K-1 MTP modules relative to the backbone, K = 3 and 5.

    python -m mpo.artifacts.table7 --config CONFIG [--models-root results/<name>/models] --out-md F --out-csv F

Rows: every model of the config (architecture from ``<models-root>/<model>/base/config.json`` when prepared, else
the stored hub config of a paper model, see :mod:`mpo.model_sizes`) and the paper's two Table 7 models
(Llama-3.2-1B-Instruct, DeepSeek-R1-Distill-Qwen-1.5B; stored architecture facts, no download). Counts are exact:
the model is built on the meta device and ``MTPModel.from_backbone`` attaches the modules the code trains. The
paper's ratios (``table7_model_size_ratio`` in reported.yaml) are shown next to ours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpo.artifacts.common import Rendered, rows_csv, write_table
from mpo.config import ConfigError, load_config
from mpo.model_sizes import PAPER_MODELS, TABLE7_PAPER_MODELS, arch_config, model_size_row
from mpo.reported import load_reported

KS = (1, 3, 5)
COLUMNS = ["model", "kind", "architecture_from", "architecture", "tied_embeddings", "backbone_params",
           "per_module_params", "per_module_head_params", "per_module_block_params", "K", "total_params", "ratio",
           "paper_ratio", "share_head"]


def _paper_ratios() -> dict[str, dict[int, float]]:
    t = load_reported()["table7_model_size_ratio"]
    col_K = {"ppo": 1, "mpo_k3": 3, "mpo_k5": 5}
    return {m: {col_K[c]: v for c, v in zip(t["columns"], vals)} for m, vals in t["rows"].items()}


def _model_arch(name: str, spec: dict, models_root: Path | None):
    """(config, where it came from) of a configured model."""
    if models_root is not None:
        path = models_root / name / "base" / "config.json"
        if path.is_file():
            return arch_config(path), str(path)
    if spec.get("source") == "hub":
        for key, info in PAPER_MODELS.items():
            if info["repo"] == spec.get("repo"):
                return arch_config(key), f"stored hub config ({info['repo']})"
    raise FileNotFoundError(
        f"model {name!r}: no architecture config; prepare it first (rule prepare_model writes "
        f"<results>/models/{name}/base) and pass --models-root"
    )


def table_rows(cfg: dict, models_root: str | Path | None = None) -> list[dict]:
    models_root = Path(models_root) if models_root else None
    paper = _paper_ratios()
    entries = []  # (name, kind, config, from)
    for name, spec in cfg["models"].items():
        arch, src = _model_arch(name, spec, models_root)
        entries.append((name, "config", arch, src))
    have = {e[0] for e in entries}
    for name in PAPER_MODELS:  # the paper's Table 7 models, and its 7B model for reference
        if name not in have:
            entries.append((name, "paper", arch_config(name), f"stored hub config ({PAPER_MODELS[name]['repo']})"))
    rows = []
    for name, kind, arch, src in entries:
        # the config's models are counted as the config builds them (mtp.share_head); the paper's with a head per module
        share = kind == "config" and bool(cfg["mtp"]["share_head"])
        r = model_size_row(arch, KS, share_head=share)
        for K in KS:
            c = r["by_K"][K]
            rows.append({
                "model": name, "kind": kind, "architecture_from": src, "architecture": r["architecture"],
                "tied_embeddings": r["tied_embeddings"], "backbone_params": r["backbone"],
                "per_module_params": r["per_module"],
                "per_module_head_params": r["module_parts"].get("head"),
                "per_module_block_params": r["module_parts"].get("block"),
                "K": K, "total_params": c["total"], "ratio": round(c["ratio"], 4),
                "paper_ratio": paper.get(name, {}).get(K), "share_head": share,
            })
    return rows


def _p(n) -> str:
    if n is None:
        return "–"
    return f"{n / 1e9:.3f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} K"


def _r(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def to_markdown(rows: list[dict], cfg: dict) -> str:
    by_model: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["K"]] = r
    lines = [
        f"**Table 7: model size** — scale `{cfg['scale']}`, config `{cfg['name']}`. Parameters of backbone + K−1 MTP "
        "modules relative to the backbone alone (PPO = 1.00); ours next to the paper's.",
        "",
        "| Model | Rows from | Backbone | Per module (head) | K=3 params | K=3 ratio | K=3 (paper) "
        "| K=5 params | K=5 ratio | K=5 (paper) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, byK in by_model.items():
        r1, r3, r5 = byK[1], byK[3], byK[5]
        kind = "this config" if r1["kind"] == "config" else (
            "paper, Table 7" if model in TABLE7_PAPER_MODELS else "paper (not in its Table 7)")
        lines.append(
            f"| {model} | {kind} | {_p(r1['backbone_params'])} | {_p(r3['per_module_params'])} "
            f"({_p(r3['per_module_head_params'])}) | {_p(r3['total_params'])} | {_r(r3['ratio'])} "
            f"| {_r(r3['paper_ratio'])} | {_p(r5['total_params'])} | {_r(r5['ratio'])} | {_r(r5['paper_ratio'])} |"
        )
    lines += [
        "",
        "Each MTP module (mpo.mtp) = RMSNorm on the hidden state and on the shared embedding (2·d), the projection "
        "2d→d (2·d²), one decoder layer copied from the backbone's last layer, and its own final norm + LM head "
        "(d·V, an untied copy even when the backbone ties embeddings); the embedding table is shared and not "
        "counted again. Counts are exact (models built on the meta device from their architecture configs; "
        "no weights downloaded).",
    ]
    if cfg["mtp"]["share_head"]:
        lines[-1] += (" This config sets mtp.share_head: its own models' modules use the backbone's LM head (as in "
                      "DeepSeek-V3), so their head column counts the final norm only.")
    notes = []
    for model, byK in by_model.items():
        r3, r5 = byK[3], byK[5]
        if r3["paper_ratio"] is None or r3["share_head"]:  # the head-share argument is about per-module copies
            continue
        head_share = r3["per_module_head_params"] / r3["backbone_params"]
        notes.append(f"{model}: ours {_r(r3['ratio'])} / {_r(r5['ratio'])} vs paper {_r(r3['paper_ratio'])} / "
                     f"{_r(r5['paper_ratio'])} (the LM-head copy alone is {100 * head_share:.0f} % of the backbone "
                     f"per module)")
    if notes:
        lines += ["", "Ours vs the paper: " + "; ".join(notes) + ". A ratio in the paper below 1 + 2 × the head "
                  "share at K=3 means its modules did not each carry a full LM-head copy (or counted another model)."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], cfg: dict) -> str:
    return rows_csv(rows, COLUMNS, cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--models-root", default=None, help="results/<name>/models (prepared model directories)")
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-csv", required=True)
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = table_rows(cfg, args.models_root)
    md = to_markdown(rows, cfg)
    print(write_table(Rendered(md, csv_text(rows, cfg)), cfg, args.out_md, args.out_csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
