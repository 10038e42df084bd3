"""Mixture-of-tokens generation (MoT-G) and its log-probs (docs/method.md §9).

During the reasoning segment the model is fed, at each step, a *mixture* of token embeddings instead of
the embedding of one sampled token::

    e_t = sum_j w_{t,j} E[a_{t,j}]        (combine "sum";  "max": the element-wise max over j of E[a_{t,j}])

where a_{t,1..k} is the *support* (the k most likely next tokens, ``support="topk"``; or k tokens drawn
from the policy without replacement, ``support="sample"``) and w_t its weights (the renormalised
probabilities ``"prob"``; ``"nucleus"``: only the smallest most-likely part of the support holding
``nucleus`` of its mass, renormalised; ``"dirichlet"``: w_t ~ Dir(dirichlet_scale * renormalised probs)).
Each step also emits one *representative* token y_t (the text of the response): with ``"topk"`` it is
drawn from Cat(w_t) over the support; with ``"sample"`` it is the first support draw, i.e. y_t ~ pi.
After the end-of-reasoning marker the response is decoded normally (``plain`` positions: e_t = E[y_t],
y_t ~ pi). Switch rules: ``"argmax"`` - the step at which the marker (one token id) is the most likely
next token is already a plain step; ``"sampled"`` - (the authors' code) the step whose representative
tokens complete the marker sequence is the last mixture step. No marker: mixture for the whole response.

Probabilities use softmax(logits / T); temperature 0 takes probabilities at T = 1 and replaces every draw
by an argmax (the most likely support token / token), Dirichlet weights excepted.

What a rollout records per position t (``MixtureRollout``): y_t, the support ids and weights (plain
positions: ids [y_t] * k, weights [1, 0, ...]), a mixture flag, log pi(y_t) and log pi(a_{t,j}) (at
temperature T, or 1 when T = 0). ``mixture_inputs_embeds`` rebuilds exactly the fed embeddings from
these records (from the current embedding matrix, so the policy gradient also reaches the embedding
rows of the support), and ``mixture_logprobs`` scores them.

The *action* log-prob of a position (``ACTION_LOGPS``; plain positions always use log pi(y_t)):
    sampled        log pi(y_t | e_<t)                                (default; the authors' default loss)
    topk_weighted  sum_j wt_j log pi(a_j | e_<t),  wt_j = pi(a_j) / sum_i pi(a_i)   (their "all tokens" loss)
    topk_mass      log sum_j pi(a_j | e_<t)        (the probability that the next draw lies in the support)
(sums over the support entries with recorded weight > 0). With k = 1 all three are log pi(y_t), and
with ``support="sample"`` and k = 1 the rollout is ordinary sampling token for token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from mpo.enums import MOT_COMBINES, MOT_SUPPORTS, MOT_SWITCH_RULES, MOT_WEIGHTINGS

__all__ = [
    "MoTConfig",
    "MixtureRollout",
    "SUPPORTS",
    "WEIGHTINGS",
    "COMBINES",
    "SWITCH_RULES",
    "ACTION_LOGPS",
    "action_logprobs",
    "mixture_embeddings",
    "mot_decode",
    "stack_rollouts",
    "mixture_inputs_embeds",
    "mixture_logits",
    "mixture_logprobs",
    "logprobs_from_logits",
]

SUPPORTS, WEIGHTINGS, COMBINES, SWITCH_RULES = MOT_SUPPORTS, MOT_WEIGHTINGS, MOT_COMBINES, MOT_SWITCH_RULES


@dataclass(frozen=True)
class MoTConfig:
    """Settings of the mixture phase (module docstring); errors name the ``mot.<field>`` config key."""

    k: int = 2
    support: str = "topk"
    weighting: str = "prob"
    combine: str = "sum"
    nucleus: float = 0.9
    dirichlet_scale: float = 1.0
    end_ids: tuple[int, ...] = ()
    switch: str = "argmax"

    def __post_init__(self):
        object.__setattr__(self, "end_ids", tuple(int(i) for i in self.end_ids))
        checks = [
            ("k", isinstance(self.k, int) and self.k >= 1, "a positive integer"),
            ("support", self.support in SUPPORTS, f"one of {SUPPORTS}"),
            ("weighting", self.weighting in WEIGHTINGS, f"one of {WEIGHTINGS}"),
            ("combine", self.combine in COMBINES, f"one of {COMBINES}"),
            ("nucleus", 0 < self.nucleus <= 1, "in (0, 1]"),
            ("dirichlet_scale", self.dirichlet_scale > 0, "> 0"),
            ("switch", self.switch in SWITCH_RULES, f"one of {SWITCH_RULES}"),
            ("end_ids", self.switch != "argmax" or len(self.end_ids) <= 1,
             "a single token id with switch 'argmax' (use switch 'sampled' for a multi-token marker)"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ValueError(f"mot.{key} must be {want}, got {getattr(self, key)!r}")


@dataclass
class MixtureRollout:
    """One response of a mixture rollout; tensors are on the CPU, one row per response token."""

    tokens: list[int]                # y_t (EOS kept when generated)
    mix_ids: torch.Tensor            # [L, k] long: the support a_{t,j}
    mix_weights: torch.Tensor        # [L, k] float32: w_{t,j} (sum 1)
    is_mixture: torch.Tensor         # [L] bool: True where e_t was a mixture
    token_logprob: torch.Tensor      # [L] float32: log pi(y_t) when it was generated
    support_logprob: torch.Tensor    # [L, k] float32: log pi(a_{t,j}) when it was generated


# ------------------------------------------------------------------------------------------------ actions
def _sampled(tok_lp, sup_lp, weights):
    return tok_lp


def _topk_weighted(tok_lp, sup_lp, weights):
    keep = weights > 0
    lp = torch.where(keep, sup_lp, torch.full_like(sup_lp, -torch.inf))
    wt = torch.softmax(lp, dim=-1)  # pi(a_j) / sum_i pi(a_i) over the kept support
    return (wt * torch.where(keep, sup_lp, torch.zeros_like(sup_lp))).sum(-1)


def _topk_mass(tok_lp, sup_lp, weights):
    return torch.logsumexp(torch.where(weights > 0, sup_lp, torch.full_like(sup_lp, -torch.inf)), dim=-1)


ACTION_LOGPS: dict[str, Callable] = {"sampled": _sampled, "topk_weighted": _topk_weighted, "topk_mass": _topk_mass}


def action_logprobs(form: str, tok_lp: torch.Tensor, sup_lp: torch.Tensor, weights: torch.Tensor,
                    is_mixture: torch.Tensor) -> torch.Tensor:
    """The action log-prob ``form`` (module docstring) from log pi(y) [...], log pi(a_j) [..., k], w [..., k]."""
    if form not in ACTION_LOGPS:
        raise ValueError(f"mot action log-prob {form!r} is unknown; expected one of {tuple(ACTION_LOGPS)}")
    return torch.where(is_mixture, ACTION_LOGPS[form](tok_lp, sup_lp, weights), tok_lp)


# ------------------------------------------------------------------------------------------------ mixtures
def mixture_embeddings(embed: torch.nn.Module, ids: torch.Tensor, weights: torch.Tensor, combine: str) -> torch.Tensor:
    """e = sum_j w_j E[a_j] (``"sum"``) or max_j E[a_j] (``"max"``): ids, weights [..., k] -> [..., d]."""
    e = embed(ids)  # [..., k, d]
    if combine == "max":
        return e.max(dim=-2).values
    return (e * weights.to(e.dtype).unsqueeze(-1)).sum(-2)


def _support(probs: torch.Tensor, plain: torch.Tensor, cfg: MoTConfig, greedy: bool) -> torch.Tensor:
    """Support ids [B, k]: the top k, or (``sample``) the plain draw followed by k - 1 draws without replacement."""
    if cfg.support == "topk" or greedy:
        return torch.topk(probs, cfg.k, dim=-1).indices  # greedy "sample": the plain argmax is the top 1
    if cfg.k == 1:
        return plain[:, None]
    rest = probs.scatter(1, plain[:, None], 0.0)
    enough = (rest > 0).sum(-1, keepdim=True) >= cfg.k - 1
    rest = torch.where(enough, rest, torch.ones_like(rest).scatter(1, plain[:, None], 0.0))
    return torch.cat([plain[:, None], torch.multinomial(rest, cfg.k - 1)], dim=-1)


def _weights(sup_p: torch.Tensor, cfg: MoTConfig) -> torch.Tensor:
    """Mixture weights [B, k] from the support's probabilities [B, k]."""
    w = sup_p / sup_p.sum(-1, keepdim=True)
    if cfg.k == 1:
        return torch.ones_like(w)
    if cfg.weighting == "nucleus":
        order = torch.argsort(w, dim=-1, descending=True)
        ws = w.gather(-1, order)
        keep = torch.zeros_like(w, dtype=torch.bool).scatter(-1, order, (ws.cumsum(-1) - ws) < cfg.nucleus)
        w = torch.where(keep, w, torch.zeros_like(w))
    elif cfg.weighting == "dirichlet":
        w = torch.distributions.Dirichlet((cfg.dirichlet_scale * w).clamp(min=1e-6)).sample()
    return w / w.sum(-1, keepdim=True)


# ------------------------------------------------------------------------------------------------ rollout
def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, as Hugging Face generation builds them (padding at 0)."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def _one_hot_first(B: int, k: int, device) -> torch.Tensor:
    """Weights [1, 0, ..., 0] per row: the record of a plain position."""
    w = torch.zeros(B, k, device=device)
    w[:, 0] = 1.0
    return w


def _mixture_step(probs, plain, cfg: MoTConfig, greedy: bool):
    """Support ids [B, k], weights [B, k] and representative token [B] of a mixture step."""
    ids = _support(probs, plain, cfg, greedy)
    w = _weights(probs.gather(1, ids), cfg)
    if cfg.support == "sample":
        rep = ids[:, 0]
    elif greedy or cfg.k == 1:
        rep = ids.gather(1, w.argmax(-1, keepdim=True))[:, 0]
    else:
        rep = ids.gather(1, torch.multinomial(w, 1))[:, 0]
    return ids, w, rep


@torch.no_grad()
def mot_decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
               temperature: float, cfg: MoTConfig, eos_ids: Iterable[int], pad_id: int) -> list[MixtureRollout]:
    """Decode every row of a left-padded prompt batch [B, P] with mixture inputs (module docstring).

    Draws come from the global RNG (the caller forks and seeds it). Per step: one ``multinomial`` over the
    batch for the plain token (as ``model.generate`` draws), then the mixture's own draws. Rows stop after an
    EOS; decoding stops when every row has. Returns one ``MixtureRollout`` per row.
    """
    greedy = temperature == 0
    scale = 1.0 if greedy else float(temperature)
    embed = model.get_input_embeddings()
    eos = torch.tensor(sorted(set(int(i) for i in eos_ids)), dtype=torch.long, device=input_ids.device)
    B, k = input_ids.shape[0], cfg.k
    am = attention_mask.long()
    out = model(input_ids=input_ids, attention_mask=am, position_ids=_positions(am), use_cache=True, logits_to_keep=1)
    past, pos = out.past_key_values, _positions(am)[:, -1]
    mixing = torch.ones(B, dtype=torch.bool, device=input_ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    end = torch.tensor(cfg.end_ids, dtype=torch.long, device=input_ids.device)
    steps: list[tuple] = []
    for _ in range(max_new_tokens):
        scaled = out.logits[:, -1].float() / scale
        probs, logp = torch.softmax(scaled, -1), torch.log_softmax(scaled, -1)
        plain = probs.argmax(-1) if greedy else torch.multinomial(probs, 1)[:, 0]
        if cfg.switch == "argmax" and len(end):
            mixing = mixing & (probs.argmax(-1) != end[0])
        ids, w, token = plain[:, None].expand(B, k), _one_hot_first(B, k, probs.device), plain
        if mixing.any():
            m_ids, m_w, rep = _mixture_step(probs, plain, cfg, greedy)
            ids, w = torch.where(mixing[:, None], m_ids, ids), torch.where(mixing[:, None], m_w, w)
            token = torch.where(mixing, rep, plain)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        fed_mix = mixing.clone()
        steps.append((token, ids, w, fed_mix, logp.gather(1, token[:, None])[:, 0], logp.gather(1, ids), done))
        done = done | torch.isin(token, eos)
        if done.all():
            break
        if cfg.switch == "sampled" and len(end) and len(steps) >= len(end):
            tail = torch.stack([s[0] for s in steps[-len(end):]], dim=1)
            mixing = mixing & ~(tail == end).all(1)
        e = torch.where(fed_mix[:, None], mixture_embeddings(embed, ids, w, cfg.combine), embed(token))
        am, pos = torch.cat([am, am.new_ones(B, 1)], dim=1), pos + 1
        out = model(inputs_embeds=e[:, None], attention_mask=am, position_ids=pos[:, None], past_key_values=past,
                    use_cache=True)
        past = out.past_key_values
    return _split_rows(steps)


def _split_rows(steps: list[tuple]) -> list[MixtureRollout]:
    token, ids, w, mix, tok_lp, sup_lp, was_done = (torch.stack(x, dim=1).cpu() for x in zip(*steps))
    rows = []
    for b in range(token.shape[0]):
        L = int((~was_done[b]).sum())
        rows.append(MixtureRollout(token[b, :L].tolist(), ids[b, :L].clone(), w[b, :L].float().clone(),
                                   mix[b, :L].clone(), tok_lp[b, :L].float().clone(), sup_lp[b, :L].float().clone()))
    return rows


# ------------------------------------------------------------------------------------------------ scoring
def stack_rollouts(rollouts: list[MixtureRollout], T: int | None = None) -> dict[str, torch.Tensor]:
    """Response-aligned tensors of N rollouts, padded to T (default: the longest) columns.

    Keys: ``mix_ids`` [N, T, k] long, ``mix_weights`` [N, T, k], ``is_mixture`` [N, T] bool, ``token_logprob``
    [N, T], ``support_logprob`` [N, T, k]. Padding: ids 0, weights [1, 0, ...], flag False, log-probs 0. Row i
    pairs with ``mpo.train.batch.collate``'s row i (same prompts and ``r.tokens`` as responses).
    """
    if not rollouts:
        raise ValueError("stack_rollouts: no rollouts")
    k = rollouts[0].mix_ids.shape[1]
    T = max(max(len(r.tokens) for r in rollouts), 1) if T is None else int(T)
    N = len(rollouts)
    out = {"mix_ids": torch.zeros(N, T, k, dtype=torch.long),
           "mix_weights": _one_hot_first(N * T, k, "cpu").view(N, T, k),
           "is_mixture": torch.zeros(N, T, dtype=torch.bool), "token_logprob": torch.zeros(N, T),
           "support_logprob": torch.zeros(N, T, k)}
    for i, r in enumerate(rollouts):
        L = len(r.tokens)
        if L > T:
            raise ValueError(f"stack_rollouts: rollout {i} has {L} tokens, more than T = {T}")
        for key, val in (("mix_ids", r.mix_ids), ("mix_weights", r.mix_weights), ("is_mixture", r.is_mixture),
                         ("token_logprob", r.token_logprob), ("support_logprob", r.support_logprob)):
            out[key][i, :L] = val
    return out


def mixture_inputs_embeds(model, input_ids: torch.Tensor, prompt_len: int, mix_ids: torch.Tensor,
                          mix_weights: torch.Tensor, is_mixture: torch.Tensor, combine: str = "sum") -> torch.Tensor:
    """The embeddings the rollout fed: [N, P+T, d] from ids [N, P+T] and response-aligned records [N, T(, k)].

    Column P + t (the input after response token t) is the recorded mixture where ``is_mixture[:, t]``, else
    E[input_ids[:, P + t]]. Built from the model's current embedding matrix (differentiable).
    """
    embed = model.get_input_embeddings()
    e = embed(input_ids)
    P, T = int(prompt_len), mix_ids.shape[1]
    mix = mixture_embeddings(embed, mix_ids, mix_weights, combine)
    resp = torch.where(is_mixture[..., None], mix, e[:, P : P + T])
    return torch.cat([e[:, :P], resp, e[:, P + T :]], dim=1)


def mixture_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                   mix_ids: torch.Tensor, mix_weights: torch.Tensor, is_mixture: torch.Tensor,
                   combine: str = "sum") -> torch.Tensor:
    """Float32 logits [N, T, V] of the response positions (row t predicts response token t), given exactly the
    inputs the rollout fed (arguments as :func:`mixture_logprobs`). Differentiable in the model's parameters."""
    P, T = int(prompt_len), mix_ids.shape[1]
    if input_ids.shape[1] != P + T:
        raise ValueError(f"mixture_logits: input_ids has {input_ids.shape[1]} columns, expected P + T = {P} + {T}")
    embeds = mixture_inputs_embeds(model, input_ids, P, mix_ids, mix_weights, is_mixture, combine)
    am = attention_mask.long()
    return model(inputs_embeds=embeds, attention_mask=am, position_ids=_positions(am),
                 logits_to_keep=T + 1).logits[:, :T].float()


def mixture_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                     mix_ids: torch.Tensor, mix_weights: torch.Tensor, is_mixture: torch.Tensor, *,
                     temperature: float = 1.0, combine: str = "sum", form: str = "sampled") -> torch.Tensor:
    """Action log-probs [N, T] of the response tokens, given exactly the inputs the rollout fed.

    ``input_ids``, ``attention_mask``: [N, P+T], prompts left-padded to P, responses from column P (the layout
    of ``mpo.train.batch.collate``); records [N, T(, k)] from ``stack_rollouts``. ``temperature``: logits are
    divided by it (use 1 for a greedy rollout). ``form``: a key of ``ACTION_LOGPS``. Zero where
    ``attention_mask[:, P:]`` is 0. Differentiable in the model's parameters; the caller micro-batches.
    """
    logits = mixture_logits(model, input_ids, attention_mask, prompt_len, mix_ids, mix_weights, is_mixture, combine)
    return logprobs_from_logits(logits, input_ids, attention_mask, prompt_len, mix_ids, mix_weights, is_mixture,
                                temperature=temperature, form=form)


def logprobs_from_logits(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         prompt_len: int, mix_ids: torch.Tensor, mix_weights: torch.Tensor, is_mixture: torch.Tensor,
                         *, temperature: float = 1.0, form: str = "sampled") -> torch.Tensor:
    """The action log-probs [N, T] of :func:`mixture_logprobs` from :func:`mixture_logits`' logits [N, T, V]."""
    P = int(prompt_len)
    logp = torch.log_softmax(logits / float(temperature), dim=-1)
    tok_lp = logp.gather(-1, input_ids[:, P:, None])[..., 0]
    sup_lp = logp.gather(-1, mix_ids)
    out = action_logprobs(form, tok_lp, sup_lp, mix_weights.to(sup_lp.dtype), is_mixture)
    return torch.where(attention_mask[:, P:] != 0, out, torch.zeros_like(out))
