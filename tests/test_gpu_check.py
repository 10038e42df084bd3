"""mpo.gpu_check on a machine without a GPU: the dry run plans and names what is missing; the real run stops
before any work; config problems name the key. (The GPU run itself: `make gpu-check` on a GPU machine.)"""

import json
import sys
from pathlib import Path

import pytest
import yaml

from mpo.config import load_config

from mpo import gpu_check

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "config" / "smoke.yaml")


@pytest.fixture(autouse=True)
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the check runs from the repository root (config/accelerate/fsdp.yaml, results/)


@pytest.fixture
def no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    real = gpu_check.importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a))


def test_dry_run_plans_and_names_the_missing_gpu_and_vllm(tmp_path, capsys, no_gpu):
    out = tmp_path / "gc"
    assert gpu_check.main(["--dry-run", "--config", SMOKE, "--out", str(out)]) == gpu_check.EXIT_ENV
    cap = capsys.readouterr()
    assert "no CUDA GPU" in cap.err and "package 'vllm' is not installed" in cap.err
    plan = json.loads(cap.out)
    assert plan["model"] == "tiny-llama" and plan["dtype"] == "bfloat16" and plan["strategy"] == "fsdp"
    assert set(plan["updates"]) == {"ppo", "mpo_k5"}
    ppo_cmd = plan["updates_commands"]["ppo"]
    assert ppo_cmd[1:3] == ["-m", "accelerate.commands.launch"] and "config/accelerate/fsdp.yaml" in ppo_cmd
    assert ppo_cmd[ppo_cmd.index("--variant") + 1] == "ppo"
    assert plan["updates_commands"]["mpo_k5"][ppo_cmd.index("--variant") + 1] == "mpo_k5"
    assert not out.exists()  # a plan writes nothing


def test_real_run_stops_before_any_work(tmp_path, capsys, no_gpu, monkeypatch):
    monkeypatch.setattr(gpu_check, "run", lambda plan: pytest.fail("the check started working without a GPU"))
    out = tmp_path / "gc"
    assert gpu_check.main(["--config", SMOKE, "--out", str(out)]) == gpu_check.EXIT_ENV
    assert "cannot run here: no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()


def test_ready_when_gpu_and_vllm_are_present(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda n, *a: object())
    assert gpu_check.missing_requirements() == []
    assert gpu_check.main(["--dry-run", "--config", SMOKE, "--out", str(tmp_path / "gc")]) == 0
    assert "ready" in capsys.readouterr().out


def test_single_strategy_runs_the_bench_directly(tmp_path, capsys, no_gpu):
    gpu_check.main(["--dry-run", "--config", SMOKE, "--strategy", "single", "--out", str(tmp_path)])
    cmd = json.loads(capsys.readouterr().out)["updates_commands"]["mpo_k5"]
    assert cmd[:4] == [sys.executable, "-m", "mpo.bench", "_one"] and "accelerate.commands.launch" not in cmd


@pytest.mark.parametrize("argv, key", [
    (["--model", "nope"], "config key 'models'"),
    (["--dataset", "nope"], "config key 'datasets'"),
    (["--base", "/nonexistent/base"], "--base /nonexistent/base: no config.json"),
])
def test_bad_arguments_name_the_key(argv, key, tmp_path, capsys, no_gpu):
    assert gpu_check.main(["--dry-run", "--config", SMOKE, "--out", str(tmp_path), *argv]) == gpu_check.EXIT_CONFIG
    assert key in capsys.readouterr().err


def test_missing_variant_and_config_file(tmp_path, capsys, no_gpu, monkeypatch):
    raw, bad = yaml.safe_load(open(SMOKE)), tmp_path / "bad.yaml"
    for variants, msg in (({"mpo_k5": {"method": "mpo", "K": 5}}, "config key 'variants.ppo' is missing"),
                          ({"ppo": {"method": "ppo"}, "mpo_k5": {"method": "mpo", "K": 3}},
                           "config key 'variants.mpo_k5' must have K: 5")):
        # every experiment and the main comparison name only these variants, so config loading (which checks that
        # names resolve) passes and gpu_check's own check speaks
        exps = {name: {**(e or {}), "variants": list(variants)} for name, e in load_config(SMOKE)["experiments"].items()}
        train = {**raw["train"], "main_variants": list(variants)}
        bad.write_text(yaml.safe_dump({**raw, "variants": variants, "experiments": exps, "train": train}))
        assert gpu_check.main(["--dry-run", "--config", str(bad), "--out", str(tmp_path)]) == gpu_check.EXIT_CONFIG
        assert msg in capsys.readouterr().err
    assert gpu_check.main(["--dry-run", "--config", str(tmp_path / "none.yaml")]) == gpu_check.EXIT_CONFIG
    assert "config file not found" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # not the repository root: no config/accelerate/fsdp.yaml
    assert gpu_check.main(["--dry-run", "--config", SMOKE, "--out", str(tmp_path)]) == gpu_check.EXIT_CONFIG
    assert "--strategy fsdp needs config/accelerate/fsdp.yaml" in capsys.readouterr().err
