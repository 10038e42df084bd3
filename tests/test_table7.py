"""Table 7 (model size): exact parameter counts of backbone + MTP modules, built on the meta device."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mpo.artifacts import table7
from mpo.config import load_config
from mpo.model_sizes import arch_config, count_parameters, stored_config_names

REPO = Path(__file__).resolve().parents[1]

TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)


def _hand_count(d, inter, layers, heads, kv, vocab, tied, qkv_bias):
    hd = d // heads
    attn = d * heads * hd + 2 * d * kv * hd + heads * hd * d + (heads * hd + 2 * kv * hd if qkv_bias else 0)
    layer = attn + 3 * d * inter + 2 * d  # q, k, v, o (+ biases), gate/up/down, two RMSNorms
    backbone = vocab * d + layers * layer + d + (0 if tied else vocab * d)
    module = 2 * d + 2 * d * d + layer + d + vocab * d  # norm_h, norm_e, proj, block, final norm, head (untied copy)
    return backbone, module


@pytest.mark.parametrize("model_type,tied,bias", [("llama", True, False), ("qwen2", False, True)])
def test_count_matches_hand_computation(model_type, tied, bias):
    cfg = arch_config({"model_type": model_type, "tie_word_embeddings": tied, **TINY})
    backbone, module = _hand_count(16, 32, 2, 4, 2, 100, tied, bias)
    for K in (1, 3, 5):
        c = count_parameters(cfg, K)
        assert c["backbone"] == backbone
        assert c["per_module"] == (module if K > 1 else 0)
        assert c["total"] == backbone + (K - 1) * module
        assert c["ratio"] == pytest.approx((backbone + (K - 1) * module) / backbone)
    # llama tied: backbone 6288, module 4496 (see _hand_count); K=3 total 15280
    if model_type == "llama":
        assert (backbone, module) == (6288, 4496)


def test_paper_models_known_sizes():
    assert {"llama3.2-1b-instruct", "deepseek-r1-distill-qwen-1.5b"} <= set(stored_config_names())
    llama = count_parameters(arch_config("llama3.2-1b-instruct"), 3)
    assert llama["backbone"] == 1_235_814_400  # Llama-3.2-1B (tied embeddings)
    assert llama["module_parts"]["head"] == 128256 * 2048 + 2048  # LM head copy + its final norm
    qwen = count_parameters(arch_config("deepseek-r1-distill-qwen-1.5b"), 5)
    assert qwen["backbone"] == 1_777_088_000  # Qwen2-1.5B architecture, untied
    assert qwen["architecture"] == "Qwen2ForCausalLM"


def test_table7_cli(tmp_path):
    from transformers import LlamaConfig

    cfg = load_config(REPO / "config" / "smoke.yaml")
    name = next(iter(cfg["models"]))
    arch = {k: v for k, v in cfg["models"][name]["architecture"].items()}
    (tmp_path / "models" / name / "base").mkdir(parents=True)
    LlamaConfig(vocab_size=500, tie_word_embeddings=True, **arch).to_json_file(
        tmp_path / "models" / name / "base" / "config.json")
    cfg_path = tmp_path / "smoke.resolved.yaml"
    cfg_path.write_text((REPO / "config" / "smoke.yaml").read_text())
    md, csv_path = tmp_path / "t7.md", tmp_path / "t7.csv"
    assert table7.main(["--config", str(cfg_path), "--models-root", str(tmp_path / "models"),
                        "--out-md", str(md), "--out-csv", str(csv_path)]) == 0
    text = md.read_text()
    assert "Table 7" in text and "scale `smoke`" in text and name in text
    assert "| 1.52 |" in text and "| 2.05 |" in text  # paper ratios next to ours
    rows = list(csv.DictReader(open(csv_path)))
    got = {(r["model"], int(r["K"])): r for r in rows}
    assert float(got[("llama3.2-1b-instruct", 3)]["ratio"]) == pytest.approx(1.537, abs=1e-3)
    assert float(got[("llama3.2-1b-instruct", 5)]["paper_ratio"]) == 2.05
    mine = count_parameters(arch_config(tmp_path / "models" / name / "base"), 5)
    assert int(got[(name, 5)]["total_params"]) == mine["total"]
    assert float(got[(name, 1)]["ratio"]) == 1.0


def test_shared_head_counts_no_head_copies():
    """mtp.share_head: the modules carry no [vocab, d] head, and Table 7 counts the config's models that way."""
    cfg = arch_config({"model_type": "qwen2", "tie_word_embeddings": False, **TINY})
    own, shared = count_parameters(cfg, 5), count_parameters(cfg, 5, share_head=True)
    assert shared["backbone"] == own["backbone"] and shared["share_head"]
    assert own["per_module"] - shared["per_module"] == 100 * 16  # vocab x d, no bias on the LM head
    assert shared["total"] == own["total"] - 4 * 100 * 16
    run = load_config(REPO / "config" / "smoke.yaml")
    run["mtp"]["share_head"] = True
    name = "deepseek-r1-distill-qwen-1.5b"
    from mpo.model_sizes import PAPER_MODELS

    run["models"] = {name: {"source": "hub", "repo": PAPER_MODELS[name]["repo"], "family": "qwen"}}
    rows = {(r["model"], r["K"]): r for r in table7.table_rows(run)}
    paper_only = count_parameters(arch_config(name), 5)
    assert rows[(name, 5)]["share_head"] and rows[(name, 5)]["total_params"] < paper_only["total"]
    assert not rows[("llama3.2-1b-instruct", 5)]["share_head"]  # a paper row: one head per module, as the paper counts
    assert "mtp.share_head" in table7.to_markdown(table7.table_rows(run), run)



def test_registry_cli_writes_the_same_table7(tmp_path):
    """`python -m mpo.artifacts table7 --results R` (the pipeline's route) = the module's own CLI on R/models."""
    from transformers import LlamaConfig

    from mpo.artifacts.__main__ import main

    cfg = load_config(REPO / "config" / "smoke.yaml")
    name = next(iter(cfg["models"]))
    (tmp_path / "models" / name / "base").mkdir(parents=True)
    LlamaConfig(vocab_size=500, **cfg["models"][name]["architecture"]).to_json_file(
        tmp_path / "models" / name / "base" / "config.json")
    cfg_path = str(REPO / "config" / "smoke.yaml")
    assert table7.main(["--config", cfg_path, "--models-root", str(tmp_path / "models"), "--out-md",
                        str(tmp_path / "a.md"), "--out-csv", str(tmp_path / "a.csv")]) == 0
    assert main(["table7", "--config", cfg_path, "--results", str(tmp_path), "--out-md", str(tmp_path / "b.md"),
                 "--out-csv", str(tmp_path / "b.csv")]) == 0
    for ext in ("md", "csv"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()
    assert main(["table7", "--config", cfg_path, "--results", str(tmp_path / "nothing"), "--out-md", "x.md",
                 "--out-csv", "x.csv"]) == 2  # no prepared model: a clear error, not a traceback
