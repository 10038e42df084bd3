"""Learning tests: every method must actually learn, clipping must act, and the MTP weights must reach the
right predictors (docs/method.md sections 1, 3, 6). Each guards against a trainer that runs but is wrong, which the
plumbing tests of test_train.py cannot see:

* advantage sign flipped, rewards given to the wrong responses -> ``test_reward_rises`` (every method);
* old log-probs replaced by the current ones (ratio always 1, no clipping) -> ``test_clipping_acts_at_large_lr``;
* MTP weights applied to the wrong predictors (w_k reversed or rolled over k) -> ``test_zero_weight_module_is_inert``.

The toy task: a random one-layer Llama (width 16) over an eight-token vocabulary (``<unk>``, ``<eos>``, ``<pad>``
and the words ``a`` .. ``e``; prompts are ``<unk>`` words), and a reward equal to the share of the response's words
that are ``a`` (about 1/5 for the untrained model, 1 for a policy that only says ``a``). A correct trainer raises
it from ~0.2 to > 0.9 in 12 steps (~0.1 s each); with the advantage's sign flipped or the rewards
misassigned it stays near 0.1. Only the public API is used:
``mpo.train.train(...)``, the run's ``metrics.jsonl`` and its saved policy -- no trainer internals.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mpo.config import load_config
from mpo.train import train

REPO = Path(__file__).resolve().parents[1]
WORDS = ("a", "b", "c", "d", "e")
TARGET = "a"


def toy_reward(texts, records):
    """Share of the response's words that are the target word (0 for an empty response); the same as 'correct'."""
    r = [t.split().count(TARGET) / max(len(t.split()), 1) for t in texts]
    return r, r


def build_toy_model(out: Path):
    """A random one-layer Llama (width 16) with a word-level tokenizer: <unk>, <eos>, <pad>, a .. e."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, "<pad>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                        pad_token="<pad>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=None, eos_token_id=1, pad_token_id=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = 2
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from mpo.data import make_record
    from mpo.mtp import MTPModel

    root = tmp_path_factory.mktemp("learning")
    model = build_toy_model(root / "base")
    (root / "data" / "toy").mkdir(parents=True)
    with open(root / "data" / "toy" / "train.jsonl", "w") as f:
        for i in range(8):
            rec = make_record(id=f"t{i}", source="toy", split="train", kind="math", question=f"say {i}",
                              family="llama", answer="1")
            f.write(json.dumps(rec) + "\n")
    for K in (2, 3):  # deterministic init (identity projection, copied layer): module 1 is the same in both
        MTPModel.from_backbone(model, K).save_modules(root / f"mtp_k{K}")
    cfg = load_config(REPO / "config" / "smoke.yaml")
    cfg["models"]["toy"] = {"source": "random", "family": "llama"}
    # 16 responses per step (group methods: 4 prompts x 4), two optimizer steps per iteration
    cfg["train"].update(steps=12, batch_size=16, group_size=4, mini_batch_size=8, micro_batch_size=8,
                        logprob_micro_batch_size=16, max_prompt_length=64, max_response_length=8, lr=2e-2,
                        save_every=0)
    return {"root": root, "cfg": cfg}


def run(toy, variant, name=None, train_cfg=None, variant_cfg=None, mot_cfg=None):
    """Train `variant` (optionally overriding train / mot keys, defining the variant); returns (metrics rows, out)."""
    cfg = json.loads(json.dumps(toy["cfg"]))
    cfg["train"].update(train_cfg or {})
    cfg["mot"].update(mot_cfg or {})
    if variant_cfg is not None:
        cfg["variants"][variant] = variant_cfg
    spec = cfg["variants"][variant]
    root, out = toy["root"], toy["root"] / "runs" / (name or variant)
    mtp = root / f"mtp_k{spec['K']}" if spec["method"] == "mpo" and spec.get("K", 5) > 1 else None
    train(cfg, model="toy", dataset="toy", variant=variant, base=root / "base", data_root=root / "data", out=out,
          mtp=mtp, reward_fn=toy_reward)
    return [json.loads(line) for line in open(out / "metrics.jsonl")], out


# the smoke config's variants (mpo_k2 / mpo_k3: K = 2 / 3, gamma 0.7, share 0.2); DAPO with its overlong shaping
@pytest.mark.parametrize("variant", ["ppo", "grpo", "dapo", "gspo", "mpo_k2", "mpo_k3", "tempo", "mot_grpo"])
def test_reward_rises(toy, variant):
    """Each method learns the toy task: the toy reward (logged as 'accuracy': DAPO's 'reward' also holds its
    overlong penalty) climbs from ~0.2 to above 0.6 (a correct trainer reaches ~0.95 by step 12). MoT-G GRPO
    explores with a sampled support (``mot.support: sample``, k = 2): its default top-k support cannot reach the
    target word here (``test_mot_topk_support_cannot_reach_the_target``)."""
    rows, _ = run(toy, variant, mot_cfg={"support": "sample"} if variant == "mot_grpo" else None)
    acc = [r["accuracy"] for r in rows]
    first, last = sum(acc[:3]) / 3, sum(acc[-3:]) / 3
    assert first < 0.35, (variant, acc)  # the untrained model says "a" about 1 word in 5
    assert last > 0.6 and last > first + 0.4, (variant, [round(a, 2) for a in acc])


def test_clipping_acts_at_large_lr(toy):
    """PPO at a large learning rate with 4 passes over each batch: the clip cuts a good share of the tokens, and
    on the same first batch the ratio stays far closer to 1 than with the clip range opened wide."""
    train_cfg = {"steps": 2, "ppo_epochs": 4, "lr": 5e-2}
    clipped, _ = run(toy, "ppo", "ppo_clip", train_cfg)
    opened, _ = run(toy, "ppo_noclip", train_cfg=train_cfg,
                    variant_cfg={"method": "ppo", "clip_low": 1.0, "clip_high": 1e6})
    assert all(r["first_minibatch_ratio_maxdev"] < 1e-5 for r in clipped)  # rollouts come from the current policy
    assert all(r["clip_frac"] > 0.1 for r in clipped), [r["clip_frac"] for r in clipped]
    assert all(r["clip_frac"] == 0 for r in opened)
    c, o = clipped[0], opened[0]  # step 1: the same rollouts, the same first mini-batch
    assert c["ratio_var"] > 0 and c["ratio_var"] < 0.5 * o["ratio_var"], (c["ratio_var"], o["ratio_var"])
    assert c["approx_kl"] < 0.5 * o["approx_kl"], (c["approx_kl"], o["approx_kl"])


def test_zero_weight_module_is_inert(toy):
    """w_k weighs module k's term: K = 3 with gamma = 0 (w = [0.5, 0.5, 0]) makes exactly K = 2's updates
    (w = [0.5, 0.5]) -- module 2's term has weight 0 -- so the weights must reach the predictor they belong to."""
    base = {"method": "mpo", "gamma": 0.0, "mtp_share": 0.5, "mtp_aux_coef": 0.0}  # aux CE off: modules fixed
    steps = {"steps": 4}
    rows2, out2 = run(toy, "mpo_w_k2", train_cfg=steps, variant_cfg={**base, "K": 2})
    rows3, out3 = run(toy, "mpo_w_k3", train_cfg=steps, variant_cfg={**base, "K": 3})
    rows_ppo, out_ppo = run(toy, "ppo", "ppo_w", train_cfg=steps)
    w2, w3 = (load_file(str(o / "policy" / "model.safetensors")) for o in (out2, out3))
    assert w2.keys() == w3.keys() and all(torch.equal(w2[k], w3[k]) for k in w2)
    for a, b in zip(rows2, rows3):
        for key in ("policy_loss", "grad_norm", "block_ratio_var", "clip_frac", "reward"):
            assert a[key] == b[key], (key, a[key], b[key])
    # and module 1's weight does act: the update is not PPO's
    wp = load_file(str(out_ppo / "policy" / "model.safetensors"))
    assert not all(torch.equal(wp[k], w2[k]) for k in wp)


def test_mot_topk_support_cannot_reach_the_target(toy):
    """MoT-G with the default top-k support (k = 2) never emits a token outside the two most likely ones. On the toy
    task the untrained model ranks the target 'a' 7th of 8 at the first response position (p = 0.11; top two:
    <unk> 0.18, d 0.14), and 32 mixture rollouts of it (256 positions) hold 'a' in the top-2 support at 0 positions
    (with the sampled support: 24%). So every reward is 0, every group's advantages are 0 and the policy loss is
    exactly 0: GRPO has nothing to learn from. Only the KL term moves the policy (Adam turns its float-noise
    gradient at step 1, norm 1e-7, into lr-sized steps; kl_loss 0.015 / 0.004 / 0.023 at steps 2-4). A rollout
    that leaked tokens from outside the support fails this."""
    rows, _ = run(toy, "mot_grpo", name="mot_grpo_topk", train_cfg={"steps": 4})
    assert [r["accuracy"] for r in rows] == [0.0] * 4
    assert [r["policy_loss"] for r in rows] == [0.0] * 4  # zero advantages: no policy gradient at all
    assert all(r["mixture_frac"] == 1.0 for r in rows)  # the toy vocabulary has no end-of-reasoning marker
