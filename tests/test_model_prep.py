"""Model preparation: the smoke model is deterministic from the seed; the GGUF becomes a plain HF directory."""

import json

import pytest
import torch
from safetensors.torch import load_file

from mpo.config import load_config
from mpo.model_prep import ModelPrepError, find_package_file, prepare_model


def test_random_model_is_deterministic(repo, smoke_model_dir, tmp_path):
    prepare_model(load_config(repo / "config" / "smoke.yaml"), "tiny-llama", tmp_path / "again")
    a = load_file(smoke_model_dir / "model.safetensors")
    b = load_file(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = load_config(repo / "config" / "smoke.yaml", overrides={"seed": 7})
    prepare_model(other, "tiny-llama", tmp_path / "other")
    c = load_file(tmp_path / "other" / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_smoke_model_is_plain_hf_dir(smoke_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smoke_model_dir)
    tok = AutoTokenizer.from_pretrained(smoke_model_dir)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok) and tok.chat_template
    assert "quantization_config" not in json.loads((smoke_model_dir / "config.json").read_text())


def test_unknown_package_is_clear():
    with pytest.raises(ModelPrepError, match="not installed"):
        find_package_file("no_such_package_xyz", "model.gguf")


def test_unknown_model_name_is_clear(repo, tmp_path):
    with pytest.raises(ModelPrepError, match="models"):
        prepare_model(load_config(repo / "config" / "smoke.yaml"), "nope", tmp_path)


@pytest.mark.slow
def test_gguf_becomes_plain_safetensors(repo, tmp_path):
    """The embedded SmolLM2-135M-Instruct: dequantised, saved without quantization_config, reloads and chats."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = prepare_model(load_config(repo / "config" / "config.yaml"), "smollm2-135m", tmp_path / "m")
    assert 130e6 < summary["parameters"] < 140e6
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(text.strip()) > 0
