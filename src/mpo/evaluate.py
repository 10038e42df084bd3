"""Evaluation: pass@1 (and pass@k) of a model directory on one test set, every completion saved with its grade.

    python -m mpo.evaluate --config CONFIG --model-dir DIR --dataset gsm8k --data-root results/NAME/data \\
        --out results/NAME/eval/MODEL/gsm8k/VARIANT [--model MODEL] [--variant VARIANT] [--family llama|qwen2]
        [--threads N]

What it does, for the first ``eval.limit`` problems (null: all) of ``<data-root>/<dataset>/test.jsonl``:

1. **Prompts.** Each record's chat messages are rebuilt with :func:`mpo.data.prompt_for_record` for the prompt
   family of the evaluated model (``--family``, else ``models.<--model>.family``, else the first model's family:
   the one ``test.jsonl`` was written for, so the rebuilt prompt is then identical to ``record["prompt"]``), and
   rendered with the model's own chat template (``add_generation_prompt=True``).
2. **Generation** with :func:`mpo.rollout.make_engine` (``eval.engine``: vLLM on CUDA, Hugging Face ``generate``
   elsewhere): ``eval.n`` samples per problem, ``eval.temperature`` (0 = greedy, then n must be 1), ``eval.top_p``,
   ``eval.max_new_tokens.<kind>``; ``eval.batch_size`` sequences per engine call, prompts sorted by length so that a
   batch needs little padding (results are restored to file order).
3. **Grading.** Math: with ``eval.require_boxed`` (the default) the last ``\\boxed{...}`` of the completion is
   checked against the gold answer by math-verify in :class:`mpo.graders.math.MathGrader` (per-answer timeout), no
   box = wrong; with ``require_boxed: false`` math-verify reads the whole completion and takes its final answer,
   boxed or not (the criterion of the training reward, mpo.train.rewards).
   Code: the last ```python block that defines the tested function (else :func:`mpo.graders.code.extract_code`, the
   last python block; small models often end with a usage-example block), for HumanEval with the prompt's import
   lines it lacks prepended (the prompt is the solution's prefix in HumanEval), runs against the record's tests in
   the sandboxed :class:`mpo.graders.code.CodeGrader` -- HumanEval ``check(candidate)`` tests with the entry
   point, MBPP-style ``assert`` lines as they are. ``extracted`` in completions.jsonl is the program that ran.
4. **Scores.** Per problem, c of n samples are correct; pass@1 = mean(c / n) and pass@k = mean of the unbiased
   estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021) for every k in ``eval.k``.

Outputs in ``--out``: ``completions.jsonl`` (one row per problem x sample: id, sample, prompt text, completion,
extracted answer/code, gold, grade, response tokens, finish reason: any number in the summary can be audited problem
by problem), ``summary.json`` (pass@1 with its standard error over problems, pass@k, problem/sample counts, mean
response length, fraction truncated at max_new_tokens, ``answer_fraction`` (completions with a boxed answer / with
code), generation tokens/s, timings, model dir, variant, scale, settings) and provenance (``resolved_config.yaml``,
``run_info.json``).

The backbone alone is evaluated: a trained policy directory is a plain Hugging Face model (MTP modules dropped).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from mpo.config import ConfigError, load_config
from mpo.runinfo import write_run_info
from mpo.utils import read_jsonl, resolve_device, resolve_dtype, seed_everything, set_threads, write_json, write_jsonl

__all__ = ["pass_at_k", "mean_pass_at_k", "eval_settings", "load_problems", "render_prompts", "grade_completions",
           "open_engine", "evaluate", "main"]


# --------------------------------------------------------------------------- #
# pass@k
# --------------------------------------------------------------------------- #
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct out of n samples: 1 - C(n-c, k) / C(n, k).

    Computed in the numerically stable product form of Chen et al. (2021),
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, which never forms the (huge) binomial coefficients.
    """
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k needs integers, got n={n!r}, c={c!r}, k={k!r}")
    if n < 1 or k < 1:
        raise ValueError(f"pass_at_k needs n >= 1 and k >= 1 (n={n}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least k={k} samples per problem, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"number correct c={c} must be in [0, n={n}]")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(n: int, correct: Sequence[int], k: int) -> float:
    """pass@k averaged over problems (``correct[i]``: correct samples of problem i, n samples each)."""
    if not correct:
        raise ValueError("no problems to score")
    return sum(pass_at_k(n, int(c), k) for c in correct) / len(correct)


# --------------------------------------------------------------------------- #
# Settings, data, prompts
# --------------------------------------------------------------------------- #
def eval_settings(cfg: dict) -> dict:
    """The validated ``eval`` section with run-time checks (ConfigError naming the key)."""
    ev = dict(cfg["eval"])
    n, ks = ev["n"], ev["k"]
    bad = [k for k in ks if k > n]
    if bad:
        raise ConfigError(f"config key 'eval.k': pass@k needs k <= eval.n = {n}, got {bad}")
    if ev["temperature"] == 0 and n > 1:
        raise ConfigError(f"config key 'eval.n' is {n} but 'eval.temperature' is 0 (greedy): the samples would be "
                          f"identical; use n = 1 or a temperature > 0")
    ev["k"] = sorted(set(ks))
    if ev["seed"] is None:
        ev["seed"] = cfg["seed"]
    return ev


def resolve_engine_kind(name: str, device: str) -> str:
    """``auto``: vLLM on CUDA when it is installed (the GPU environment), else Hugging Face generate."""
    if name == "auto":
        import importlib.util

        return "vllm" if device == "cuda" and importlib.util.find_spec("vllm") is not None else "hf"
    if name == "vllm" and device != "cuda":
        raise ConfigError("config key 'eval.engine' is 'vllm' but the device is not cuda (vLLM needs a GPU)")
    return name


def load_problems(data_root: str | Path, dataset: str, limit: int | None = None) -> list[dict]:
    """The first `limit` records (null: all) of ``<data_root>/<dataset>/test.jsonl``."""
    path = Path(data_root) / dataset / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"test set not found: {path} (run rule prepare_data for {dataset!r})")
    records = list(read_jsonl(path))
    if limit is not None:
        records = records[:limit]
    if not records:
        raise ValueError(f"test set {path} is empty")
    kinds = {r["kind"] for r in records}
    if len(kinds) != 1:
        raise ValueError(f"test set {path} mixes task kinds {sorted(kinds)}")
    return records


def resolve_family(cfg: dict, family: str | None, model: str | None) -> str:
    if family:
        return family
    if model:
        if model not in cfg["models"]:
            raise ConfigError(f"--model {model!r} is not in the config's models ({sorted(cfg['models'])})")
        return cfg["models"][model]["family"]
    return next(iter(cfg["models"].values()))["family"]


def render_prompts(records: Sequence[dict], tokenizer, family: str) -> tuple[list[str], list[list[int]]]:
    """Prompt text (the model's chat template applied to the family's messages) and its token ids."""
    from mpo.data import prompt_for_record

    texts, ids = [], []
    for rec in records:
        text = tokenizer.apply_chat_template(prompt_for_record(rec, family), add_generation_prompt=True,
                                             tokenize=False)
        texts.append(text)
        ids.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return texts, ids


def stop_token_ids(tokenizer, model_dir: str | Path | None = None) -> set[int]:
    """EOS ids of the tokenizer and of the model's generation_config (to tell 'stop' from 'length')."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if model_dir is not None:
        try:
            from transformers import GenerationConfig

            eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
            ids.update([eos] if isinstance(eos, int) else list(eos or []))
        except (OSError, ValueError):
            pass
    return ids


# --------------------------------------------------------------------------- #
# Generation
# --------------------------------------------------------------------------- #
def open_engine(kind: str, model_dir: str | Path, tokenizer, *, device: str, dtype, eos_ids: Sequence[int],
                engine_kwargs: dict | None = None):
    """A :func:`mpo.rollout.make_engine` engine for `model_dir`.

    hf: the model is loaded here (``from_pretrained``, eval mode); vllm: the engine loads `model_dir` itself
    (``gpu_memory_utilization`` defaults to 0.85 here: evaluation has the GPU to itself).
    """
    from mpo.rollout import make_engine

    kw = dict(engine_kwargs or {})
    kw.setdefault("eos_ids", list(eos_ids))
    if kind == "hf":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        model.requires_grad_(False)  # generation only (the engine also runs under no_grad)
        return make_engine("hf", model, tokenizer, device=device, dtype=dtype, **kw)
    kw.setdefault("model_dir", str(model_dir))
    kw.setdefault("gpu_memory_utilization", 0.85)
    return make_engine(kind, None, tokenizer, device=device, dtype=dtype, **kw)


def generate_all(engine, prompt_ids: Sequence[list[int]], *, n: int, max_new_tokens: int, temperature: float,
                 top_p: float, seed: int, batch_size: int, log=print) -> tuple[list[list[list[int]]], float]:
    """n responses (token ids) per prompt, in prompt order, and the seconds spent generating.

    Prompts are processed in order of token length (less padding), ``max(1, batch_size // n)`` per engine call;
    the call of batch b gets seed ``seed + b * per_call * n``: vLLM seeds prompt i of a call with ``seed + i * n``
    (sample j: ``+ j``), so no two samples of a run share a seed.
    """
    order = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]), i))
    per_call = max(1, batch_size // n)
    out: list[Any] = [None] * len(prompt_ids)
    n_batches = math.ceil(len(order) / per_call)
    seconds, tokens = 0.0, 0
    for b in range(n_batches):
        idx = order[b * per_call:(b + 1) * per_call]
        t0 = time.perf_counter()
        responses = engine.generate([list(prompt_ids[i]) for i in idx], n=n, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed + b * per_call * n)
        dt = time.perf_counter() - t0
        if len(responses) != len(idx) or any(len(r) != n for r in responses):
            raise RuntimeError(f"engine returned {[len(r) for r in responses]} responses "
                               f"for {len(idx)} prompts x n={n}")
        seconds += dt
        batch_tokens = sum(len(s) for r in responses for s in r)
        tokens += batch_tokens
        for i, r in zip(idx, responses):
            out[i] = [list(map(int, s)) for s in r]
        log(f"[generate] batch {b + 1}/{n_batches}: {len(idx)} prompts x {n}, {batch_tokens} tokens, {dt:.1f}s "
            f"({batch_tokens / max(dt, 1e-9):.1f} tok/s; total {tokens / max(seconds, 1e-9):.1f} tok/s)")
    return out, seconds


# --------------------------------------------------------------------------- #
# Grading
# --------------------------------------------------------------------------- #
_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*$", re.MULTILINE)  # as mpo.graders.code
_ASSERT_CALL_RE = re.compile(r"^\s*assert\s+(?:not\s+)?[(\s]*([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def target_function(record: dict) -> str | None:
    """The function a code task's tests call: HumanEval's entry point, else the first call in the assert lines."""
    if record.get("entry_point"):
        return record["entry_point"]
    m = _ASSERT_CALL_RE.search(record.get("tests") or "")
    return m.group(1) if m else None


def select_program(completion: str, function: str | None = None) -> str:
    """The program to grade: the last ```python (or untagged) block that defines `function`, else
    :func:`mpo.graders.code.extract_code` (the last python block).

    Small models often close with a usage example (```python print(f(3))```) after the function; the last block alone
    would then fail every test although the answer holds a solution.
    """
    from mpo.graders.code import extract_code

    if function:
        fences = list(_FENCE_RE.finditer(completion))
        defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(function)}\s*\(", re.MULTILINE)
        for a in reversed(range(0, len(fences), 2)):
            tag = fences[a].group(1).lower()
            end = fences[a + 1].start() if a + 1 < len(fences) else len(completion)
            body = completion[fences[a].end() + 1:end]
            if tag in ("python", "python3", "py", "py3", "") and defines.search(body):
                return body.rstrip() + "\n"
    return extract_code(completion)


def with_prompt_imports(program: str, question: str) -> str:
    """Prepend the import lines of a HumanEval prompt (``from typing import List``...) that the program lacks:
    the prompt is the prefix of the solution in HumanEval, and a rewritten function often drops them."""
    have = set(program.splitlines())
    imports = [line for line in question.splitlines()
               if re.match(r"^(import|from)\s+\w", line) and line not in have]
    return "\n".join(imports) + "\n" + program if imports else program


def grade_completions(records: Sequence[dict], completions: Sequence[str], *, workers: int = 1,
                      require_boxed: bool = True, math_timeout: float = 5.0,
                      code_timeout: float = 10.0) -> tuple[list[str | None], list[float]]:
    """Extracted answer/code and grade (1.0 / 0.0) of ``completions[i]`` for task ``records[i]``.

    Math: the last ``\\boxed{}`` content (``require_boxed``: graded as ``\\boxed{answer}``, no box is wrong;
    otherwise math-verify reads the whole completion) vs ``record["answer"]`` in a MathGrader pool.
    Code: :func:`select_program` (the last python block defining the tested function, else the last python block),
    for HumanEval with the prompt's missing imports prepended (:func:`with_prompt_imports`), run against
    ``record["tests"]`` in the CodeGrader sandbox, with ``check(entry_point)`` for test_style "check"."""
    if len(records) != len(completions):
        raise ValueError(f"{len(records)} records but {len(completions)} completions")
    unknown = {r["kind"] for r in records} - {"math", "code"}
    if unknown:
        raise ValueError(f"cannot grade task kind(s) {sorted(unknown)}")
    extracted: list[str | None] = [None] * len(records)
    grades = [0.0] * len(records)
    math_idx = [i for i, r in enumerate(records) if r["kind"] == "math"]
    code_idx = [i for i, r in enumerate(records) if r["kind"] == "code"]
    if math_idx:
        from mpo.graders.math import MathGrader, extract_boxed

        todo, texts, golds = [], [], []
        for i in math_idx:
            boxed = extract_boxed(completions[i])
            extracted[i] = boxed
            if require_boxed:
                if boxed is None or not boxed.strip():
                    continue
                texts.append("\\boxed{" + boxed + "}")
            else:
                texts.append(completions[i])
            todo.append(i)
            golds.append(str(records[i]["answer"]))
        if todo:
            with MathGrader(num_workers=max(1, min(workers, len(todo))), timeout=math_timeout) as grader:
                for i, g in zip(todo, grader.grade_batch(texts, golds)):
                    grades[i] = float(g)
    if code_idx:
        from mpo.graders.code import CodeGrader

        programs = []
        for i in code_idx:
            rec = records[i]
            program = select_program(completions[i], target_function(rec))
            if rec.get("test_style") == "check":
                program = with_prompt_imports(program, rec["question"])
            programs.append(program)
        for i, p in zip(code_idx, programs):
            extracted[i] = p
        tests = [records[i]["tests"] for i in code_idx]
        entry_points = [records[i]["entry_point"] if records[i].get("test_style") == "check" else None
                        for i in code_idx]
        with CodeGrader(max_workers=max(1, workers), timeout=code_timeout) as grader:
            for i, g in zip(code_idx, grader.grade_batch(programs, tests, entry_points)):
                grades[i] = float(g)
    return extracted, grades


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #
def _completion_rows(records, prompt_texts, flat_ids, flat_text, extracted, grades, stops, *, n: int, dataset: str,
                     kind: str) -> tuple[list[dict], list[int]]:
    """completions.jsonl rows (n samples per problem, in order) and the number of correct samples per problem."""
    rows, correct = [], []
    pos = 0
    for p, rec in enumerate(records):
        c = 0
        for j in range(n):
            ids = flat_ids[pos]
            finish = "stop" if ids and ids[-1] in stops else "length"
            rows.append({"id": rec["id"], "sample": j, "dataset": dataset, "kind": kind, "prompt": prompt_texts[p],
                         "completion": flat_text[pos], "extracted": extracted[pos],
                         "gold": rec.get("answer") if kind == "math" else None, "grade": grades[pos],
                         "response_tokens": len(ids), "finish": finish})
            c += int(grades[pos] >= 1.0)
            pos += 1
        correct.append(c)
    return rows, correct


def _accuracy(correct: list[int], n: int, ks) -> dict:
    """pass@1 (mean over problems of correct/n) with its standard error over problems, pass@k, problems solved."""
    per_problem = [c / n for c in correct]
    pass1 = sum(per_problem) / len(per_problem)
    stderr = (math.sqrt(sum((x - pass1) ** 2 for x in per_problem) / (len(per_problem) - 1) / len(per_problem))
              if len(per_problem) > 1 else None)
    return {"pass@1": pass1, "pass@1_stderr": stderr, "pass@k": {str(k): mean_pass_at_k(n, correct, k) for k in ks},
            "n_solved": sum(c > 0 for c in correct)}


def evaluate(cfg: dict, model_dir: str | Path, dataset: str, data_root: str | Path, out: str | Path, *,
             family: str | None = None, model: str | None = None, variant: str | None = None, threads: int = 1,
             engine=None, tokenizer=None, log=print) -> dict:
    """Evaluate `model_dir` on `dataset`'s test set; writes completions.jsonl + summary.json into `out`.

    `engine` / `tokenizer` may be injected (tests); by default the tokenizer is loaded from `model_dir` and the
    engine is made by :func:`open_engine` from ``eval.engine``.
    """
    t_start = time.perf_counter()
    ev = eval_settings(cfg)
    family = resolve_family(cfg, family, model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_problems(data_root, dataset, ev["limit"])
    kind = records[0]["kind"]
    max_new_tokens = ev["max_new_tokens"][kind]
    seed_everything(ev["seed"])

    device = resolve_device(cfg["device"])
    dtype = resolve_dtype(cfg["dtype"], device)
    engine_kind = (resolve_engine_kind(ev["engine"], device) if engine is None
                   else getattr(engine, "name", type(engine).__name__))
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt_texts, prompt_ids = render_prompts(records, tokenizer, family)
    stops = stop_token_ids(tokenizer, model_dir)

    t0 = time.perf_counter()
    if engine is None:
        engine = open_engine(engine_kind, model_dir, tokenizer, device=device, dtype=dtype, eos_ids=sorted(stops),
                             engine_kwargs=ev["engine_kwargs"])
    load_seconds = time.perf_counter() - t0
    log(f"[evaluate] {dataset} ({kind}): {len(records)} problems x n={ev['n']}, engine={engine_kind}, "
        f"device={device}, family={family}, max_new_tokens={max_new_tokens}, temperature={ev['temperature']}")
    responses, gen_seconds = generate_all(engine, prompt_ids, n=ev["n"], max_new_tokens=max_new_tokens,
                                          temperature=ev["temperature"], top_p=ev["top_p"], seed=ev["seed"],
                                          batch_size=ev["batch_size"], log=log)

    flat_records, flat_text, flat_ids = [], [], []
    for rec, samples in zip(records, responses):
        for ids in samples:
            flat_records.append(rec)
            flat_ids.append(ids)
            flat_text.append(tokenizer.decode(ids, skip_special_tokens=True))
    t0 = time.perf_counter()
    workers = ev["grader_workers"] or max(1, threads)
    extracted, grades = grade_completions(flat_records, flat_text, workers=workers,
                                          require_boxed=ev["require_boxed"], math_timeout=ev["math_timeout"],
                                          code_timeout=ev["code_timeout"])
    grade_seconds = time.perf_counter() - t0

    rows, correct = _completion_rows(records, prompt_texts, flat_ids, flat_text, extracted, grades, stops,
                                     n=ev["n"], dataset=dataset, kind=kind)
    write_jsonl(out / "completions.jsonl", rows)

    n = ev["n"]
    lengths = [r["response_tokens"] for r in rows]
    gen_tokens = sum(lengths)
    summary = {
        "dataset": dataset, "kind": kind, "model": model, "variant": variant, "model_dir": str(model_dir),
        "config_name": cfg["name"], "scale": cfg["scale"], **_accuracy(correct, n, ev["k"]),
        "n_problems": len(records), "n_samples": n, "n_completions": len(rows),
        "mean_response_tokens": gen_tokens / len(rows), "max_response_tokens": max(lengths),
        "truncated_fraction": sum(r["finish"] == "length" for r in rows) / len(rows),
        "answer_fraction": sum(r["extracted"] is not None and r["extracted"].strip() != "" for r in rows) / len(rows),
        "generated_tokens": gen_tokens, "generation_seconds": round(gen_seconds, 3),
        "tokens_per_second": gen_tokens / gen_seconds if gen_seconds > 0 else None,
        "grading_seconds": round(grade_seconds, 3), "model_load_seconds": round(load_seconds, 3),
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "engine": engine_kind, "device": device, "dtype": str(dtype).removeprefix("torch."), "threads": threads,
        "prompt_family": family,
        "sampling": {"n": n, "temperature": ev["temperature"], "top_p": ev["top_p"],
                     "max_new_tokens": max_new_tokens, "seed": ev["seed"], "batch_size": ev["batch_size"]},
        "grading": ({"method": "math-verify", "require_boxed": ev["require_boxed"], "timeout": ev["math_timeout"]}
                    if kind == "math" else {"method": "sandboxed unit tests", "timeout": ev["code_timeout"]}),
        "limit": ev["limit"],
    }
    write_json(out / "summary.json", summary)
    write_run_info(out, cfg, dataset=dataset, model_dir=str(model_dir), variant=variant, model=model)
    log(f"[evaluate] {dataset}: pass@1 = {summary['pass@1']:.4f} ({sum(correct)}/{len(rows)} correct samples), "
        f"mean response {summary['mean_response_tokens']:.0f} tokens, {summary['tokens_per_second'] or 0:.1f} tok/s, "
        f"wall {summary['wall_seconds']:.0f}s -> {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--model-dir", required=True, help="a plain Hugging Face model directory (base or policy)")
    ap.add_argument("--dataset", required=True, help="dataset key: gsm8k | math | code")
    ap.add_argument("--data-root", required=True, help="directory holding <dataset>/test.jsonl")
    ap.add_argument("--out", required=True, help="output directory (summary.json, completions.jsonl)")
    ap.add_argument("--model", default=None, help="config model key (prompt family, summary label)")
    ap.add_argument("--variant", default=None, help="summary label, e.g. zero_shot, mpo")
    ap.add_argument("--family", default=None, choices=["llama", "qwen2"],
                    help="prompt family (default: models.<--model>.family, else the first model's)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    try:
        cfg = load_config(args.config)
        evaluate(cfg, args.model_dir, args.dataset, args.data_root, args.out, family=args.family, model=args.model,
                 variant=args.variant, threads=args.threads)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
