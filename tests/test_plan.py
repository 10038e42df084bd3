"""mpo.plan: parameter counts equal the built model's, the paper config fits 8 x A100-80GB, a run that does not fit
stops the config naming it."""

import json

import pytest

from mpo import plan
from mpo.config import ConfigError, load_config
from mpo.model_sizes import PAPER_MODELS, arch_config, count_parameters


@pytest.mark.parametrize("model", list(PAPER_MODELS))
@pytest.mark.parametrize("K, share_head", [(1, False), (3, False), (5, True)])
def test_param_counts_equal_the_built_model(model, K, share_head):
    from mpo.model_sizes import CONFIG_DIR

    arch = json.loads((CONFIG_DIR / f"{model}.json").read_text())
    built = count_parameters(arch_config(model), K, share_head=share_head)
    counted = plan.param_counts(arch, K, share_head)
    assert (counted["backbone"], counted["total"]) == (built["backbone"], built["total"])


@pytest.mark.parametrize("model", list(PAPER_MODELS))
def test_critic_params_equal_the_built_critic(model):
    import torch
    from transformers import AutoModelForCausalLM

    from mpo.model_sizes import CONFIG_DIR
    from mpo.train.critic import Critic

    arch = json.loads((CONFIG_DIR / f"{model}.json").read_text())
    with torch.device("meta"):
        critic = Critic(AutoModelForCausalLM.from_config(arch_config(model)))
    assert plan.critic_params(arch) == sum(p.numel() for p in critic.parameters())


def test_every_paper_run_fits_8_a100_80gb(repo, tmp_path):
    out = tmp_path / "plan.json"
    assert plan.main(["--config", str(repo / "config" / "paper.yaml"), "--json", str(out)]) == 0
    p = json.loads(out.read_text())
    assert p["gpu_mem_gb"] == 80 and p["world"] == 8
    assert len(p["runs"]) == 111  # the paper DAG's train jobs (108 of the paper + TEMPO on the three models)
    assert {tuple(sorted(r)) for r in p["runs"]} == {
        ("K", "dataset", "fits", "model", "params", "parts", "peak_gb", "strategy", "variant")}
    assert all(r["fits"] and r["strategy"] == "fsdp" for r in p["runs"])
    biggest = max(p["runs"], key=lambda r: r["peak_gb"])
    assert biggest["model"] == "deepseek-r1-distill-qwen-7b" and 40 < biggest["peak_gb"] <= 80


def test_sharding_divides_the_states(repo):
    cfg = load_config(repo / "config" / "paper.yaml")
    fsdp = plan.run_memory(cfg, "deepseek-r1-distill-qwen-7b", "ppo", 80, 8)
    cfg["train"]["strategy"] = {}
    ddp = plan.run_memory(cfg, "deepseek-r1-distill-qwen-7b", "ppo", 80, 8)
    n = ddp["params"]
    assert ddp["parts"]["actor_states"] == pytest.approx(n * 20 / plan.GB, rel=1e-3)  # fp32 w, g, DDP bucket, 2 m
    assert fsdp["parts"]["actor_states"] == pytest.approx(n * 16 / 8 / plan.GB, rel=1e-3)
    assert not ddp["fits"] and fsdp["fits"]


def test_checkpointing_and_sleep_mode_lower_the_peak(repo):
    cfg = load_config(repo / "config" / "paper.yaml")
    base = plan.run_memory(cfg, "llama3.2-1b-instruct", "mpo", 80, 8)
    cfg["train"]["gradient_checkpointing"] = False
    no_ckpt = plan.run_memory(cfg, "llama3.2-1b-instruct", "mpo", 80, 8)
    assert no_ckpt["parts"]["activations"] > 2 * base["parts"]["activations"]
    cfg["train"]["gradient_checkpointing"], cfg["train"]["vllm"]["enable_sleep_mode"] = True, False
    awake = plan.run_memory(cfg, "llama3.2-1b-instruct", "mpo", 80, 8)  # vLLM keeps its share during the update
    p = base["parts"]
    update = p["actor_states"] + p["critic_states"] + p["reference"] + p["compute_weights"] + p["activations"]
    assert awake["peak_gb"] == pytest.approx(update + p["vllm"] + p["cuda_context"], abs=0.01)
    assert awake["peak_gb"] > base["peak_gb"]


def test_a_run_that_does_not_fit_is_named(repo):
    cfg = load_config(repo / "config" / "paper.yaml")
    cfg["train"]["strategy"].pop("deepseek-r1-distill-qwen-7b")  # back to DDP: ~170-400 GiB per GPU
    with pytest.raises(ConfigError) as err:
        plan.check_plan(cfg)
    msg = str(err.value)
    assert "'resources.gpu.gpu_mem_gb'" in msg and "deepseek-r1-distill-qwen-7b/gsm8k/ppo (ddp)" in msg
    assert "llama3.2-1b-instruct" not in msg


def test_cpu_config_has_no_gpu_verdict(repo, smoke_model_dir, tmp_path):
    cfg = load_config(repo / "config" / "smoke.yaml")
    with pytest.raises(ConfigError, match="'models.tiny-llama'"):  # random model: vocab from its tokenizer
        plan.plan(cfg, tmp_path)
    (tmp_path / "models" / "tiny-llama").mkdir(parents=True)
    (tmp_path / "models" / "tiny-llama" / "base").symlink_to(smoke_model_dir)
    p = plan.plan(cfg, tmp_path)
    assert p["gpu_mem_gb"] is None and p["world"] == 1
    assert all(r["fits"] is None and r["parts"]["vllm"] == 0 for r in p["runs"])
