"""Several training seeds: run names <variant>_seed<s>, their specs, the DAG that trains them, the seed they use."""

import copy
import re

import pytest
import yaml

from conftest import REPO, run, run_variant, snakemake_cmd
from mpo.config import ConfigError, load_config, validate_config
from mpo.train import variants as V


@pytest.fixture(scope="module")
def cfg():
    c = load_config(REPO / "config" / "smoke.yaml")
    c["seeds"] = [c["seed"], 7, 8]
    return c


def test_seed_runs_resolve(cfg):
    assert V.split_seed(cfg, "ppo_seed7") == ("ppo", 7)
    assert V.split_seed(cfg, "ppo_seed9") == ("ppo_seed9", None)  # 9 is not one of the seeds
    assert V.split_seed(cfg, f"ppo_seed{cfg['seed']}") == (f"ppo_seed{cfg['seed']}", None)  # the config seed: plain ppo
    assert V.canonical_variant(cfg, "mpo_k5_seed8") == "mpo_seed8"  # alias, per seed
    spec = V.resolve_variant(cfg, "mpo_k5_seed8")
    assert spec["seed"] == 8 and {k: v for k, v in spec.items() if k != "seed"} == V.resolve_variant(cfg, "mpo")
    assert "seed" not in V.resolve_variant(cfg, "ppo")
    names = V.trained_variants(cfg)
    assert {"ppo", "ppo_seed7", "ppo_seed8", "mpo_seed7"} <= set(names) and "mpo_k5_seed7" not in names
    with pytest.raises(V.VariantError, match="ppo_seed9"):
        V.resolve_variant(cfg, "ppo_seed9")


def test_seeds_must_contain_seed(cfg):
    bad = copy.deepcopy(cfg)
    bad["seeds"] = [7, 8]
    with pytest.raises(ConfigError, match="at 'seeds'"):
        validate_config(bad)


@pytest.mark.slow
def test_a_seed_run_trains_with_its_seed(env, cfg):
    c = copy.deepcopy(env["cfg"])
    c["seeds"] = [c["seed"], 7]
    c["train"]["steps"] = 1
    s0, rows0, _ = run_variant(env, "grpo", out=env["root"] / "seed_base", cfg=c)
    s7, rows7, _ = run_variant(env, "grpo_seed7", out=env["root"] / "seed_7", cfg=c)
    assert s7["spec"]["seed"] == 7 and "seed" not in s0["spec"]
    assert rows0[0]["response_length"] != rows7[0]["response_length"] or rows0[0]["reward"] != rows7[0]["reward"]


@pytest.mark.slow
def test_dag_trains_and_evaluates_every_seed(tmp_path):
    raw = yaml.safe_load(open(REPO / "config" / "smoke.yaml"))
    raw["seeds"] = [raw.get("seed", 1234), 7]
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(raw))
    dry = run(snakemake_cmd("-n", "table1", "--configfile", str(tmp_path / "seeds.yaml"), "--printshellcmds"),
              timeout=300).stdout
    for name in ("ppo", "ppo_seed7", "mpo", "mpo_seed7"):  # MPO K=5 is the alias mpo_k5: one run per seed
        assert re.search(rf"--variant {name}\b", dry) and re.search(rf"eval/tiny-llama/code/{name}\b", dry), name
    assert not re.search(r"--variant mpo_k5_seed7\b", dry)
