"""Config loading: every shipped config validates; bad keys/types stop with a message naming the key."""

import pytest

from mpo.config import ConfigError, config_hash, deep_merge, load_config


@pytest.mark.parametrize("name", ["smoke", "config", "paper"])
def test_shipped_configs_validate(repo, name):
    cfg = load_config(repo / "config" / f"{name}.yaml")
    assert cfg["scale"] in {"smoke", "default", "paper"}
    assert set(cfg["datasets"]) == {"gsm8k", "math", "code"}
    # defaults were filled in
    assert cfg["resources"]["default"]["threads"] >= 1
    assert all(split["size"] is None or split["size"] > 0 for d in cfg["datasets"].values() for split in (d["train"], d["test"]))


def test_scales_match_names(repo):
    assert load_config(repo / "config" / "smoke.yaml")["scale"] == "smoke"
    assert load_config(repo / "config" / "config.yaml")["scale"] == "default"
    assert load_config(repo / "config" / "paper.yaml")["scale"] == "paper"


@pytest.mark.parametrize(
    "override, key",
    [
        ({"datasets": {"gsm8k": {"train": {"source": "nope"}}}}, "datasets.gsm8k.train.source"),
        ({"seed": "abc"}, "seed"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"models": {"tiny-llama": {"source": "hub"}}}, "models.tiny-llama"),
        ({"datasets": {"math": {"test": {"size": 0}}}}, "datasets.math.test.size"),
    ],
)
def test_bad_config_names_the_key(repo, override, key):
    with pytest.raises(ConfigError) as err:
        load_config(repo / "config" / "smoke.yaml", overrides=override)
    assert f"'{key}'" in str(err.value)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_deep_merge_and_hash():
    a = {"x": {"y": 1, "z": 2}}
    b = deep_merge(a, {"x": {"y": 3}})
    assert b == {"x": {"y": 3, "z": 2}} and a == {"x": {"y": 1, "z": 2}}
    assert config_hash(a) != config_hash(b)
    assert config_hash({"p": 1, "q": 2}) == config_hash({"q": 2, "p": 1})


# Cross-key constraints (mpo.config.check_cross_keys): each stops the load naming the key, before any job runs.
@pytest.mark.parametrize(
    "override, key",
    [
        ({"train": {"group_size": 3}}, "train.batch_size"),  # 4 responses, groups of 3
        ({"train": {"mini_batch_size": 3}}, "train.mini_batch_size"),  # does not divide the batch of 4
        ({"train": {"mini_batch_size": 4, "micro_batch_size": 3}}, "train.micro_batch_size"),
        ({"train": {"max_response_length": 2}}, "mtp.K_values"),  # K=3 blocks do not fit 2 tokens
        ({"experiments": {"main": {"models": ["nope"]}}}, "experiments.main.models"),
        ({"experiments": {"main": {"variants": ["nope"]}}}, "experiments.main.variants"),
        ({"train": {"main_variants": ["nope"]}}, "train.main_variants"),
        ({"train": {"strategy": {"nope": "fsdp"}}}, "train.strategy"),
    ],
)
def test_cross_key_error_names_the_key(repo, override, key):
    with pytest.raises(ConfigError) as err:
        load_config(repo / "config" / "smoke.yaml", overrides=override)
    assert f"'{key}'" in str(err.value)


@pytest.mark.parametrize(
    "variant, key",
    [
        ({"method": "mpo", "K": 20}, "variants.mpo_k20.K"),  # a block of 20 tokens in a 16-token response
        ({"method": "ppo", "value_heads": True}, "variants.mpo_k20"),  # inconsistent definition
    ],
)
def test_variant_error_names_the_variant(repo, variant, key):
    from mpo.config import validate_config

    cfg = load_config(repo / "config" / "smoke.yaml")
    cfg["variants"]["mpo_k20"] = variant
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"'{key}'" in str(err.value)


def test_missing_warmup_dataset_names_the_key(repo):
    import yaml

    from mpo.config import validate_config

    cfg = yaml.safe_load((repo / "config" / "smoke.yaml").read_text())
    del cfg["datasets"]["math"]  # warm-up trains on gsm8k + math
    with pytest.raises(ConfigError, match="'warmup.datasets': 'math'"):
        validate_config(cfg)


def test_batch_split_over_processes():
    from mpo.config import batch_sizes

    t = {"batch_unit": "prompts", "batch_size": 256, "mini_batch_size": 128, "micro_batch_size": 4}
    s = batch_sizes(t, 4, 8)  # the paper: 256 prompts x 4 responses on 8 GPUs
    assert (s["responses"], s["mini_local"], s["accum"], s["n_mini"]) == (1024, 64, 16, 2)
    with pytest.raises(ConfigError, match="'train.batch_size'"):
        batch_sizes(t, 4, 6)  # 256 prompts over 6 processes
