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
