"""MTP warm-up (docs/method.md §2; paper Section 5.7 / Appendix A.2): train the K-1 MTP modules on a frozen backbone.

Data: the shuffled concatenation of the train splits of ``warmup.datasets`` (default gsm8k + math), each record
rendered with the model's chat template as the user prompt followed by an assistant turn holding the reference
solution (``solution``; when null: ``The answer is \\boxed{<answer>}.``). ``warmup.heldout`` shuffled examples are
held out for evaluation (at most a quarter of the examples), the rest (capped at ``warmup.max_examples``) are
trained on for ``warmup.epochs``.

Init: modules from ``MTPModel.from_backbone`` (``mtp.proj_init``, default identity ``[I | 0]``); with
``warmup.calibrate_input_norm`` (default) each module's RMSNorm_a weight is then set to the median RMS of its input
state on the first training batch (:meth:`MTPModel.calibrate_input_norms`), so the untrained module k applies the
copied last layer to a residual stream of the scale it was trained on. "before" metrics are of this init.

Loss: the auxiliary MTP cross-entropy sum_k lambda_k CE_k (``lambdas``, the per-module CE weights:
``mtp.lambda_first`` * ``mtp.lambda_decay``^(k-1); not the block-ratio weights w_k of docs/method.md §3 nor the RL
coefficient ``mtp_aux_coef`` of §4), CE_k = mean over positions of module k's cross-entropy of token s+k+1. ``warmup.loss_on: response`` (default) counts only positions whose
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
import contextlib
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

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
        ctx = torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype) if autocast_dtype else None
        with ctx or contextlib.nullcontext():
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


# ------------------------------------------------------------------------------------------------ main
@dataclass
class _Setup:
    """What every step of :func:`run_warmup` reads: the config sections, seed, device / dtype, output paths."""

    wcfg: dict
    mcfg: dict
    seed: int
    device: str
    dtype: torch.dtype
    out: Path
    ckpt_dir: Path

    @property
    def use_bf16(self) -> bool:
        return self.device.startswith("cuda") and self.dtype == torch.bfloat16

    @property
    def use_fp16(self) -> bool:
        return self.device.startswith("cuda") and self.dtype == torch.float16

    @property
    def autocast_dtype(self):
        return self.dtype if (self.use_bf16 or self.use_fp16) else None


@dataclass
class _Data:
    pad_id: int
    train: list[dict]
    heldout: list[dict]
    dropped: int


def _setup(cfg: dict, model_name: str, K: int, threads: int, out: str | Path, checkpoint_dir) -> _Setup:
    """Check the arguments against the config, set threads and seeds, resolve device / dtype, create ``out``."""
    set_threads(threads)
    if model_name not in cfg["models"]:
        raise ValueError(f"model {model_name!r} is not under config key 'models' (have {sorted(cfg['models'])})")
    if int(K) < 2:
        raise ValueError(f"warm-up needs K >= 2 (K - 1 modules), got K={K}")
    seed = int(cfg["seed"])
    seed_everything(seed)
    device = resolve_device(cfg["device"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _Setup(wcfg=cfg["warmup"], mcfg=cfg["mtp"], seed=seed, device=device,
                  dtype=resolve_dtype(cfg["dtype"], device), out=out,
                  ckpt_dir=Path(checkpoint_dir) if checkpoint_dir else out / "checkpoints")


def _load_data(st: _Setup, tokenizer, data_root: str | Path) -> _Data:
    """Shuffled, rendered warm-up examples split into held-out and train (``warmup.heldout`` /
    ``warmup.max_examples``)."""
    wcfg = st.wcfg
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    records = load_warmup_records(data_root, list(wcfg["datasets"]))
    random.Random(st.seed).shuffle(records)
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
    return _Data(pad_id=pad_id, train=train, heldout=heldout, dropped=dropped)


def _build_model(st: _Setup, backbone_dir: str | Path, K: int) -> MTPModel:
    """Frozen backbone + K-1 fresh modules (fp32 master weights under bf16 / fp16 autocast), on the device.
    ``lambdas``: the auxiliary CE's per-module weights from ``mtp.lambda_first`` / ``mtp.lambda_decay``."""
    from transformers import AutoModelForCausalLM

    mcfg = st.mcfg
    backbone = AutoModelForCausalLM.from_pretrained(backbone_dir, dtype=st.dtype)
    backbone.requires_grad_(False)
    mtp_model = MTPModel.from_backbone(
        backbone, int(K), proj_init=mcfg["proj_init"], lambdas=mtp_lambdas(int(K), mcfg["lambda_first"],
                                                                          mcfg["lambda_decay"]),
        chunk_size=int(mcfg["logit_chunk"]), checkpoint_min_mb=float(mcfg["checkpoint_min_mb"]),
        share_head=bool(mcfg["share_head"]),
    )
    mtp_model.mtp.float()
    if not st.wcfg["train_heads"]:
        for module in mtp_model.mtp:
            module.head.requires_grad_(False)
    return mtp_model.to(st.device)


def _calibrate(st: _Setup, mtp_model: MTPModel, data: _Data) -> list[float] | None:
    """``warmup.calibrate_input_norm``: RMSNorm_a of each module := the median RMS of its input on the first
    training batch (None when off)."""
    if not st.wcfg["calibrate_input_norm"]:
        return None
    batch = PadCollator(data.pad_id)(data.train[: int(st.wcfg["batch_size"])])
    calib = {k: v.to(st.device) for k, v in batch.items()}
    scales = mtp_model.calibrate_input_norms(calib["input_ids"], calib["attention_mask"])
    print(f"[warmup] RMSNorm_a calibrated to input RMS {_fmt(scales)}", flush=True)
    return scales


def _evaluate_logged(st: _Setup, mtp_model: MTPModel, data: _Data, label: str) -> tuple[dict, float]:
    """Held-out CE / top-1 / mean rank per predictor, printed; returns (them, seconds taken)."""
    t0 = time.time()
    res = evaluate_modules(mtp_model, data.heldout, data.pad_id, int(st.wcfg["eval_batch_size"]), st.device,
                           st.autocast_dtype)
    seconds = time.time() - t0
    print(f"[warmup] held-out {label} ce={_fmt(res['ce'])} top1={_fmt(res['top1'])} "
          f"rank={_fmt(res['mean_rank'])}", flush=True)
    return res, seconds


def _training_arguments(st: _Setup):
    from transformers import TrainingArguments

    wcfg, cuda = st.wcfg, st.device.startswith("cuda")
    return TrainingArguments(
        output_dir=str(st.ckpt_dir),
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
        bf16=st.use_bf16,
        fp16=st.use_fp16,
        use_cpu=not cuda,
        seed=st.seed,
        data_seed=st.seed,
        remove_unused_columns=False,
        label_names=[],
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        disable_tqdm=False,
        push_to_hub=False,
    )


def _interrupt_callback(at_step: int):
    """A Trainer callback that stops training after optimizer step ``at_step``, as a kill would (tests)."""
    from transformers import TrainerCallback

    class _Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= at_step:
                control.should_training_stop = True
            return control

    return _Interrupt()


def _train(st: _Setup, mtp_model: MTPModel, data: _Data, interrupt_at_step: int | None):
    """Trainer run on the modules, resuming from the last checkpoint in ``st.ckpt_dir`` when there is one;
    returns (trainer, train result, the checkpoint resumed from | None, seconds)."""
    from transformers.trainer_utils import get_last_checkpoint

    callbacks = [_interrupt_callback(interrupt_at_step)] if interrupt_at_step else []
    trainer = _make_trainer_class()(
        model=WarmupWrapper(mtp_model), args=_training_arguments(st), train_dataset=_ListDataset(data.train),
        data_collator=PadCollator(data.pad_id), callbacks=callbacks,
    )
    last = get_last_checkpoint(str(st.ckpt_dir)) if st.ckpt_dir.is_dir() else None
    if last:
        print(f"[warmup] resuming from {last}", flush=True)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    return trainer, result, last, time.time() - t0


def _metrics(st: _Setup, cfg: dict, model_name: str, K: int, mtp_model: MTPModel, data: _Data, *, scales, before,
             after, trainer, result, last, seconds: dict, threads: int) -> dict:
    """The content of ``metrics.json``."""
    wcfg, mcfg = st.wcfg, st.mcfg
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    curve = [
        {"step": int(h["step"]), "loss": float(h["loss"]), "epoch": float(h.get("epoch", 0.0))}
        for h in trainer.state.log_history if "loss" in h
    ]
    return {
        "model": model_name,
        "K": int(K),
        "scale": cfg["scale"],
        "device": st.device,
        "dtype": str(st.dtype).replace("torch.", ""),
        "lambdas": mtp_model.lambdas,
        "proj_init": mcfg["proj_init"],
        "input_norm_scales": scales,
        "loss_on": wcfg["loss_on"],
        "train_heads": bool(wcfg["train_heads"]),
        "predictors": ["backbone"] + [f"module_{k}" for k in range(1, int(K))],
        "heldout": {"before": before, "after": after, "examples": len(data.heldout)},
        "train": {
            "examples": len(data.train),
            "dropped_examples": data.dropped,
            "loss_tokens": sum(sum(e["loss_mask"]) for e in data.train),
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
        "seconds": seconds,
        "threads": int(threads),
    }


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
    from transformers import AutoTokenizer

    t_start = time.time()
    st = _setup(cfg, model_name, K, threads, out, checkpoint_dir)
    data = _load_data(st, AutoTokenizer.from_pretrained(backbone_dir), data_root)
    mtp_model = _build_model(st, backbone_dir, K)
    scales = _calibrate(st, mtp_model, data)
    before, eval_before_s = _evaluate_logged(st, mtp_model, data, "before:")
    trainer, result, last, train_seconds = _train(st, mtp_model, data, interrupt_at_step)
    after, eval_after_s = _evaluate_logged(st, mtp_model, data, "after: ")

    mtp_model.save_modules(st.out, extra_config={"warmup": {"model": model_name, "steps": trainer.state.global_step,
                                                             "train_examples": len(data.train)}})
    seconds = {"train": round(train_seconds, 2), "eval": round(eval_before_s + eval_after_s, 2),
               "wall": round(time.time() - t_start, 2)}
    metrics = _metrics(st, cfg, model_name, K, mtp_model, data, scales=scales, before=before, after=after,
                       trainer=trainer, result=result, last=last, seconds=seconds, threads=threads)
    write_json(st.out / "metrics.json", metrics)
    write_run_info(st.out, cfg, model=model_name, K=int(K), backbone=str(backbone_dir), data_root=str(data_root))
    finished = trainer.state.global_step >= trainer.state.max_steps
    if finished and not st.wcfg["keep_checkpoints"] and st.ckpt_dir.is_dir():
        shutil.rmtree(st.ckpt_dir, ignore_errors=True)
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
