"""MoT-G GRPO in the trainer (docs/method.md §9): mixture-of-token rollouts scored on the inputs they were fed.

Method ``mot_grpo`` (``spec["rollout"] == "mot"``) is GRPO (group advantages, token ratio, GRPO's loss and KL term)
whose rollouts come from ``HFEngine.generate_mixture`` (``mpo.mot``) with the config's ``mot`` section. The trainer
changes in three places, all behind ``Trainer.mot`` (None for every other method):

* ``sampling.py``: ``generate_mixture`` instead of ``generate``; the recorded mixtures go into ``batch.resp``
  (``mpo.mot.stack_rollouts``: response-aligned, so ``Batch.select`` and trimming keep them paired with the rows);
* ``scoring.py``: the old (and reference) log-probs are ``mot.mixture_logprobs`` of the backbone on exactly the
  fed inputs (K = 1), with entropy / top-1 / rank from the same logits;
* ``update.py``: the actor's log-probs likewise, with gradient.

The end-of-reasoning marker (``mot.end_marker``, e.g. ``</think>`` of the DeepSeek-R1-Distill models) is looked up
in the model's tokenizer: it is used when it encodes to token ids that decode back to it (one id for
``switch: argmax``). A model without it (the smoke / default models, Llama-3.2-Instruct) is mixture-decoded for the
whole response; ``summary.json`` records the ids used (``mot.end_ids``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mpo.train.errors import TrainSetupError

MOT_DEFAULTS = dict(k=2, support="topk", weighting="prob", combine="sum", nucleus=0.9, dirichlet_scale=1.0,
                    switch="argmax", form="sampled", end_marker="</think>")


@dataclass(frozen=True)
class MoTSetup:
    """The resolved ``mot`` section: the decoding settings (``mpo.mot.MoTConfig``) and the action log-prob form."""

    decode: object  # mpo.mot.MoTConfig
    form: str
    end_marker: str | None

    @property
    def combine(self) -> str:
        return self.decode.combine

    def summary(self) -> dict:
        return {**asdict(self.decode), "end_ids": list(self.decode.end_ids), "form": self.form,
                "end_marker": self.end_marker}


def end_marker_ids(tokenizer, marker: str | None, switch: str) -> tuple[int, ...]:
    """The marker's token ids in this tokenizer, or () when it has no such marker (module docstring)."""
    if not marker:
        return ()
    ids = list(tokenizer(marker, add_special_tokens=False)["input_ids"])
    if not ids or tokenizer.decode(ids) != marker or (switch == "argmax" and len(ids) != 1):
        return ()
    return tuple(int(i) for i in ids)


def mot_setup(cfg: dict, tokenizer, variant: str, world: int = 1) -> MoTSetup:
    """Check the settings a mixture rollout needs and resolve the ``mot`` section (errors name the key).

    One process only: the log-probs on the mixture inputs call the unwrapped backbone, outside a DDP / FSDP
    wrapper's forward (whose gradient synchronisation would then not run)."""
    from mpo.mot import ACTION_LOGPS, MoTConfig

    t = cfg["train"]
    if world > 1:
        raise TrainSetupError(f"variant '{variant}' (method mot_grpo) trains on one process only (got {world}): its "
                              "log-probs bypass the distributed wrapper; launch it with one device")
    if t["engine"] != "hf":
        raise TrainSetupError(f"variant '{variant}' (method mot_grpo) samples mixture-of-token rollouts, which only "
                              f"the hf engine implements: set train.engine: hf (got {t['engine']!r})")
    if float(t["top_p"]) != 1.0:
        raise TrainSetupError(f"variant '{variant}' (method mot_grpo): the mixtures use the full distribution, "
                              f"train.top_p must be 1 (got {t['top_p']})")
    sec = {**MOT_DEFAULTS, **(cfg.get("mot") or {})}
    if sec["form"] not in ACTION_LOGPS:
        raise TrainSetupError(f"mot.form must be one of {tuple(ACTION_LOGPS)}, got {sec['form']!r}")
    end_ids = end_marker_ids(tokenizer, sec["end_marker"], sec["switch"])
    try:
        decode = MoTConfig(**{k: v for k, v in sec.items() if k not in ("form", "end_marker")}, end_ids=end_ids)
    except (TypeError, ValueError) as e:
        raise TrainSetupError(f"config section 'mot': {e}") from e
    return MoTSetup(decode, sec["form"], sec["end_marker"])


def _logits(model, mb, setup: MoTSetup) -> torch.Tensor:
    """Float32 logits [n, T, V] of micro-batch ``mb``'s response positions on the recorded mixture inputs."""
    from mpo.mot import mixture_logits

    r = mb.resp
    return mixture_logits(model, mb.seq["input_ids"], mb.seq["attention_mask"], mb.prompt_len, r["mix_ids"],
                          r["mix_weights"], r["is_mixture"], combine=setup.combine)


def _action_logprobs(logits: torch.Tensor, mb, setup: MoTSetup, temperature: float) -> torch.Tensor:
    from mpo.mot import logprobs_from_logits

    r = mb.resp
    return logprobs_from_logits(logits, mb.seq["input_ids"], mb.seq["attention_mask"], mb.prompt_len, r["mix_ids"],
                                r["mix_weights"], r["is_mixture"], temperature=temperature, form=setup.form)


def actor_logprobs(model, mb, setup: MoTSetup, temperature: float) -> torch.Tensor:
    """The policy's action log-probs [n, T, 1] (K = 1) of micro-batch ``mb`` (``model``: the backbone; grad kept)."""
    return _action_logprobs(_logits(model, mb, setup), mb, setup, temperature)[..., None]


def score_stats(model, mb, setup: MoTSetup, temperature: float) -> dict[str, torch.Tensor]:
    """Scoring of one micro-batch: action log-probs [n, T, 1], and per response token the entropy of
    softmax(logits / temperature), whether the realised token is its argmax and how many entries beat it."""
    from mpo.algos import entropy_from_logits

    logits = _logits(model, mb, setup) / float(temperature)
    P, m = mb.prompt_len, mb.resp["mask"].bool()
    tokens = mb.seq["input_ids"][:, P:]
    tgt = logits.gather(-1, tokens[..., None])
    zero = torch.zeros((), device=logits.device)
    return {"logp": _action_logprobs(logits, mb, setup, 1.0)[..., None],
            "entropy": torch.where(m, entropy_from_logits(logits), zero),
            "top1": (logits.argmax(-1) == tokens) & m,
            "rank": torch.where(m, (logits > tgt).sum(-1), zero.long())}


def metrics(batch, dist) -> dict:
    """``mixture_frac``: the share of response positions decoded as mixtures (pooled over processes)."""
    m = batch.resp["mask"].bool()
    mixed = dist.sum(float((batch.resp["is_mixture"] & m).sum()))
    total = dist.sum(float(m.sum()))
    return {"mixture_frac": mixed / total if total else 0.0}
