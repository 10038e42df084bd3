"""CLI: train one variant of one model on one dataset.

    python -m mpo.train --config CONFIG --model NAME --dataset DS --variant VARIANT --base DIR [--mtp DIR] \\
        --data-root DIR --out DIR [--threads N]

Writes into --out: ``metrics.jsonl`` (one line per step), ``summary.json``, ``policy/`` (the trained backbone, a
plain Hugging Face directory with the tokenizer), ``mtp/`` (MPO: the RL-updated modules), ``checkpoints/`` (while
running; a rerun of the same command resumes from the last one) and provenance (``run_info.json``,
``resolved_config.yaml``). Multi-GPU / multi-node: launch the same command with ``accelerate launch --config_file
config/accelerate/<ddp|fsdp|deepspeed_zero2>.yaml -m mpo.train ...``. Exit status 2 on a diverged run (NaN / inf).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpo.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--base", required=True, help="the model's Hugging Face directory (results/<name>/models/<model>/base)")
    ap.add_argument("--mtp", default=None, help="warmed-up MTP modules (MPO with K > 1): results/<name>/models/<model>/mtp_k<K>")
    ap.add_argument("--data-root", required=True, help="results/<name>/data (holds <dataset>/train.jsonl)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    from mpo.config import load_config
    from mpo.runinfo import write_run_info
    from mpo.train.trainer import TrainingDivergedError, train
    from mpo.train.variants import resolve_variant
    from mpo.utils import set_threads, tune_malloc

    cfg = load_config(args.config)
    if args.threads:
        set_threads(args.threads)
    else:
        tune_malloc()
    spec = resolve_variant(cfg, args.variant)
    if int(os.environ.get("RANK", "0")) == 0:
        write_run_info(args.out, cfg, variant=args.variant, spec=spec, model=args.model, dataset=args.dataset,
                       base=args.base, mtp=args.mtp)
    try:
        summary = train(cfg, model=args.model, dataset=args.dataset, variant=args.variant, base=args.base,
                        mtp=args.mtp, data_root=args.data_root, out=args.out)
    except TrainingDivergedError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    print(f"done: {summary['steps']} steps, final reward {summary['final'].get('reward')}, "
          f"median {summary['median_time_step']} s/step -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
