"""MTP warm-up (METHOD.md section 2; paper Section 5.7 / Appendix A.2): train the K-1 MTP modules on a frozen backbone.

Data: the shuffled concatenation of the train splits of ``warmup.datasets`` (default gsm8k + math), each record
rendered with the model's chat template as the user prompt followed by an assistant turn holding the reference
solution (``solution``; when null: ``The answer is \\boxed{<answer>}.``). ``warmup.heldout`` shuffled examples are
held out for evaluation (at most a quarter of the examples), the rest (capped at ``warmup.max_examples``) are
trained on for ``warmup.epochs``.

Init: modules from ``MTPModel.from_backbone`` (``mtp.proj_init``, default identity ``[I | 0]``); with
``warmup.calibrate_input_norm`` (default) each module's RMSNorm_a weight is then set to the median RMS of its input
state on the first training batch (:meth:`MTPModel.calibrate_input_norms`), so the untrained module k applies the
copied last layer to a residual stream of the scale it was trained on. "before" metrics are of this init.

Loss: sum_k lambda_k CE_k (``mtp.lambda_first`` * ``mtp.lambda_decay``^(k-1)), CE_k = mean over positions of
module k's cross-entropy of token s+k+1. ``warmup.loss_on: response`` (default) counts only positions whose
targets are response tokens (the solution and the template's end-of-turn token; the prompt is context only, as
in the RL stage where the modules predict response tokens); ``all`` counts every token. The backbone is frozen
(``requires_grad=False``, run under no_grad); only the modules are in the optimizer.

Training uses ``transformers.Trainer`` (tqdm progress, bf16 autocast on CUDA with fp32 module weights, gradient
accumulation, ``save_steps`` checkpoints holding only the modules + optimizer state, automatic resume from the last
checkpoint in the checkpoint directory, no reporting, no hub).

CLI::

    python -m mpo.warmup --config CONFIG --model NAME --K K --backbone DIR --data-root results/<name>/data \\
        --out DIR [--threads N] [--checkpoint-dir DIR]

Writes ``mtp.safetensors`` + ``mtp_config.json`` (the modules), ``metrics.json`` (per-module held-out CE,
top-1 accuracy and mean rank of the true token before and after, the train loss curve, wall time, steps) and
provenance (``run_info.json``, ``resolved_config.yaml``) into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpo.config import load_config
from mpo.mtp import MTPModel, mtp_lambdas
from mpo.runinfo import write_run_info
from mpo.utils import read_jsonl, resolve_device, resolve_dtype, seed_everything, set_threads, write_json


# ------------------------------------------------------------------------------------------------ data
def solution_text(record: dict) -> str:
    sol = record.get("solution")
    if sol is not None and str(sol).strip():
        return str(sol)
    return f"The answer is \\boxed{{{record.get('answer')}}}."


def load_warmup_records(data_root: str | Path, datasets: list[str]) -> list[dict]:
    """Train records of `datasets` from ``<data_root>/<dataset>/train.jsonl`` (concatenated, file order)."""
    out = []
    for name in datasets:
        path = Path(data_root) / name / "train.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"warm-up data not found: {path} (config key 'warmup.datasets' lists {name!r})")
        out.extend(read_jsonl(path))
    if not out:
        raise ValueError(f"no warm-up records under {data_root} for {datasets}")
    return out


def render_example(tokenizer, record: dict, max_length: int, loss_on: str = "response") -> dict | None:
    """Token ids of prompt + reference solution in the chat template, with the per-position loss mask.

    ``loss_mask[s] = 1`` when position s's next token (s+1) counts: a response token (``loss_on=response``) or any
    token (``all``). Truncated on the right to ``max_length``; None when no response token survives.
    """
    messages = list(record["prompt"])
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    sol = solution_text(record)
    full_text = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": sol}], tokenize=False, add_generation_prompt=False
    )
    if full_text.startswith(prompt_text):
        response_text = full_text[len(prompt_text):]
    else:  # templates whose generation prompt differs from a rendered assistant turn (e.g. R1's "<think>\n")
        response_text = sol + (tokenizer.eos_token or "")
    response_text = response_text.rstrip()  # end at the end-of-turn token, not at the template's newline after it
    p_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    ids = (p_ids + r_ids)[:max_length]
    n_prompt = min(len(p_ids), len(ids))
    if len(ids) - n_prompt < 1 or len(ids) < 2:
        return None
    S = len(ids)
    if loss_on == "all":
        loss_mask = [1] * (S - 1) + [0]
    else:
        loss_mask = [1 if (s + 1) >= n_prompt and (s + 1) < S else 0 for s in range(S)]
    return {"input_ids": ids, "loss_mask": loss_mask, "n_prompt": n_prompt}


class PadCollator:
    """Right-pads `input_ids` (with pad_id), `attention_mask` and `loss_mask` to the batch max length."""

    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        S = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), S), self.pad_id, dtype=torch.long)
        am = torch.zeros((len(batch), S), dtype=torch.long)
        lm = torch.zeros((len(batch), S), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            am[i, :n] = 1
            lm[i, :n] = torch.tensor(b["loss_mask"])
        return {"input_ids": ids, "attention_mask": am, "loss_mask": lm}


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


# ------------------------------------------------------------------------------------------------ model
class WarmupWrapper(nn.Module):
    """What Trainer trains: forward(batch) -> {"loss": sum_k lambda_k CE_k}; the backbone inside is frozen."""

    def __init__(self, mtp_model: MTPModel):
        super().__init__()
        self.mtp_model = mtp_model

    def forward(self, input_ids, attention_mask=None, loss_mask=None, **_):
        loss = self.mtp_model.mtp_ce_loss(input_ids, attention_mask, loss_mask=loss_mask)
        return {"loss": loss}


def _make_trainer_class():
    from transformers import Trainer

    class ModulesTrainer(Trainer):
        """Checkpoints hold the MTP modules only (the frozen backbone is never duplicated)."""

        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            out = Path(output_dir or self.args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.accelerator.unwrap_model(self.model).mtp_model.save_modules(out)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            target = model if model is not None else self.model
            self.accelerator.unwrap_model(target).mtp_model.load_modules_state(resume_from_checkpoint)

    return ModulesTrainer


@torch.no_grad()
def evaluate_modules(mtp_model: MTPModel, examples: list[dict], pad_id: int, batch_size: int, device: str,
                     autocast_dtype=None) -> dict[str, list[float]]:
    """Per predictor k (0 = backbone, 1.. = modules) on `examples`: CE (nats/token), top-1 accuracy, mean rank
    of the true token (number of vocab entries with a strictly larger logit) over the loss-mask positions."""
    K = mtp_model.K
    was_training = mtp_model.training
    mtp_model.eval()
    collate = PadCollator(pad_id)
    nll = torch.zeros(K, dtype=torch.float64)
    top1 = torch.zeros(K, dtype=torch.float64)
    rank = torch.zeros(K, dtype=torch.float64)
    count = torch.zeros(K, dtype=torch.float64)
    for a in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[a : a + batch_size]).items()}
        ctx = torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype) if autocast_dtype else _null()
        with ctx:
            out = mtp_model(batch["input_ids"], batch["attention_mask"], logprob_mask=batch["loss_mask"],
                            return_stats=True)
        v = out.valid
        for k in range(K):
            m = v[..., k]
            count[k] += float(m.sum())
            nll[k] += float(-out.logprobs[..., k][m].double().sum())
            top1[k] += float(out.top1[..., k][m].double().sum())
            rank[k] += float(out.rank[..., k][m].double().sum())
    mtp_model.train(was_training)
    c = count.clamp(min=1)
    return {
        "ce": (nll / c).tolist(),
        "top1": (top1 / c).tolist(),
        "mean_rank": (rank / c).tolist(),
        "tokens": count.long().tolist(),
    }


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ------------------------------------------------------------------------------------------------ main
def run_warmup(
    cfg: dict,
    model_name: str,
    K: int,
    backbone_dir: str | Path,
    data_root: str | Path,
    out: str | Path,
    *,
    threads: int = 1,
    checkpoint_dir: str | Path | None = None,
    return_model: bool = False,
    interrupt_at_step: int | None = None,
):
    """Warm up K-1 modules on the frozen backbone in `backbone_dir`; write modules + metrics into `out`.

    Returns the metrics dict (and the trained MTPModel with ``return_model``). ``interrupt_at_step`` (tests) stops
    training after that optimizer step as a kill would, keeping the checkpoints for a later resume.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    t_start = time.time()
    set_threads(threads)
    wcfg, mcfg = cfg["warmup"], cfg["mtp"]
    if model_name not in cfg["models"]:
        raise ValueError(f"model {model_name!r} is not under config key 'models' (have {sorted(cfg['models'])})")
    if int(K) < 2:
        raise ValueError(f"warm-up needs K >= 2 (K - 1 modules), got K={K}")
    seed = int(cfg["seed"])
    seed_everything(seed)
    device = resolve_device(cfg["device"])
    dtype = resolve_dtype(cfg["dtype"], device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out / "checkpoints"

    # ---- data
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    records = load_warmup_records(data_root, list(wcfg["datasets"]))
    random.Random(seed).shuffle(records)
    examples, dropped = [], 0
    for rec in records:
        ex = render_example(tokenizer, rec, int(wcfg["max_length"]), wcfg["loss_on"])
        if ex is None:
            dropped += 1
        else:
            examples.append(ex)
    n_held = min(int(wcfg["heldout"]), max(1, len(examples) // 4))
    heldout, train = examples[:n_held], examples[n_held:]
    if wcfg.get("max_examples"):
        train = train[: int(wcfg["max_examples"])]
    if not train:
        raise ValueError(f"no warm-up training examples left ({len(examples)} rendered, {n_held} held out)")

    # ---- model: frozen backbone + modules (fp32 master weights under bf16/fp16 autocast)
    backbone = AutoModelForCausalLM.from_pretrained(backbone_dir, dtype=dtype)
    backbone.requires_grad_(False)
    lambdas = mtp_lambdas(int(K), mcfg["lambda_first"], mcfg["lambda_decay"])
    mtp_model = MTPModel.from_backbone(
        backbone, int(K), proj_init=mcfg["proj_init"], lambdas=lambdas, chunk_size=int(mcfg["logit_chunk"]),
        checkpoint_min_mb=float(mcfg["checkpoint_min_mb"]), share_head=bool(mcfg["share_head"]),
    )
    mtp_model.mtp.float()
    if not wcfg["train_heads"]:
        for module in mtp_model.mtp:
            module.head.requires_grad_(False)
    mtp_model.to(device)
    use_bf16 = device.startswith("cuda") and dtype == torch.bfloat16
    use_fp16 = device.startswith("cuda") and dtype == torch.float16
    autocast_dtype = dtype if (use_bf16 or use_fp16) else None
    eval_bs = int(wcfg["eval_batch_size"])

    scales = None
    if wcfg["calibrate_input_norm"]:
        calib = {k: v.to(device) for k, v in PadCollator(pad_id)(train[: int(wcfg["batch_size"])]).items()}
        scales = mtp_model.calibrate_input_norms(calib["input_ids"], calib["attention_mask"])
        print(f"[warmup] RMSNorm_a calibrated to input RMS {_fmt(scales)}", flush=True)

    t0 = time.time()
    before = evaluate_modules(mtp_model, heldout, pad_id, eval_bs, device, autocast_dtype)
    eval_seconds = time.time() - t0
    print(f"[warmup] held-out before: ce={_fmt(before['ce'])} top1={_fmt(before['top1'])} "
          f"rank={_fmt(before['mean_rank'])}", flush=True)

    # ---- train
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=int(wcfg["batch_size"]),
        gradient_accumulation_steps=int(wcfg["grad_accum"]),
        num_train_epochs=float(wcfg["epochs"]),
        max_steps=int(wcfg["max_steps"]) if wcfg.get("max_steps") else -1,
        learning_rate=float(wcfg["lr"]),
        weight_decay=float(wcfg["weight_decay"]),
        lr_scheduler_type=wcfg["lr_scheduler"],
        warmup_steps=float(wcfg["warmup_ratio"]),
        max_grad_norm=float(wcfg["max_grad_norm"]),
        logging_steps=int(wcfg["logging_steps"]),
        logging_first_step=True,
        save_strategy="steps",
        save_steps=int(wcfg["save_steps"]),
        save_total_limit=1,
        report_to=[],
        bf16=use_bf16,
        fp16=use_fp16,
        use_cpu=not device.startswith("cuda"),
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        label_names=[],
        dataloader_num_workers=0,
        dataloader_pin_memory=device.startswith("cuda"),
        disable_tqdm=False,
        push_to_hub=False,
    )
    wrapper = WarmupWrapper(mtp_model)
    callbacks = []
    if interrupt_at_step:
        class _Interrupt(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step >= interrupt_at_step:
                    control.should_training_stop = True
                return control

        callbacks.append(_Interrupt())
    trainer = _make_trainer_class()(
        model=wrapper, args=args, train_dataset=_ListDataset(train), data_collator=PadCollator(pad_id),
        callbacks=callbacks,
    )
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        print(f"[warmup] resuming from {last}", flush=True)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.time() - t0
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)

    t0 = time.time()
    after = evaluate_modules(mtp_model, heldout, pad_id, eval_bs, device, autocast_dtype)
    eval_seconds += time.time() - t0
    print(f"[warmup] held-out after:  ce={_fmt(after['ce'])} top1={_fmt(after['top1'])} "
          f"rank={_fmt(after['mean_rank'])}", flush=True)

    # ---- outputs
    mtp_model.save_modules(out, extra_config={"warmup": {"model": model_name, "steps": trainer.state.global_step,
                                                          "train_examples": len(train)}})
    curve = [
        {"step": int(h["step"]), "loss": float(h["loss"]), "epoch": float(h.get("epoch", 0.0))}
        for h in trainer.state.log_history if "loss" in h
    ]
    n_tokens = sum(sum(e["loss_mask"]) for e in train)
    metrics = {
        "model": model_name,
        "K": int(K),
        "scale": cfg["scale"],
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "lambdas": lambdas,
        "proj_init": mcfg["proj_init"],
        "input_norm_scales": scales,
        "loss_on": wcfg["loss_on"],
        "train_heads": bool(wcfg["train_heads"]),
        "predictors": ["backbone"] + [f"module_{k}" for k in range(1, int(K))],
        "heldout": {"before": before, "after": after, "examples": len(heldout)},
        "train": {
            "examples": len(train),
            "dropped_examples": dropped,
            "loss_tokens": n_tokens,
            "epochs": float(wcfg["epochs"]),
            "steps": int(trainer.state.global_step),
            "batch_size": int(wcfg["batch_size"]),
            "grad_accum": int(wcfg["grad_accum"]),
            "lr": float(wcfg["lr"]),
            "trainable_parameters": int(n_trainable),
            "final_train_loss": float(result.training_loss),
            "loss_curve": curve,
            "resumed_from": Path(last).name if last else None,
        },
        "seconds": {
            "train": round(train_seconds, 2),
            "eval": round(eval_seconds, 2),
            "wall": round(time.time() - t_start, 2),
        },
        "threads": int(threads),
    }
    write_json(out / "metrics.json", metrics)
    write_run_info(out, cfg, model=model_name, K=int(K), backbone=str(backbone_dir), data_root=str(data_root))
    finished = trainer.state.global_step >= trainer.state.max_steps
    if finished and not wcfg["keep_checkpoints"] and ckpt_dir.is_dir():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return (metrics, mtp_model) if return_model else metrics


def _fmt(xs: list[float]) -> str:
    return "[" + ", ".join("nan" if (x is None or (isinstance(x, float) and math.isnan(x))) else f"{x:.3g}"
                           for x in xs) + "]"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True, help="model name under config key 'models'")
    ap.add_argument("--K", type=int, required=True, help="MTP depth (K - 1 modules)")
    ap.add_argument("--backbone", required=True, help="prepared backbone directory (results/<name>/models/<m>/base)")
    ap.add_argument("--data-root", required=True, help="results/<name>/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint-dir", default=None, help="Trainer checkpoints (default: OUT/checkpoints)")
    a = ap.parse_args(argv)
    cfg = load_config(a.config)
    m = run_warmup(cfg, a.model, a.K, a.backbone, a.data_root, a.out, threads=a.threads, checkpoint_dir=a.checkpoint_dir)
    print(f"[warmup] done: {m['train']['steps']} steps, {m['seconds']['wall']} s -> {a.out}", flush=True)


if __name__ == "__main__":
    main()
