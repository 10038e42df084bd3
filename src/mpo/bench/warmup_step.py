"""**warmup-step**: seconds per MTP warm-up step (the warm-up's loss, ``MTPModel.mtp_ce_loss``, forward + backward +
AdamW on the modules, frozen backbone)."""

from __future__ import annotations

import time

from mpo.bench.common import setup_inputs, spread


def warmup_step(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mpo.mtp import MTPModel
    from mpo.warmup import PadCollator, load_warmup_records, render_example

    cfg, p, device, tok = setup_inputs(args)
    w = cfg["warmup"]
    recs = load_warmup_records(p["data_root"], [d for d in w["datasets"] if d in cfg["datasets"]])
    examples = [e for e in (render_example(tok, r, w["max_length"], w["loss_on"]) for r in recs[:4 * w["batch_size"]])
                if e is not None][: w["batch_size"]]
    batch = {k: v.to(device) for k, v in PadCollator(tok.pad_token_id)(examples).items()}
    bb = AutoModelForCausalLM.from_pretrained(p["base"], dtype=torch.float32)
    mm = MTPModel.from_backbone(bb, args.K).to(device)
    mm.backbone.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in mm.mtp.parameters() if q.requires_grad], lr=w["lr"])
    times = []
    for it in range(cfg["bench"]["warmup_iters"] + (args.repeats or cfg["bench"]["repeats"])):
        t0 = time.perf_counter()
        loss = mm.mtp_ce_loss(batch["input_ids"], batch.get("attention_mask"), loss_mask=batch.get("loss_mask"))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if it >= cfg["bench"]["warmup_iters"]:
            times.append(time.perf_counter() - t0)
    return {"model": p["model"], "K": args.K, "batch_size": len(examples),
            "tokens": int(batch["attention_mask"].sum()), "device": device, **spread(times)}
