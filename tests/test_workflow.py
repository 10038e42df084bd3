"""The Snakemake frame: lint is clean, the paper DAG dry-runs offline, a bad config names the key."""

import pytest

from conftest import run, snakemake_cmd

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def test_lint_is_clean():
    proc = run(snakemake_cmd("--lint"), check=False)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_paper_dag_dry_run_offline():
    proc = run(snakemake_cmd("-n", "--configfile", "config/paper.yaml"), env=OFFLINE)
    out = proc.stdout
    for model in ["llama3.2-1b-instruct", "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b"]:
        assert model in out
    assert "table4" in out and "prepare_data" in out


def test_bad_config_key_stops_snakemake():
    proc = run(snakemake_cmd("-n", "--configfile", "config/smoke.yaml", "--config", "seed=notanumber"), check=False)
    assert proc.returncode != 0
    assert "'seed'" in proc.stdout + proc.stderr


def test_smoke_and_default_dags_differ():
    smoke = run(snakemake_cmd("-n", "-F", "--configfile", "config/smoke.yaml")).stdout
    default = run(snakemake_cmd("-n", "-F")).stdout
    assert "tiny-llama" in smoke and "smollm2-135m" not in smoke
    assert "smollm2-135m" in default and "tiny-llama" not in default
