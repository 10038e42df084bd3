"""Variant resolution, batch sizing and the Snakemake helpers of the train rule (pure Python, fast)."""

import copy
from pathlib import Path

import pytest
import torch

from mpo.config import ConfigError, load_config, validate_config
from mpo.train import smk
from mpo.train.methods import mtp_weights_for
from mpo.train.trainer import TrainSetupError, compute_sizes
from mpo.train.variants import VariantError, canonical_variant, resolve_variant, trained_variants

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config" / "config.yaml")


def test_method_defaults(cfg):
    ppo, grpo, dapo, gspo, mpo = (resolve_variant(cfg, v) for v in ("ppo", "grpo", "dapo", "gspo", "mpo"))
    assert ppo["critic"] and ppo["K"] == 1 and ppo["group_size"] == 1 and not ppo["needs_ref"]
    assert grpo["advantage"] == "grpo" and grpo["loss_agg"] == "seq-mean-token-mean" and grpo["kl_loss_coef"] > 0
    assert grpo["needs_ref"] and grpo["group_size"] == cfg["train"]["group_size"]
    assert (dapo["clip_low"], dapo["clip_high"]) == (0.2, 0.28) and dapo["dynamic_sampling"] and dapo["overlong_shaping"]
    assert dapo["loss_agg"] == "token-mean" and dapo["kl_loss_coef"] == 0
    assert gspo["ratio"] == "sequence" and (gspo["clip_low"], gspo["clip_high"]) == (3e-4, 4e-4)
    assert mpo["ratio"] == "block" and mpo["K"] == 5 and mpo["mtp_grad"] == "hidden" and mpo["critic"]
    assert ppo["critic_lr"] == pytest.approx(10 * ppo["lr"])
    w = mtp_weights_for(mpo)
    assert w.shape == (5,) and float(w[1:].sum()) == pytest.approx(0.2) and float(w.sum()) == pytest.approx(1.0)
    assert torch.equal(mtp_weights_for(ppo), torch.ones(1))


def test_aliases_train_once(cfg):
    assert canonical_variant(cfg, "mpo_k5") == "mpo"
    assert "mpo_k5" not in trained_variants(cfg) and "mpo" in trained_variants(cfg)
    assert resolve_variant(cfg, "mpo_k5") == resolve_variant(cfg, "mpo")
    assert smk.run_dir("R", "m", "gsm8k", "mpo_k5", cfg) == "R/runs/m/gsm8k/mpo"


def test_every_experiment_variant_is_defined(cfg):
    for exp in cfg["experiments"].values():
        for v in exp.get("variants", []):
            resolve_variant(cfg, v)


@pytest.mark.parametrize("variant, message", [
    ({"method": "ppo", "K": 3}, "only applies to method mpo"),
    ({"method": "grpo", "value_heads": True}, "value_heads needs method mpo"),
    ({"method": "mpo", "K": 3, "advantage": "grpo", "value_heads": True}, "needs a critic"),
    ({"method": "dapo", "advantage": "gae"}, "group advantages"),
    ({"method": "mpo", "K": 3, "mtp_share": 0.1, "w1": 0.1}, "not both"),
])
def test_inconsistent_variants(cfg, variant, message):
    c = copy.deepcopy(cfg)
    c["variants"]["bad"] = variant
    with pytest.raises(VariantError, match=message):
        resolve_variant(c, "bad")


def test_schema_rejects_unknown_variant_key(cfg):
    c = copy.deepcopy(cfg)
    c["variants"]["bad"] = {"method": "mpo", "k": 3}
    with pytest.raises(ConfigError, match="variants.bad"):
        validate_config(c)
    c["variants"]["bad"] = {"alias": "mpo", "K": 3}
    with pytest.raises(ConfigError):
        validate_config(c)


def test_mpo_grpo_advantage_uses_groups(cfg):
    c = copy.deepcopy(cfg)
    c["variants"]["mpo_grpo"] = {"method": "mpo", "K": 3, "gamma": 0.5, "mtp_share": 0.1, "advantage": "grpo"}
    spec = resolve_variant(c, "mpo_grpo")
    assert not spec["critic"] and spec["group_size"] == c["train"]["group_size"] and spec["ratio"] == "block"


def test_sizes_match_responses_across_methods(cfg):
    t = dict(cfg["train"], batch_size=16, mini_batch_size=8, micro_batch_size=2)
    ppo, grpo = resolve_variant(cfg, "ppo"), resolve_variant(cfg, "grpo")
    a, b = compute_sizes(t, ppo, 1), compute_sizes(t, grpo, 1)
    assert a.responses == b.responses == 16 and a.prompts == 16 and b.prompts == 16 // grpo["group_size"]
    assert a.accum == 4 and a.n_mini == 2
    d = compute_sizes(t, ppo, 2)
    assert d.prompts_local == 8 and d.mini_local == 4 and d.accum == 2
    p = compute_sizes(dict(t, batch_unit="prompts"), grpo, 1)
    assert p.prompts == 16 and p.responses == 16 * grpo["group_size"]
    with pytest.raises(TrainSetupError, match="micro_batch_size"):
        compute_sizes(dict(t, micro_batch_size=3), ppo, 1)
    with pytest.raises(TrainSetupError, match="multiple of group_size"):
        compute_sizes(dict(t, batch_size=6), grpo, 1)


def test_snakemake_helpers(cfg):
    from types import SimpleNamespace

    inp = smk.inputs(cfg, "R")
    assert "mtp" not in inp(SimpleNamespace(model="m", dataset="gsm8k", variant="ppo"))
    assert inp(SimpleNamespace(model="m", dataset="gsm8k", variant="mpo_k3"))["mtp"] == "R/models/m/mtp_k3"
    assert smk.launch_argv(cfg, "c.yaml", "m", 1, ["-m", "mpo.train"], env={}, python="py") == ["py", "-m", "mpo.train"]
    c = copy.deepcopy(cfg)
    c["device"] = "cuda"
    assert smk.launch_argv(c, "c.yaml", "m", 8, [], env={}, python="py")[2:7] == [
        "accelerate.commands.launch", "--config_file", "config/accelerate/ddp.yaml", "--num_processes", "8"]
    runs = smk.main_runs(cfg, "R")
    assert len(runs) == len(cfg["models"]) * 5 and all("/gsm8k/" in r for r in runs)
    assert "mpo_k5" not in smk.variant_pattern(cfg).split("|")
    assert smk.run_hash(cfg, "smollm2-135m", "gsm8k", "ppo") != smk.run_hash(cfg, "smollm2-135m", "gsm8k", "grpo")


@pytest.mark.parametrize("name", ["smoke", "config", "paper"])
def test_shipped_configs_resolve(name):
    c = load_config(REPO / "config" / f"{name}.yaml")
    for v in trained_variants(c):
        spec = resolve_variant(c, v)
        compute_sizes(c["train"], spec, 1)
    for acc in ("ddp", "fsdp", "deepspeed_zero2"):
        assert (REPO / "config" / "accelerate" / f"{acc}.yaml").is_file()


def test_beyond_methods_resolve(cfg):
    tempo, mot = resolve_variant(cfg, "tempo"), resolve_variant(cfg, "mot_grpo")
    grpo = resolve_variant(cfg, "grpo")
    for spec in (tempo, mot):  # GRPO's loss, aggregation, KL term and groups; no critic, no MTP modules
        for key in ("ratio", "clip_low", "clip_high", "loss_agg", "kl_loss_coef", "group_size", "critic", "K"):
            assert spec[key] == grpo[key], key
    assert tempo["advantage"] == "tempo" and tempo["rollout"] == "sample"
    assert mot["advantage"] == "grpo" and mot["rollout"] == "mot" and grpo["rollout"] == "sample"
    c = copy.deepcopy(cfg)
    c["variants"]["bad"] = {"method": "tempo", "advantage": "gae"}
    with pytest.raises(VariantError, match="group advantages"):
        resolve_variant(c, "bad")
    c["variants"]["bad"] = {"method": "tempo", "group_size": 1}
    with pytest.raises(VariantError, match="group_size >= 2"):
        resolve_variant(c, "bad")
