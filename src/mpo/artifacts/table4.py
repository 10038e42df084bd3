"""Table 4 of the paper: dataset statistics, ours next to the paper's.

    python -m mpo.artifacts.table4 --config config/smoke.yaml --data-root results/smoke/data \\
        --tokenizer DIR --out-md table4.md --out-csv table4.csv

Reads ``<data-root>/<dataset>/{train,test}.jsonl`` written by ``mpo.data.prepare`` for each dataset of the config
(gsm8k, math, code; our ``code`` dataset is the paper's "humaneval" row: train = MBPP or its procedural stand-in,
test = HumanEval). Columns: train and test counts, and the average sample length in tokens.

Length definition: ``avg_tokens`` = mean, over all train and test records of the dataset, of the number of
tokens of the record's ``question`` (the raw task text -- for HumanEval the signature + docstring -- without
prompt template, chat template or special tokens) under the given tokenizer (``AutoTokenizer.from_pretrained``).
The paper does not define its "average sample length"; its 80 / 200 / 130 are closest to question lengths.
``avg_train_tokens`` / ``avg_test_tokens``: the same mean per split; ``avg_solution_tokens`` (ours only): the
same mean over the train records' reference ``solution``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpo.artifacts.common import Rendered, rows_csv, write_table
from mpo.config import ConfigError, load_config
from mpo.data.prepare import DATASETS, PAPER_ROW
from mpo.reported import load_reported
from mpo.utils import read_jsonl

COLUMNS = ["dataset", "paper_row", "train_source", "test_source", "train", "paper_train", "test", "paper_test",
           "avg_tokens", "paper_avg_tokens", "avg_train_tokens", "avg_test_tokens", "avg_solution_tokens"]


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def table_rows(cfg: dict, data_root: str | Path, tokenizer) -> list[dict]:
    data_root = Path(data_root)
    paper = load_reported()["table4_datasets"]["rows"]
    rows = []
    for dataset in DATASETS:
        if dataset not in cfg["datasets"]:
            continue
        split_records = {}
        for split in ("train", "test"):
            path = data_root / dataset / f"{split}.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run `python -m mpo.data.prepare --dataset {dataset}` first")
            split_records[split] = list(read_jsonl(path))
        train, test = split_records["train"], split_records["test"]
        p_train, p_test, p_tokens = paper[PAPER_ROW[dataset]]
        q_tokens = {split: count_tokens(tokenizer, [r["question"] for r in recs]) for split, recs in split_records.items()}
        rows.append({
            "dataset": dataset, "paper_row": PAPER_ROW[dataset],
            "train_source": cfg["datasets"][dataset]["train"]["source"],
            "test_source": cfg["datasets"][dataset]["test"]["source"],
            "train": len(train), "paper_train": p_train, "test": len(test), "paper_test": p_test,
            "avg_tokens": _mean(q_tokens["train"] + q_tokens["test"]), "paper_avg_tokens": p_tokens,
            "avg_train_tokens": _mean(q_tokens["train"]), "avg_test_tokens": _mean(q_tokens["test"]),
            "avg_solution_tokens": _mean(count_tokens(tokenizer, [r["solution"] for r in train if r["solution"]])),
        })
    return rows


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.1f}" if isinstance(v, float) else str(v)


def to_markdown(rows: list[dict], cfg: dict, tokenizer_name: str) -> str:
    lines = [
        f"**Table 4: dataset statistics** — scale `{cfg['scale']}`, config `{cfg['name']}`; ours next to the paper's.",
        "",
        "Sources: " + "; ".join(f"{r['dataset']} (paper: {r['paper_row']}): train `{r['train_source']}`, "
                                 f"test `{r['test_source']}`" for r in rows) + ".",
        "",
        "| Dataset | Train | Train (paper) | Test | Test (paper) | Avg. tokens | Avg. tokens (paper) "
        "| Avg. tokens train / test | Avg. solution tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["dataset"] if r["dataset"] == r["paper_row"] else f"{r['dataset']} ({r['paper_row']})"
        cells = [_fmt(r[k]) for k in ("train", "paper_train", "test", "paper_test", "avg_tokens", "paper_avg_tokens")]
        cells += [f"{_fmt(r['avg_train_tokens'])} / {_fmt(r['avg_test_tokens'])}", _fmt(r["avg_solution_tokens"])]
        lines.append("| " + " | ".join([name] + cells) + " |")
    lines += [
        "",
        f"Avg. tokens: mean number of tokens of the task text (`question`: the problem statement; for HumanEval the "
        f"function signature and docstring), without prompt template, chat template or special tokens, over all "
        f"train and test samples (then per split), with the tokenizer `{tokenizer_name}`. "
        f"Avg. solution tokens: the same over the "
        f"train samples' reference solutions (ours only). The paper does not define its average sample length. "
        f"Our `code` dataset is the paper's HumanEval row (train: MBPP or its stand-in; test: HumanEval).",
    ]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], cfg: dict) -> str:
    return rows_csv(rows, COLUMNS, cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-root", required=True, help="results/<name>/data (one subdirectory per dataset)")
    ap.add_argument("--tokenizer", required=True, help="a Hugging Face model/tokenizer directory")
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-csv", required=True)
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = table_rows(cfg, args.data_root, tokenizer)
    md = to_markdown(rows, cfg, getattr(tokenizer, "name_or_path", None) or args.tokenizer)
    print(write_table(Rendered(md, csv_text(rows, cfg)), cfg, args.out_md, args.out_csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
