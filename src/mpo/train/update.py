"""The update phase: ``ppo_epochs`` passes of shuffled mini-batches; each mini-batch is ``accum`` micro-batches of
forward + backward (losses scaled by their shares, ``loss.py``, so the aggregation is exact over the whole
mini-batch and across processes), then gradient clipping (backbone, MTP modules and critic separately), a
finiteness check and one optimizer step per model. MoT-G GRPO (``tr.mot``): the actor's log-probs are the
backbone's on the recorded mixture inputs (``mixture.py``)."""

from __future__ import annotations

import torch

from mpo import algos
from mpo.train import methods, mixture
from mpo.train.fsdp import clip_grad_norm
from mpo.train.loss import aux_lambdas, compose_loss, loss_shares, module_token_counts
from mpo.train.metrics import UpdateLog, update_metrics
from mpo.train.sampling import sub_seed


def minibatch_order(n: int, shuffle: bool, seed: int, step: int, epoch: int) -> torch.Tensor:
    """The rows' order in one epoch (seeded per step and epoch)."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(sub_seed(seed, step, epoch, 7919))
    return torch.randperm(n, generator=g)


def ppo_update(tr, batch, step: int) -> dict:
    """All epochs and mini-batches of one step's update; returns the pooled update metrics. ``tr``: the Trainer."""
    sz, t = tr.sizes, tr.tcfg
    log = UpdateLog()
    tr.actor.train()
    for epoch in range(t["ppo_epochs"]):
        perm = minibatch_order(batch.size, t["shuffle"], tr.seed, step, epoch)
        for mb_i in range(sz.n_mini):
            rows = perm[mb_i * sz.mini_local : (mb_i + 1) * sz.mini_local].to(tr.device)
            minibatch_step(tr, batch, rows, step, log, first=epoch == 0 and mb_i == 0)
    return update_metrics(log, tr.dist, tr.spec["ratio"])


def minibatch_step(tr, batch, rows: torch.Tensor, step: int, log: UpdateLog, first: bool) -> None:
    """Forward + backward over the micro-batches of ``rows``, then the optimizer steps."""
    spec, sz, dist = tr.spec, tr.sizes, tr.dist
    mini_tokens = float(dist.reduce(batch.resp["mask"].index_select(0, rows).sum().float().reshape(1)).item())
    mini_rows = dist.sum(float(len(rows)))
    mini_module_tokens = dist.reduce(module_token_counts(batch.resp["mask"].index_select(0, rows), spec["K"])) \
        if tr.want_aux else None
    logged = {"policy_loss": 0.0, "kl_loss": 0.0, "mtp_aux_loss": 0.0, "value_loss": 0.0}
    for start in range(0, len(rows), sz.micro):
        micro = batch.select(rows[start : start + sz.micro])
        m = micro.resp["mask"]
        shares = loss_shares(float(m.sum()), len(m), mini_tokens, mini_rows, dist.world, sz.accum)
        terms, extra = microbatch_backward(tr, micro, shares, step, mini_module_tokens)
        norm = dist.world * sz.accum  # undo the shares' scaling for logging
        for key, (value, share) in terms.items():
            logged[key] += float(value.detach()) * float(share) / norm
        log_microbatch(micro, extra, spec["ratio"], log, first)
    optimizer_step(tr, step, log)
    log.add("policy_loss", dist.sum(logged["policy_loss"]))
    if float(spec["kl_loss_coef"]) > 0:
        log.add("kl_loss", dist.sum(logged["kl_loss"]))
    if tr.want_aux:
        log.add("mtp_aux_loss", dist.sum(logged["mtp_aux_loss"]))
    if tr.critic is not None:
        log.add("value_loss", dist.sum(logged["value_loss"]))


def microbatch_backward(tr, micro, shares: tuple[float, float], step: int,
                        mini_module_tokens: torch.Tensor | None = None) -> tuple[dict, dict]:
    """One micro-batch's forward and backward for the actor (and the critic). ``mini_module_tokens``: the
    mini-batch's CE token count per MTP module (with the auxiliary loss), which weights it (``loss.aux_lambdas``).

    Returns ({loss name: (term, its share)}, what the metrics need: policy metrics ``pm``, value metrics ``vm``,
    the actor output ``out``, ``logp`` and the two log ratios).
    """
    spec, acc = tr.spec, tr.acc
    token_share, row_share = shares
    m = micro.resp["mask"]
    ids, am = micro.seq["input_ids"], micro.seq["attention_mask"]
    row_agg = spec["loss_agg"] == "seq-mean-token-mean"
    kw = dict(token_share=token_share, row_share=row_share, aux_share=1.0, row_agg=row_agg,
              kl_coef=float(spec["kl_loss_coef"]), aux_coef=float(spec["mtp_aux_coef"]))
    lambdas = None
    if tr.want_aux:  # token-weighted over the whole mini-batch, invariant to the micro-batch size
        micro_counts = module_token_counts(m, spec["K"])
        lambdas = aux_lambdas(acc.unwrap_model(tr.actor).lambdas, micro_counts, mini_module_tokens,
                              tr.dist.world, tr.sizes.accum)
    models = [tr.actor] + ([tr.critic] if tr.critic is not None else [])
    with acc.accumulate(*models):
        with acc.autocast():
            if tr.mot is None:
                out = tr.actor(ids, am, logprob_mask=micro.logprob_mask(), mtp_grad=spec["mtp_grad"] or "hidden",
                               mtp_ce=tr.want_aux, lambdas=lambdas, temperature=tr.lp_temperature)
                logp = micro.response_view(out.logprobs)
            else:  # MoT-G: the backbone on the recorded mixture inputs (mixture.py)
                out = None
                logp = mixture.actor_logprobs(acc.unwrap_model(tr.actor).backbone, micro, tr.mot, tr.lp_temperature)
            pg, kl, pm, policy_lr, token_lr = methods.policy_loss(
                spec, logp=logp, old_logp=micro.resp["old_logp"], mask=m, advantages=micro.resp["adv"],
                weights=tr.ratio_weights, ref_logp=micro.resp.get("ref_logp"))
        aux = out.mtp_ce if tr.want_aux else None
        for term, what in ((pg, "policy loss"), (kl, "KL loss"), (aux, "MTP auxiliary loss")):
            if term is not None:
                tr.check_finite(term.detach(), what, step)
        acc.backward(compose_loss(policy=pg, kl=kl, aux=aux, **kw)["actor"])
        share = row_share if row_agg else token_share
        terms = {"policy_loss": (pg, share), "kl_loss": (kl, share), "mtp_aux_loss": (aux, 1.0)}
        extra = {"pm": pm, "out": out, "logp": logp, "policy_lr": policy_lr, "token_lr": token_lr, "vm": None,
                 "module_tokens": micro_counts.tolist() if tr.want_aux else None}
        if tr.critic is not None:
            with acc.autocast():
                v = micro.response_view(tr.critic(ids, am)).float()
                vf, extra["vm"] = algos.clipped_value_loss(v, micro.resp["old_values"], micro.resp["returns"], m,
                                                           tr.tcfg["value_clip"])
            tr.check_finite(vf.detach(), "value loss", step)
            acc.backward(compose_loss(value=vf, **kw)["critic"])
            terms["value_loss"] = (vf, token_share)
    return {k: v for k, v in terms.items() if v[0] is not None}, extra


def log_microbatch(micro, extra: dict, ratio_kind: str, log: UpdateLog, first: bool) -> None:
    """Token-weighted policy / value metrics of one micro-batch, its log ratios and per-module CE."""
    m = micro.resp["mask"]
    n_tokens = float(m.sum())
    if extra["out"] is not None and extra["out"].mtp_ce_per_module is not None:  # token-weighted means over the update
        for k, (ce, n) in enumerate(zip(extra["out"].mtp_ce_per_module.tolist(), extra["module_tokens"]), start=1):
            log.add(f"mtp_ce/k{k}", ce, n)
    if extra["vm"] is not None:
        log.add("vf_clip_frac", extra["vm"]["vf_clip_frac"], n_tokens)
    for key in ("clip_frac", "clip_frac_low", "clip_frac_high"):
        log.add(key, extra["pm"][key], n_tokens)
    log.add_ratios(m, extra["policy_lr"], extra["token_lr"], first)
    if ratio_kind == "sequence":
        log.seq_log_ratio.append(
            algos.sequence_log_ratio(extra["logp"][..., 0].detach(), micro.resp["old_logp"][..., 0], m))


def optimizer_step(tr, step: int, log: UpdateLog) -> None:
    """Clip (backbone, MTP modules and critic separately), check finiteness, step and zero each optimizer."""
    acc, clip = tr.acc, tr.tcfg["grad_clip"]
    assert acc.sync_gradients, "a mini-batch must end on a gradient-sync boundary"
    actor = acc.unwrap_model(tr.actor)
    gn = clip_grad_norm(acc, actor.backbone.parameters(), clip)  # None under DeepSpeed (it clips itself)
    if gn is not None:
        tr.check_finite(torch.as_tensor(gn), "policy gradient norm", step)
        log.grad_norms.append(float(gn))
    mtp_params = [p for p in actor.mtp.parameters() if p.grad is not None]
    if mtp_params:
        mgn = clip_grad_norm(acc, mtp_params, clip)
        if mgn is not None:
            tr.check_finite(torch.as_tensor(mgn), "MTP gradient norm", step)
            log.mtp_norms.append(float(mgn))
    tr.opt.step()
    tr.opt.zero_grad(set_to_none=True)
    if tr.critic is not None:
        cgn = clip_grad_norm(acc, tr.critic.parameters(), clip)
        if cgn is not None:
            tr.check_finite(torch.as_tensor(cgn), "critic gradient norm", step)
            log.critic_norms.append(float(cgn))
        tr.critic_opt.step()
        tr.critic_opt.zero_grad(set_to_none=True)
