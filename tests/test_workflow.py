"""The Snakemake frame: lint is clean, the DAGs dry-run offline (also under the SLURM profile without conda), a bad
config or a run that does not fit the GPUs stops `snakemake -n` naming the key / run; rule helpers (mpo.rules,
mpo.train.smk: resources, launcher) unit-tested."""

import os
import re

import pytest
import yaml

from conftest import REPO, VENV_BIN, run, snakemake_cmd
from mpo import rules as R
from mpo.config import load_config
from mpo.train import smk as train_smk

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _config_file(tmp_path, base: str, edit) -> str:
    """A copy of config/<base>.yaml with `edit(cfg)` applied (written under tmp_path, results under a fresh name)."""
    cfg = yaml.safe_load((REPO / "config" / f"{base}.yaml").read_text())
    cfg["name"] = f"test-{tmp_path.name}"
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow
def test_lint_is_clean():
    proc = run(snakemake_cmd("--lint"), check=False)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.slow
def test_paper_dag_dry_run_offline():
    proc = run(snakemake_cmd("-n", "--configfile", "config/paper.yaml"), env=OFFLINE)
    out = proc.stdout
    for model in ["llama3.2-1b-instruct", "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b"]:
        assert model in out
    assert "table4" in out and "prepare_data" in out


@pytest.mark.slow
def test_slurm_profile_dry_run_without_conda(tmp_path):
    """The README's SLURM dry-run works where conda is not installed (conda is the opt-in profiles/conda), and a
    dry-run writes nothing under results/ (config.resolved.yaml is written when jobs start)."""
    cfg = _config_file(tmp_path, "paper", lambda c: None)
    path = f"{VENV_BIN}:/usr/bin:/bin"  # no conda on it
    proc = run(snakemake_cmd("-n", "--configfile", cfg, "--workflow-profile", "profiles/slurm"),
               env={**OFFLINE, "PATH": path}, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train" in proc.stdout
    assert not (REPO / "results" / f"test-{tmp_path.name}").exists()


@pytest.mark.slow
def test_bad_config_key_stops_snakemake():
    proc = run(snakemake_cmd("-n", "--configfile", "config/smoke.yaml", "--config", "seed=notanumber"), check=False)
    assert proc.returncode != 0
    assert "'seed'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_missing_warmup_dataset_stops_snakemake_naming_the_key(tmp_path):
    """Before: a missing input of mtp_warmup; now the config error names warmup.datasets."""
    cfg = _config_file(tmp_path, "smoke", lambda c: c["datasets"].pop("math"))
    proc = run(snakemake_cmd("-n", "--configfile", cfg), check=False)
    assert proc.returncode != 0
    assert "'warmup.datasets': 'math'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_run_that_does_not_fit_stops_snakemake(tmp_path):
    cfg = _config_file(tmp_path, "paper", lambda c: c["train"]["strategy"].pop("deepseek-r1-distill-qwen-7b"))
    proc = run(snakemake_cmd("-n", "--configfile", cfg), env=OFFLINE, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "'resources.gpu.gpu_mem_gb'" in out and "deepseek-r1-distill-qwen-7b/gsm8k/ppo (ddp)" in out


@pytest.mark.slow
def test_smoke_and_default_dags_differ():
    smoke = run(snakemake_cmd("-n", "-F", "--configfile", "config/smoke.yaml")).stdout
    default = run(snakemake_cmd("-n", "-F")).stdout
    assert "tiny-llama" in smoke and "smollm2-135m" not in smoke
    assert "smollm2-135m" in default and "tiny-llama" not in default


# ------------------------------------------------------------------------------------------------ rule helpers
OWN_RULE_FILES = ["common", "data", "model", "mtp", "train", "eval", "bench"]


def test_rules_are_short_declarations():
    for name in OWN_RULE_FILES:
        text = (REPO / "workflow" / "rules" / f"{name}.smk").read_text()
        for block in re.findall(r"^rule .*?(?=^\S|\Z)", text, flags=re.S | re.M):
            lines = [ln for ln in block.splitlines() if ln.strip()]
            assert len(lines) <= 16, f"{name}.smk: {lines[0]} has {len(lines)} lines"


@pytest.fixture(scope="module")
def paper():
    return load_config(REPO / "config" / "paper.yaml")


def test_resources_follow_the_config(paper):
    assert R.resources(paper, "gpu") == {"mem_mb": 256000, "runtime": 1440, "gpu": 8, "slurm_partition": "gpu"}
    # benchmarks of a CUDA config: the GPU resources (one GPU) and so the GPU partition (was: gpu=1 on `cpu`)
    assert R.resources(paper, "bench", max_gpus=1)["gpu"] == 1
    assert R.resources(paper, "bench", max_gpus=1)["slurm_partition"] == "gpu"
    assert R.resources(paper)["slurm_partition"] == "cpu" and R.resources(paper)["gpu"] == 0
    paper2 = {**paper, "resources": {**paper["resources"], "gpu": {**paper["resources"]["gpu"], "gpus": 16,
                                                                    "nodes": 2}}}
    assert R.resources(paper2, "gpu")["nodes"] == 2 and R.resources(paper2, "gpu")["tasks"] == 2
    assert "nodes" not in R.resources(paper2, "gpu", max_gpus=1)  # warm-up / evaluation: one GPU
    smoke = load_config(REPO / "config" / "smoke.yaml")
    assert R.resources(smoke, "gpu") == {"mem_mb": 4000, "runtime": 30, "gpu": 0}
    assert R.env_file(smoke, "train") == "../envs/train.yaml"
    assert R.env_file(paper, "train") == "../envs/cu12/train.yaml"
    assert (REPO / "workflow" / "rules" / R.env_file(paper, "eval")).is_file()


CMD = ["-m", "mpo.train", "--config", "c.yaml"]


def test_launcher_uses_the_gpus_the_job_got(paper):
    assert train_smk.launch_argv(paper, "c.yaml", "deepseek-r1-distill-qwen-7b", 1, CMD, env={}, python="py") == \
        ["py", *CMD]  # a profile capped the job at one GPU: no accelerate, no 8 processes
    argv = train_smk.launch_argv(paper, "c.yaml", "deepseek-r1-distill-qwen-7b", 8, CMD, env={}, python="py")
    assert argv[:6] == ["py", "-m", "accelerate.commands.launch", "--config_file", "config/accelerate/fsdp.yaml",
                        "--num_processes"] and argv[6] == "8"
    assert argv[argv.index("--fsdp_reshard_after_forward") + 1] == "true" and argv[-len(CMD):] == CMD
    assert "--num_machines" not in argv
    smoke = load_config(REPO / "config" / "smoke.yaml")
    assert train_smk.launch_argv(smoke, "c.yaml", "tiny-llama", 0, CMD, env={}, python="py") == ["py", *CMD]


def test_launcher_spans_slurm_nodes(paper):
    env = {"SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    outer = train_smk.launch_argv(paper, "c.yaml", "llama3.2-1b-instruct", 16, CMD, env=env, python="py")
    assert outer[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert outer[outer.index("launch"):outer.index("launch") + 3] == ["launch", "--config", "c.yaml"]
    asked = []

    def hostnames(nodelist):
        asked.append(nodelist)
        return ["gpu07", "gpu08"]

    inner = train_smk.launch_argv(paper, "c.yaml", "llama3.2-1b-instruct", 16, CMD,
                                  env={**env, train_smk.NESTED: "1"}, hostnames=hostnames, python="py")
    opts = dict(zip(inner[3:-len(CMD):2], inner[4:-len(CMD):2]))
    assert asked == ["gpu[07-08]"]
    assert opts["--num_processes"] == "16" and opts["--num_machines"] == "2" and opts["--machine_rank"] == "1"
    assert opts["--main_process_ip"] == "gpu07" and opts["--main_process_port"] == str(train_smk.RDZV_PORT)
    with pytest.raises(ValueError, match="split evenly"):
        train_smk.launch_argv(paper, "c.yaml", "llama3.2-1b-instruct", 15, CMD, env={**env, train_smk.NESTED: "1"},
                              hostnames=hostnames)


def test_resolved_config_is_written_once_per_change(tmp_path, paper):
    path = tmp_path / "r" / "config.resolved.yaml"
    assert R.write_resolved_config(paper, path) and yaml.safe_load(path.read_text()) == paper
    assert not R.write_resolved_config(paper, path)
    assert R.write_resolved_config({**paper, "seed": 1}, path)


def test_no_conda_in_the_slurm_profile():
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert "software-deployment-method" not in prof and "set-resources" not in prof
    assert yaml.safe_load((REPO / "profiles" / "conda" / "config.yaml").read_text())[
        "software-deployment-method"] == "conda"
    assert os.path.isdir(REPO / "workflow" / "envs")


def test_rule_arguments_and_inputs():
    from types import SimpleNamespace as NS

    smoke = load_config(REPO / "config" / "smoke.yaml")
    res = "results/smoke"
    zero = NS(model="tiny-llama", dataset="gsm8k", variant="zero_shot")
    trained = NS(model="tiny-llama", dataset="gsm8k", variant="mpo")
    assert R.eval_model(res)(zero) == f"{res}/models/tiny-llama/base"
    assert R.eval_model(res)(trained) == f"{res}/runs/tiny-llama/gsm8k/mpo/summary.json"
    run_input = NS(model=f"{res}/runs/tiny-llama/gsm8k/mpo/summary.json")
    assert R.eval_model_dir(trained, run_input) == f"{res}/runs/tiny-llama/gsm8k/mpo/policy"
    assert R.eval_model_dir(zero, NS(model=f"{res}/models/tiny-llama/base")) == f"{res}/models/tiny-llama/base"
    assert "--out results/smoke/eval/tiny-llama/gsm8k/mpo " in R.eval_args("c.yaml", res)(trained, run_input)
    w = R.warmup_inputs(smoke, res)
    assert w["train"] == [f"{res}/data/{d}/train.jsonl" for d in smoke["warmup"]["datasets"]]
    assert R.variant_pattern(smoke).startswith("zero_shot|") and "mpo_k5" not in R.variant_pattern(smoke).split("|")
    # train: MPO K > 1 reads its warm-up modules; the launcher gets the job's GPUs
    inp = train_smk.inputs(smoke, res)(trained)
    assert inp["mtp"] == f"{res}/models/tiny-llama/mtp_k5"  # smoke's mpo: K = 5
    assert "mtp" not in train_smk.inputs(smoke, res)(NS(model="tiny-llama", dataset="gsm8k", variant="ppo"))
    args = train_smk.cli_args("c.yaml", res)(trained, NS(**inp, keys=lambda: inp.keys()), NS(gpu=2))
    assert args.startswith("--config c.yaml --model tiny-llama --gpus 2 -- -m mpo.train ") and f"--mtp {inp['mtp']}" in args


def test_launch_cli_execs_the_command(monkeypatch):
    """`python -m mpo.train.smk launch --config C --model M --gpus N -- <python args>` (the train rule's command)."""
    calls = []
    monkeypatch.setattr(train_smk.os, "execvp", lambda f, argv: calls.append(argv))
    cfg = str(REPO / "config" / "smoke.yaml")
    train_smk.main(["launch", "--config", cfg, "--model", "tiny-llama", "--gpus", "0", "--", "-m", "mpo.train",
                    "--config", "x.yaml", "--threads", "1"])
    assert calls == [[train_smk.sys.executable, "-m", "mpo.train", "--config", "x.yaml", "--threads", "1"]]
    with pytest.raises(SystemExit):
        train_smk.main(["launch", "--config", cfg, "--model", "tiny-llama", "--gpus", "0"])
