"""Evaluation (mpo.evaluate): the pass@k estimator, the grading path with known completions, and end to end on the
smoke model (one completions.jsonl row per problem x sample, a summary consistent with the rows, greedy determinism)."""

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mpo.config import ConfigError, load_config
from mpo.data import make_record
from mpo.evaluate import (eval_settings, evaluate, main, mean_pass_at_k, pass_at_k, resolve_engine_kind, select_program,
                          target_function, with_prompt_imports)

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "smoke.yaml"


# --------------------------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------------------------
def _brute_force(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (c correct) that contain a correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_known_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)


def test_pass_at_k_matches_brute_force_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_edge_cases_and_errors():
    assert pass_at_k(8, 0, 3) == 0.0  # nothing correct
    assert pass_at_k(8, 8, 3) == 1.0  # everything correct
    assert pass_at_k(8, 6, 3) == 1.0  # n - c < k: every 3-subset holds a correct sample
    # large n: the product form stays finite where C(n, k) would overflow a float
    big = pass_at_k(2000, 10, 1000)
    assert 0.99 < big <= 1.0 and big == pytest.approx(1 - math.comb(1990, 1000) / math.comb(2000, 1000))
    with pytest.raises(ValueError, match="k=4"):
        pass_at_k(3, 1, 4)  # n < k
    for bad in [(5, 6, 1), (5, -1, 1), (0, 0, 1), (5, 1, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)
    with pytest.raises(TypeError):
        pass_at_k(5, 2.5, 1)
    assert mean_pass_at_k(4, [0, 2, 4], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_pass_at_k(4, [], 1)


def test_eval_settings_checks_k_and_greedy_samples():
    cfg = load_config(SMOKE, overrides={"eval": {"n": 2, "k": [1, 3], "temperature": 1.0}})
    with pytest.raises(ConfigError, match="eval.k"):
        eval_settings(cfg)
    cfg = load_config(SMOKE, overrides={"eval": {"n": 4}})
    with pytest.raises(ConfigError, match="eval.n"):
        eval_settings(cfg)  # greedy with n > 1
    with pytest.raises(ConfigError, match="eval.bogus"):
        load_config(SMOKE, overrides={"eval": {"bogus": 1}})
    ev = eval_settings(load_config(SMOKE))
    assert ev["n"] == 1 and ev["temperature"] == 0 and ev["seed"] == load_config(SMOKE)["seed"]
    assert resolve_engine_kind("auto", "cpu") == "hf" and resolve_engine_kind("hf", "cuda") == "hf"
    with pytest.raises(ConfigError, match="eval.engine"):
        resolve_engine_kind("vllm", "cpu")


# --------------------------------------------------------------------------------------------------------------
# Test sets
# --------------------------------------------------------------------------------------------------------------
HE_SOLUTION = "def add(x: int, y: int) -> int:\n    return x + y\n"
HE_TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def _math_records():
    qs = [("What is 6 times 7?", "42"), ("What is half of 1?", "\\frac{1}{2}"), ("What is 10 minus 3?", "7"),
          ("What is 2 plus 2?", "4")]
    return [make_record(id=f"m{i}", source="test", split="test", kind="math", question=q, answer=a, family="llama")
            for i, (q, a) in enumerate(qs)]


def _code_records():
    he = make_record(id="he0", source="test", split="test", kind="code",
                     question='def add(x: int, y: int) -> int:\n    """Add two numbers."""\n', tests=HE_TESTS,
                     entry_point="add", test_style="check", solution=HE_SOLUTION, family="llama")
    mbpp = make_record(id="mb0", source="test", split="test", kind="code",
                       question="Write a function sq(x) squaring x.", tests="assert sq(3) == 9\nassert sq(-2) == 4",
                       test_style="assert", family="llama")
    he_wrong = make_record(id="he1", source="test", split="test", kind="code",
                           question='def sub(x: int, y: int) -> int:\n    """Subtract y from x."""\n',
                           tests="def check(candidate):\n    assert candidate(5, 3) == 2\n", entry_point="sub",
                           test_style="check", family="llama")
    return [he, mbpp, he_wrong]


def _write_sets(root: Path) -> Path:
    for name, records in (("gsm8k", _math_records()), ("code", _code_records())):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tokenizer(smoke_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smoke_model_dir)


# --------------------------------------------------------------------------------------------------------------
# Grading path: a fake engine returns known completions
# --------------------------------------------------------------------------------------------------------------
class FakeEngine:
    """Answers each prompt with fixed texts, chosen by a key found in the prompt (token ids, EOS appended)."""

    name = "fake"

    def __init__(self, tokenizer, answers: dict[str, list[str]]):
        self.tok, self.answers, self.calls = tokenizer, answers, []

    def generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p=1.0, seed=None):
        self.calls.append(dict(n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed))
        out = []
        for ids in prompt_ids:
            text = self.tok.decode(ids)
            key = next(k for k in self.answers if k in text)
            texts = self.answers[key]
            assert len(texts) == n
            out.append([self.tok(t, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id] for t in texts])
        return out


MATH_ANSWERS = {  # per problem: n = 2 samples
    "6 times 7": ["6 * 7 = 42, so the answer is \\boxed{42}.", "I think it is \\boxed{41}."],  # c = 1
    "half of 1": ["Half of one is \\boxed{0.5}", "\\boxed{\\frac{1}{2}}"],  # c = 2 (math-verify: 0.5 == 1/2)
    "10 minus 3": ["10 - 3 = 7", "The answer is 7."],  # c = 0: right number, but not boxed
    "2 plus 2": ["\\boxed{5}", "\\boxed{22}"],  # c = 0
}


def test_known_math_completions_give_exact_pass_at_k(tmp_path, smoke_model_dir, tokenizer):
    root = _write_sets(tmp_path / "data")
    cfg = load_config(SMOKE, overrides={"eval": {"n": 2, "k": [1, 2], "temperature": 1.0, "batch_size": 4}})
    engine = FakeEngine(tokenizer, MATH_ANSWERS)
    out = tmp_path / "eval_math"
    s = evaluate(cfg, smoke_model_dir, "gsm8k", root, out, model="tiny-llama", variant="zero_shot", engine=engine,
                 tokenizer=tokenizer, log=lambda *_: None)
    assert s["pass@1"] == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert s["pass@k"]["1"] == pytest.approx(s["pass@1"])
    assert s["pass@k"]["2"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert s["n_problems"] == 4 and s["n_samples"] == 2 and s["n_completions"] == 8 and s["n_solved"] == 2
    assert s["variant"] == "zero_shot" and s["scale"] == "smoke" and s["model_dir"] == str(smoke_model_dir)
    # batch_size 4 sequences with n = 2 -> 2 prompts per engine call; seeds never overlap (seed + b * 2 * n)
    assert len(engine.calls) == 2 and [c["seed"] for c in engine.calls] == [1234, 1238]
    mnt = cfg["eval"]["max_new_tokens"]["math"]
    assert all(c["temperature"] == 1.0 and c["max_new_tokens"] == mnt for c in engine.calls)
    rows = _rows(out)
    assert [(r["id"], r["sample"]) for r in rows] == [(f"m{i}", j) for i in range(4) for j in range(2)]
    by = {(r["id"], r["sample"]): r for r in rows}
    assert by[("m0", 0)]["grade"] == 1.0 and by[("m0", 0)]["extracted"] == "42" and by[("m0", 1)]["grade"] == 0.0
    assert by[("m1", 0)]["grade"] == 1.0 and by[("m1", 1)]["extracted"] == "\\frac{1}{2}"
    assert by[("m2", 1)]["extracted"] is None and by[("m2", 1)]["grade"] == 0.0
    assert by[("m0", 0)]["gold"] == "42" and by[("m0", 0)]["finish"] == "stop"
    assert "6 times 7" in by[("m0", 0)]["prompt"] and "\\boxed{}" in by[("m0", 0)]["prompt"]
    assert by[("m0", 0)]["completion"] == MATH_ANSWERS["6 times 7"][0]
    assert sum(r["response_tokens"] for r in rows) == s["generated_tokens"]
    assert (out / "run_info.json").is_file() and (out / "resolved_config.yaml").is_file()

    # require_boxed: false lets math-verify read unboxed final answers ("The answer is 7.")
    cfg = load_config(SMOKE, overrides={"eval": {"n": 2, "k": [1, 2], "temperature": 1.0, "require_boxed": False}})
    s2 = evaluate(cfg, smoke_model_dir, "gsm8k", root, tmp_path / "lenient", engine=FakeEngine(tokenizer, MATH_ANSWERS),
                  tokenizer=tokenizer, log=lambda *_: None)
    assert s2["pass@1"] > s["pass@1"]


def test_known_code_completions_run_the_tests(tmp_path, smoke_model_dir, tokenizer):
    root = _write_sets(tmp_path / "data")
    answers = {
        # HumanEval check(candidate): passes, although a usage-example block comes last
        "def add(": [f"Here you go:\n```python\n{HE_SOLUTION}```\nExample:\n```python\nprint(add(1, 2))\n```"],
        "sq(x)": ["```python\ndef sq(x):\n    return x + x\n```"],  # assert tests: sq(3) == 9 fails
        "def sub(": ["```python\ndef sub(x: int, y: int) -> int:\n    return y - x\n```"],  # check(sub) fails
    }
    cfg = load_config(SMOKE, overrides={"eval": {"limit": 3}})
    out = tmp_path / "eval_code"
    s = evaluate(cfg, smoke_model_dir, "code", root, out, engine=FakeEngine(tokenizer, answers), tokenizer=tokenizer,
                 log=lambda *_: None)
    assert s["pass@1"] == pytest.approx(1 / 3) and s["n_problems"] == 3 and s["kind"] == "code"
    rows = {r["id"]: r for r in _rows(out)}
    assert rows["he0"]["grade"] == 1.0 and rows["he0"]["extracted"] == HE_SOLUTION
    assert rows["mb0"]["grade"] == 0.0 and "return x + x" in rows["mb0"]["extracted"]
    assert rows["he1"]["grade"] == 0.0  # the hidden check(candidate) tests really run
    assert "assert sq(3) == 9" in rows["mb0"]["prompt"]  # assert tests are shown; HumanEval check tests are not
    assert "check(candidate)" not in rows["he0"]["prompt"]
    # the fixed program passes the assert tests too: the grade follows the code, not the record
    answers["sq(x)"] = ["```python\ndef sq(x):\n    return x * x\n```"]
    s = evaluate(cfg, smoke_model_dir, "code", root, out, engine=FakeEngine(tokenizer, answers), tokenizer=tokenizer,
                 log=lambda *_: None)
    assert s["pass@1"] == pytest.approx(2 / 3)


def test_program_selection_and_prompt_imports():
    text = ("```python\ndef helper():\n    pass\n```\n```python\ndef f(xs: List[int]):\n    return 1\n```\n"
            "Usage:\n```python\nprint(f([1]))\n```\nand\n```\nmore text")
    assert select_program(text, "f").startswith("def f(")
    assert select_program(text, "g") == "print(f([1]))\n"  # nothing defines g: the last python block (extract_code)
    assert select_program(text, None) == "print(f([1]))\n"
    assert target_function({"entry_point": None, "tests": "assert sq(3) == 9"}) == "sq"
    assert target_function({"entry_point": None, "tests": "assert not (is_odd(2))"}) == "is_odd"
    assert target_function({"entry_point": "add", "tests": "def check(c): pass"}) == "add"
    q = "from typing import List\nimport math\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"doc\"\"\"\n"
    prog = "import math\ndef f(xs: List[int]) -> int:\n    return 1\n"
    assert with_prompt_imports(prog, q) == "from typing import List\n" + prog
    assert with_prompt_imports("from typing import List\n" + prog, q) == "from typing import List\n" + prog


# --------------------------------------------------------------------------------------------------------------
# End to end on the smoke model (mpo.rollout HF engine)
# --------------------------------------------------------------------------------------------------------------
def _check_consistent(out: Path, n_problems: int, n: int) -> dict:
    s = json.loads((out / "summary.json").read_text())
    rows = _rows(out)
    assert len(rows) == n_problems * n == s["n_completions"]
    assert s["n_problems"] == n_problems and s["n_samples"] == n
    assert all(r["grade"] in (0.0, 1.0) and r["finish"] in ("stop", "length") for r in rows)
    per_problem: dict[str, list[float]] = {}
    for r in rows:
        per_problem.setdefault(r["id"], []).append(r["grade"])
    assert all(len(g) == n for g in per_problem.values())
    assert s["pass@1"] == pytest.approx(sum(r["grade"] for r in rows) / len(rows))
    assert s["mean_response_tokens"] == pytest.approx(sum(r["response_tokens"] for r in rows) / len(rows))
    assert s["generated_tokens"] == sum(r["response_tokens"] for r in rows) and s["tokens_per_second"] > 0
    assert s["wall_seconds"] >= s["generation_seconds"] > 0
    return s


def test_end_to_end_smoke_model_greedy_is_deterministic(tmp_path, smoke_model_dir):
    root = _write_sets(tmp_path / "data")
    cfg_path = tmp_path / "smoke_eval.yaml"
    import yaml

    raw = yaml.safe_load(SMOKE.read_text())
    raw["eval"] = {"engine": "hf", "max_new_tokens": {"math": 12, "code": 16}, "batch_size": 3, "limit": 3}
    cfg_path.write_text(yaml.safe_dump(raw))
    outs = []
    for ds in ("gsm8k", "code"):
        for run in (1, 2):
            out = tmp_path / f"{ds}_{run}"
            assert main(["--config", str(cfg_path), "--model-dir", str(smoke_model_dir), "--dataset", ds,
                         "--data-root", str(root), "--out", str(out), "--model", "tiny-llama", "--variant",
                         "zero_shot", "--threads", "1"]) == 0
            s = _check_consistent(out, n_problems=3, n=1)
            assert s["engine"] == "hf" and s["prompt_family"] == "llama" and s["sampling"]["max_new_tokens"] <= 16
            outs.append(out)
    for a, b in (outs[0:2], outs[2:4]):
        ra, rb = _rows(a), _rows(b)
        assert [r["completion"] for r in ra] == [r["completion"] for r in rb]
        assert [r["grade"] for r in ra] == [r["grade"] for r in rb]
    assert any(r["completion"] for r in _rows(outs[0]))  # the model really generated something


def test_end_to_end_sampling_n_and_pass_at_k(tmp_path, smoke_model_dir):
    root = _write_sets(tmp_path / "data")
    cfg = load_config(SMOKE, overrides={"eval": {"engine": "hf", "n": 3, "k": [1, 3], "temperature": 1.0,
                                                 "max_new_tokens": {"math": 8}, "limit": 2, "batch_size": 6}})
    out = tmp_path / "sampled"
    s = evaluate(cfg, smoke_model_dir, "gsm8k", root, out, model="tiny-llama", variant="mpo", threads=1,
                 log=lambda *_: None)
    _check_consistent(out, n_problems=2, n=3)
    rows = _rows(out)
    correct = [sum(r["grade"] for r in rows if r["id"] == i) for i in ("m0", "m1")]
    assert s["pass@k"]["3"] == pytest.approx(sum(pass_at_k(3, int(c), 3) for c in correct) / 2)
    assert len({r["completion"] for r in rows if r["id"] == "m0"}) > 1  # sampled, not greedy copies


def test_cli_reports_missing_test_set(tmp_path, smoke_model_dir):
    proc = subprocess.run([sys.executable, "-m", "mpo.evaluate", "--config", str(SMOKE), "--model-dir",
                           str(smoke_model_dir), "--dataset", "gsm8k", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "test set not found" in proc.stderr


@pytest.mark.slow
def test_snakemake_eval_dag():
    """eval_zero_shot = every model x dataset on the base model; a trained variant's evaluation waits for its run."""
    if "workflow/rules/eval.smk" not in (REPO / "Snakefile").read_text():
        pytest.skip("workflow/rules/eval.smk is not included in the Snakefile yet")
    from conftest import run, snakemake_cmd

    out = run(snakemake_cmd("-n", "-p", "eval_zero_shot", "--configfile", "config/smoke.yaml")).stdout
    for ds in ("gsm8k", "math", "code"):
        assert f"--model-dir results/smoke/models/tiny-llama/base --dataset {ds}" in out
    assert "--variant zero_shot" in out and "rule train" not in out
    target = "results/smoke/eval/tiny-llama/code/ppo/summary.json"
    out = run(snakemake_cmd("-n", "-p", target, "--configfile", "config/smoke.yaml")).stdout
    assert "rule train:" in out and "--model-dir results/smoke/runs/tiny-llama/code/ppo/policy --dataset code" in out
