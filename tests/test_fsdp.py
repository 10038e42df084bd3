"""mpo.train.fsdp: the strategy per model, the sharding plan (which modules are FSDP2 units), and that a sharded model
computes, clips, checkpoints and feeds the rollout engine like the unsharded one (one gloo process; the two-process
equality is tests/test_dist.py)."""

import copy

import pytest
import torch

from mpo.train import fsdp
from mpo.train.errors import TrainSetupError


def _cfg(**train):
    return {"train": {"strategy": {}, "accelerate_config": "ddp", "fsdp": {}, **train}}


def test_strategy_per_model_from_the_config():
    assert fsdp.strategy_for(_cfg(strategy={"a": "fsdp"}), "a") == "fsdp"
    assert fsdp.strategy_for(_cfg(strategy={"a": "fsdp"}), "b") == "ddp"
    assert fsdp.strategy_for(_cfg(accelerate_config="fsdp"), "b") == "fsdp"
    with pytest.raises(TrainSetupError, match="train.strategy.a"):
        fsdp.strategy_for(_cfg(strategy={"a": "zero3"}), "a")
    assert fsdp.settings_of(_cfg(fsdp={"reshard": False})) == fsdp.FSDPSettings(reshard=False)
    with pytest.raises(TrainSetupError, match="train.fsdp"):
        fsdp.settings_of(_cfg(fsdp={"offload": True}))


def test_fsdp_with_one_process_trains_unsharded(train_env, tmp_path):
    from conftest import make_trainer

    cfg = copy.deepcopy(train_env["cfg"])
    cfg["train"]["strategy"] = {"tiny-llama": "fsdp"}
    tr = make_trainer(train_env, "ppo", out=tmp_path, cfg=cfg)
    assert tr.strategy == "ddp" and not fsdp.is_sharded(tr.actor)
    tr.close()


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group already exists")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path_factory.mktemp('pg')}/store", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _mtp_model(base, K=3):
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel

    torch.manual_seed(0)
    model = MTPModel.from_backbone(AutoModelForCausalLM.from_pretrained(base), K, proj_init="random")
    model.chunk_size = 8
    return model


def _units(model) -> list[str]:
    from torch.distributed.fsdp import FSDPModule

    return [n for n, m in model.named_modules() if isinstance(m, FSDPModule)]


def test_sharding_plan_layers_then_root(group, smoke_model_dir):
    from torch.distributed.tensor import DTensor

    model = _mtp_model(smoke_model_dir)
    n_layers = len(model.backbone.model.layers)
    units = fsdp.shard_model(model, device=torch.device("cpu"), settings=fsdp.FSDPSettings())
    layers = [f"backbone.model.layers.{i}" for i in range(n_layers)]
    assert units == [*layers, ""]
    assert _units(model) == ["", *layers]  # the MTP modules (and their blocks) live in the root unit
    assert fsdp.is_sharded(model) and all(isinstance(p, DTensor) for p in model.parameters())


def test_critic_with_value_heads_is_sharded_per_layer(group, smoke_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from mpo.train.critic import Critic

    _mtp_model(smoke_model_dir).save_modules(tmp_path / "mtp")
    critic = Critic(AutoModelForCausalLM.from_pretrained(smoke_model_dir), str(tmp_path / "mtp"))
    fsdp.shard_model(critic, device=torch.device("cpu"), settings=fsdp.FSDPSettings())
    n = len(critic.mtp.backbone.model.layers)
    assert _units(critic) == ["", *[f"mtp.backbone.model.layers.{i}" for i in range(n)]]
    assert critic.mixture_weights() == pytest.approx([1 / 3] * 3)


def _loss_and_grads(model, ids, am):
    """The fused "hidden" + auxiliary-CE path (one routed module pass) and its backward."""
    out = model(ids, am, mtp_grad="hidden", mtp_ce=True)
    (out.logprobs.sum() + out.mtp_ce).backward()
    return out.logprobs.detach(), float(out.mtp_ce.detach())


def test_sharded_forward_backward_and_clip_match_unsharded(group, smoke_model_dir):
    plain = _mtp_model(smoke_model_dir)
    assert plain.fuse_module_passes
    sharded = copy.deepcopy(plain)
    fsdp.shard_model(sharded, device=torch.device("cpu"), settings=fsdp.FSDPSettings())
    ids = torch.randint(0, plain.backbone.config.vocab_size, (2, 12))
    am = torch.ones_like(ids)
    am[0, :3] = 0
    lp_s, ce_s = _loss_and_grads(sharded, ids, am)
    lp_p, ce_p = _loss_and_grads(plain, ids, am)
    norms_s = [float(fsdp.clip_grad_norm(None, ps, 1e9)) for ps in (sharded.backbone.parameters(),
                                                                   sharded.mtp.parameters())]
    norms_p = [float(torch.nn.utils.get_total_norm([p.grad for p in ps if p.grad is not None]))
               for ps in (plain.backbone.parameters(), plain.mtp.parameters())]
    torch.testing.assert_close(lp_s, lp_p, rtol=1e-6, atol=1e-6)
    assert ce_s == pytest.approx(ce_p, rel=1e-6)
    assert norms_s == pytest.approx(norms_p, rel=1e-5) and min(norms_s) > 0
    full = fsdp.full_state_dict(sharded)
    for name, p in plain.named_parameters():  # every gradient reached its shard
        assert full[name].shape == p.shape


def test_checkpoint_state_round_trip_and_engine_sync(group, smoke_model_dir):
    from mpo.rollout import HFEngine
    from mpo.train.setup import load_tokenizer

    model = _mtp_model(smoke_model_dir, K=2)
    fsdp.shard_model(model, device=torch.device("cpu"), settings=fsdp.FSDPSettings())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 100, (1, 6))
    model(ids, mtp_ce=True).mtp_ce.backward()
    opt.step()
    state = fsdp.ShardedState(model, opt)
    saved = copy.deepcopy(state.state_dict())
    assert saved["optimizer"]["state"] and set(saved["model"]) == set(model.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.0)
    state.load_state_dict(copy.deepcopy(saved))  # (set_model_state_dict turns the given tensors into shards)
    for k, v in fsdp.full_state_dict(model).items():
        torch.testing.assert_close(v, saved["model"][k], rtol=0, atol=0)
    # the HF engine samples from an unsharded copy, refreshed from the shards
    copy_ = fsdp.generation_copy(model.backbone, smoke_model_dir, torch.device("cpu"), torch.float32)
    engine = HFEngine(copy_, load_tokenizer(smoke_model_dir))
    engine.sync_weights(model.backbone)
    for name, p in copy_.named_parameters():
        torch.testing.assert_close(p, saved["model"]["backbone." + name], rtol=0, atol=0)
