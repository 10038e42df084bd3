"""``MTPModel``: a causal LM backbone plus K-1 MTP modules, and what one forward returns (``MTPOutput``).

One forward = the named steps of :meth:`MTPModel.forward`: which (position, predictor) pairs are wanted
(:func:`prediction_rows`), one backbone pass (:meth:`MTPModel.backbone_states`), the backbone's own column (k = 0),
the module columns under the gradient regime (:func:`mpo.mtp.routing.regime_terms`), the auxiliary CE
(:func:`mpo.mtp.modules.auxiliary_ce`), and the scatter back to [B, S, K].
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpo.mtp import io as mtp_io
from mpo.mtp.logprobs import DEFAULT_CHUNK, checkpoint_wanted, chunked_token_logprobs
from mpo.mtp.modules import (
    MTPModule, auxiliary_ce, check_architecture, mtp_lambdas, position_ids_from_mask, shifted,
)
from mpo.mtp.routing import MTP_GRAD_MODES, ModuleChain, _Capture, regime_terms

_OUTPUT_FLAGS = ("return_entropy", "return_hidden", "return_stats", "mtp_ce")


@dataclass
class MTPOutput:
    """Everything one :meth:`MTPModel.forward` call computes (sequence coordinates, S = input length).

    logprobs: [B, S, K] float32; [b, s, k] = log p_k(input_ids[b, s+k+1] | ...) by predictor k (0 = backbone) at
        position s; exactly 0 where ``valid`` is False.
    valid: [B, S, K] bool; position s is asked for (``logprob_mask``, default ``attention_mask``), and token
        s+k+1 exists and is attended (``attention_mask`` 1).
    entropy: [B, S] float32 entropy of the backbone's next-token distribution (0 where ``valid[..., 0]`` is False).
    hidden: [B, S, d] the backbone's last hidden state after its final norm (for value heads / critics).
    top1: [B, S, K] bool, the realised token is the argmax of predictor k (Figure 7); False where invalid.
    rank: [B, S, K] int64, number of vocab entries with a strictly larger logit than the realised token (0 = top).
    mtp_ce: scalar, the auxiliary CE sum_k lambda_k CE_k of the modules on detached backbone states (grads reach
        MTP params only; ``lambdas``: the per-module CE weights, docs/method.md §2).
    mtp_ce_per_module: [K-1] detached CE_k (mean over valid positions of module k).
    """

    logprobs: torch.Tensor
    valid: torch.Tensor
    entropy: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    top1: torch.Tensor | None = None
    rank: torch.Tensor | None = None
    mtp_ce: torch.Tensor | None = None
    mtp_ce_per_module: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def prediction_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, want: torch.Tensor, K: int, *,
                    backbone: bool = True, modules: bool = True):
    """valid [B, S, K] (position s wanted, token s+k+1 exists and is attended; the backbone's column k = 0 / the
    module columns all False without ``backbone`` / ``modules``) and, per predictor k, its valid flat rows
    (b * S + s) and the realised tokens they predict (flat id b * S + s + k + 1)."""
    am = attention_mask.bool()
    valid = torch.stack([want & shifted(am, k + 1, fill=False) for k in range(K)], dim=-1)
    if not backbone:
        valid[..., 0] = False
    if not modules:
        valid[..., 1:] = False
    return valid, *flat_rows_and_targets(valid, input_ids)


def flat_rows_and_targets(valid: torch.Tensor, input_ids: torch.Tensor):
    """Per predictor k: the flat rows where ``valid[..., k]`` and their target ids (same row, index + k + 1)."""
    flat_ids = input_ids.reshape(-1)
    rows_idx = [valid[..., k].reshape(-1).nonzero().squeeze(-1) for k in range(valid.shape[-1])]
    targets = [flat_ids.index_select(0, idx + k + 1) if idx.numel() else flat_ids[:0] for k, idx in enumerate(rows_idx)]
    return rows_idx, targets


class _Stats:
    """Top-1 / rank of the realised token per (flat row, predictor), filled column by column."""

    def __init__(self, n_rows: int, K: int, device):
        self.rank = torch.zeros(n_rows, K, dtype=torch.long, device=device)
        self.top1 = torch.zeros(n_rows, K, dtype=torch.bool, device=device)

    def put(self, k: int, rows: torch.Tensor, rank: torch.Tensor, top1: torch.Tensor) -> None:
        self.rank[:, k].index_copy_(0, rows, rank)
        self.top1[:, k].index_copy_(0, rows, top1)


def _assemble(cols, rows_idx, B, S, device) -> torch.Tensor:
    """Per-predictor log-probs on their valid rows -> [B, S, K] float32 (0 elsewhere)."""
    out = []
    for k, lp in enumerate(cols):
        base = torch.zeros(B * S, dtype=torch.float32, device=device)
        if lp is not None and lp.numel():
            base = base.index_copy(0, rows_idx[k], lp.float())
        out.append(base)
    return torch.stack(out, dim=-1).view(B, S, len(cols))


class MTPModel(nn.Module):
    """A causal LM backbone plus K-1 MTP modules (docs/method.md §2). ``K = 1``: no modules (PPO shares every code
    path). ``lambdas``: the K-1 per-module weights of the auxiliary CE (not the block-ratio weights w_k of §3, nor
    the total auxiliary coefficient ``mtp_aux_coef`` of §4, both applied by the trainer)."""

    def __init__(
        self,
        backbone: nn.Module,
        K: int,
        *,
        proj_init: str = "identity",
        lambdas: list[float] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        checkpoint_min_mb: float = 0.0,
        share_head: bool = False,
        _modules: nn.ModuleList | None = None,
    ):
        super().__init__()
        check_architecture(backbone)
        if int(K) != K or K < 1:
            raise ValueError(f"MTPModel: K must be an integer >= 1, got {K!r}")
        self.K = int(K)
        self.backbone = backbone
        self.proj_init = proj_init
        self.chunk_size = int(chunk_size)
        self.checkpoint_min_mb = float(checkpoint_min_mb)
        self.share_head = bool(share_head)
        # "hidden" regime + auxiliary CE: one module-chain forward for both (see _RoutedModules); the trainer turns
        # it off under FSDP / DeepSpeed, whose parameter hooks expect each module's forward to own its parameters
        self.fuse_module_passes = True
        self.lambdas = list(lambdas) if lambdas is not None else mtp_lambdas(self.K)
        if len(self.lambdas) != self.K - 1:
            raise ValueError(f"MTPModel: need K-1 = {self.K - 1} lambdas, got {self.lambdas}")
        self.mtp = _modules if _modules is not None else nn.ModuleList(
            [MTPModule(backbone, proj_init=proj_init, share_head=self.share_head) for _ in range(self.K - 1)]
        )

    # ------------------------------------------------------------------ construction / IO
    @classmethod
    def from_backbone(
        cls,
        model: nn.Module,
        K: int,
        *,
        proj_init: str = "identity",
        lambdas: list[float] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        checkpoint_min_mb: float = 0.0,
        share_head: bool = False,
    ) -> "MTPModel":
        """Attach K-1 freshly initialised modules (deep copies of the last layer / final norm / LM head).

        proj_init: "identity" ([I | 0]) or "random"; lambdas: K-1 per-module weights of the auxiliary CE (default
        :func:`mtp_lambdas`); chunk_size: rows per log-prob chunk; checkpoint_min_mb: skip the chunk checkpoint
        when a predictor's logits + log_softmax would take at most this many MiB (0: always checkpoint);
        share_head: the modules use the backbone's LM head instead of their own copies (package docstring).
        """
        return cls(model, K, proj_init=proj_init, lambdas=lambdas, chunk_size=chunk_size,
                   checkpoint_min_mb=checkpoint_min_mb, share_head=share_head)

    def mtp_config(self) -> dict:
        return mtp_io.mtp_config(self)

    def save_modules(self, out_dir: str | Path, extra_config: dict | None = None,
                     state_dict: dict | None = None) -> Path:
        """Write ``mtp.safetensors`` (the K-1 modules only) and ``mtp_config.json`` into ``out_dir`` (``state_dict``:
        the modules' weights, default their own)."""
        return mtp_io.save_modules(self, out_dir, extra_config, state_dict)

    def load_modules_state(self, modules_dir: str | Path) -> None:
        """Load module weights saved by :meth:`save_modules` into this model (strict: same K and shapes)."""
        mtp_io.load_modules_state(self, modules_dir)

    @classmethod
    def load(cls, backbone: str | Path | nn.Module, modules_dir: str | Path, **from_pretrained_kwargs) -> "MTPModel":
        """Backbone (HF directory or loaded model) + modules saved by :meth:`save_modules` -> MTPModel."""
        return mtp_io.load_model(cls, backbone, modules_dir, **from_pretrained_kwargs)

    @torch.no_grad()
    def calibrate_input_norms(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[float]:
        """Data-calibrated identity init: set each module's RMSNorm_a weight to the median RMS of its input state.

        With ``proj_init="identity"`` the untrained module k then computes Block_k(~h(k-1)), i.e. the backbone's last
        layer applied once more to the (un-normalised) residual stream, instead of to a unit-RMS copy of it (which
        the copied layer, trained on residual streams of RMS ~ 10-100, maps to near-garbage). Modules are calibrated
        in chain order on this batch. Returns the K-1 scales.
        """
        if self.K == 1:
            return []
        am = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        h, _, layer_kwargs = self.backbone_states(input_ids, am)
        emb = self.backbone.model.embed_tokens(input_ids)
        sel = am.bool()
        scales = []
        for k, module in enumerate(self.mtp, start=1):
            rms = h.float().pow(2).mean(-1).sqrt()[sel]
            scale = float(rms.median()) if rms.numel() else 1.0
            module.norm_h.weight.fill_(scale)
            scales.append(scale)
            h = module(h, shifted(emb, k), layer_kwargs)
        return scales

    def mtp_parameters(self):
        return self.mtp.parameters()

    def num_parameters(self) -> dict[str, int]:
        backbone = sum(p.numel() for p in self.backbone.parameters())
        modules = sum(p.numel() for p in self.mtp.parameters())
        return {"backbone": backbone, "modules": modules, "total": backbone + modules}

    # ------------------------------------------------------------------ backbone pass
    def backbone_states(self, input_ids, attention_mask, position_ids=None, inputs_embeds=None):
        """Run the backbone once; return (h0 [B, S, d]: the last decoder layer's output before the final norm,
        the last hidden state after it, the kwargs the last decoder layer was called with -- causal mask, rotary
        position embeddings, position ids), which is what a module needs:
        ``module(h_prev, MTPModel.shifted(emb, k), layer_kwargs)``.

        position_ids: default from the attention mask (all ones when None). inputs_embeds:
        ``embed_tokens(input_ids)`` computed by the caller, who also feeds it to the modules: one embedding lookup,
        so one dense [vocab, d] embedding gradient per backward instead of two."""
        if position_ids is None:
            position_ids = position_ids_from_mask(torch.ones_like(input_ids) if attention_mask is None
                                                  else attention_mask)
        cap = _Capture()
        handle = self.backbone.model.layers[-1].register_forward_hook(cap, with_kwargs=True)
        ids_or_embeds = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        try:
            out = self.backbone.model(
                **ids_or_embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            )
        finally:
            handle.remove()
        if cap.output is None:
            raise RuntimeError("MTPModel: the backbone's last decoder layer was not called")
        return cap.output, out.last_hidden_state, cap.kwargs

    _backbone_states = backbone_states  # old private name (mpo.train.critic calls it)
    shifted = staticmethod(shifted)
    _shifted = shifted  # old private name (mpo.train.critic calls it)

    def _run_backbone(self, input_ids, attention_mask, need_modules: bool):
        """The backbone pass of :meth:`forward`, under no_grad when no backbone parameter trains; returns
        (backbone_grad, emb (the modules' embeddings, None without modules), h0, h_last, layer_kwargs)."""
        backbone_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.backbone.parameters())
        with contextlib.nullcontext() if backbone_grad else torch.no_grad():
            # the modules read the same embedding output as the backbone (one lookup, one [vocab, d] grad buffer)
            emb = self.backbone.model.embed_tokens(input_ids) if need_modules else None
            h0, h_last, layer_kwargs = self.backbone_states(
                input_ids, attention_mask, position_ids_from_mask(attention_mask), emb
            )
        return backbone_grad, emb, h0, h_last, layer_kwargs

    def _backbone_column(self, h_last, rows, targets, *, backbone_grad: bool, chunk_size: int, temperature: float,
                         want_entropy: bool, want_stats: bool):
        """k = 0: the backbone's own head on its valid rows, same chunked code as the modules."""
        x = h_last.reshape(-1, h_last.shape[-1]).index_select(0, rows)
        return chunked_token_logprobs(
            self.backbone.lm_head, x, targets, chunk_size=chunk_size, temperature=temperature,
            want_entropy=want_entropy, want_stats=want_stats,
            use_checkpoint=(backbone_grad or x.requires_grad)
            and checkpoint_wanted(x, self.backbone.lm_head, self.checkpoint_min_mb),
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        logprob_mask: torch.Tensor | None = None,
        mtp_grad: str = "hidden",
        return_entropy: bool = False,
        return_hidden: bool = False,
        return_stats: bool = False,
        mtp_ce: bool = False,
        lambdas: list[float] | None = None,
        temperature: float = 1.0,
        chunk_size: int | None = None,
        compute_backbone: bool = True,
        compute_modules: bool = True,
    ) -> MTPOutput:
        """Realised-token log-probs of all K predictors in one backbone pass (see :class:`MTPOutput`).

        input_ids, attention_mask: [B, S] (attention_mask may have zeros on either side: left-padded prompts
        ++ right-padded responses; position ids come from its cumulative sum). logprob_mask: [B, S], positions s
        at which the K log-probs are wanted (default: all attended positions) -- heads are only evaluated there.
        mtp_grad: "hidden" | "detach" | "joint" (docs/method.md §4, :mod:`mpo.mtp.routing`). mtp_ce: also return
        the auxiliary sum_k lambda_k CE_k (``lambdas``: its per-module weights, default the model's) over the same
        valid positions, on detached backbone states. temperature: logits are divided by it (all predictors).
        compute_backbone / compute_modules: skip the k = 0 column / the module columns (left 0, valid False).
        """
        if mtp_grad not in MTP_GRAD_MODES:
            raise ValueError(f"mtp_grad must be one of {MTP_GRAD_MODES}, got {mtp_grad!r}")
        B, S = input_ids.shape
        K, device = self.K, input_ids.device
        chunk = int(chunk_size or self.chunk_size)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        want = attention_mask.bool() if logprob_mask is None else (logprob_mask.bool() & attention_mask.bool())
        valid, rows_idx, targets = prediction_rows(input_ids, attention_mask, want, K, backbone=compute_backbone,
                                                   modules=compute_modules)
        need_modules = K > 1 and compute_modules
        backbone_grad, emb, h0, h_last, layer_kwargs = self._run_backbone(input_ids, attention_mask, need_modules)

        cols: list[torch.Tensor | None] = [None] * K
        stats = _Stats(B * S, K, device) if return_stats else None
        entropy = ce_total = ce_per = None
        if compute_backbone:
            cols[0], ent, rk, tp = self._backbone_column(
                h_last, rows_idx[0], targets[0], backbone_grad=backbone_grad, chunk_size=chunk,
                temperature=temperature, want_entropy=return_entropy, want_stats=return_stats,
            )
            if return_entropy:
                entropy = torch.zeros(B * S, dtype=torch.float32, device=device).index_copy(0, rows_idx[0], ent).view(B, S)
            if stats is not None:
                stats.put(0, rows_idx[0], rk, tp)
        if need_modules:
            chain = ModuleChain(self.mtp, layer_kwargs, rows_idx, targets, temperature, chunk, self.checkpoint_min_mb)
            pol_res, aux_res = regime_terms(chain, h0, emb, mtp_grad=mtp_grad, mtp_ce=mtp_ce, want_stats=return_stats,
                                            fuse=self.fuse_module_passes)
            for k, (lp, rk, tp) in enumerate(pol_res, start=1):
                cols[k] = lp
                if stats is not None:
                    stats.put(k, rows_idx[k], rk, tp)
            if aux_res is not None:
                ce_total, ce_per = auxiliary_ce([lp for lp, _, _ in aux_res], self.lambdas if lambdas is None else lambdas)

        return MTPOutput(
            logprobs=_assemble(cols, rows_idx, B, S, device),
            valid=valid,
            entropy=entropy,
            hidden=h_last if return_hidden else None,
            top1=stats.top1.view(B, S, K) if stats is not None else None,
            rank=stats.rank.view(B, S, K) if stats is not None else None,
            mtp_ce=ce_total,
            mtp_ce_per_module=ce_per,
        )

    def realized_token_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                                **kw) -> torch.Tensor:
        """Only the [B, S, K] realised-token log-probs of :meth:`forward` (same keywords, except the extra outputs
        ``return_entropy`` / ``return_hidden`` / ``return_stats`` / ``mtp_ce``: use :meth:`realized_outputs`)."""
        extra = [f for f in _OUTPUT_FLAGS if kw.get(f)]
        if extra:
            raise ValueError(f"realized_token_logprobs returns the log-probs only; {extra} would be computed and "
                             "dropped: call realized_outputs (or the model) for the full MTPOutput")
        return self(input_ids, attention_mask, **kw).logprobs

    def realized_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         **kw) -> MTPOutput:
        """The full :class:`MTPOutput` of :meth:`forward` (the same as calling the model)."""
        return self(input_ids, attention_mask, **kw)

    def realized_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw):
        """Deprecated: :meth:`realized_outputs` when any of ``return_entropy`` / ``return_hidden`` /
        ``return_stats`` / ``mtp_ce`` is set, else :meth:`realized_token_logprobs`."""
        warnings.warn("MTPModel.realized_logprobs is deprecated: use realized_token_logprobs (the [B, S, K] "
                      "tensor) or realized_outputs (the MTPOutput)", DeprecationWarning, stacklevel=2)
        if any(kw.get(f) for f in _OUTPUT_FLAGS):
            return self.realized_outputs(input_ids, attention_mask, **kw)
        return self.realized_token_logprobs(input_ids, attention_mask, **kw)

    # ------------------------------------------------------------------ auxiliary CE alone
    def mtp_ce_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        loss_mask: torch.Tensor | None = None,
        lambdas: list[float] | None = None,
        return_per_module: bool = False,
    ):
        """Auxiliary next-k-token CE sum_k lambda_k CE_k of the modules on detached backbone states (``lambdas``:
        per-module weights, default the model's; docs/method.md §2).

        The backbone runs under no_grad (its state is a constant here), only the module heads are evaluated;
        ``loss_mask`` [B, S] selects positions s whose targets count (e.g. positions whose next token is a
        response token). Gradients reach the MTP parameters only. K = 1: a zero tensor.
        """
        if self.K == 1:
            z = torch.zeros((), device=input_ids.device)
            return (z, z[None][:0]) if return_per_module else z
        am = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        with torch.no_grad():
            h0, _, layer_kwargs = self.backbone_states(input_ids, am)
            emb = self.backbone.model.embed_tokens(input_ids)
        want = am.bool() if loss_mask is None else (loss_mask.bool() & am.bool())
        _, rows_idx, targets = prediction_rows(input_ids, am, want, self.K, backbone=False)
        chain = ModuleChain(self.mtp, layer_kwargs, rows_idx, targets, 1.0, self.chunk_size, self.checkpoint_min_mb)
        res = chain.run(h0, emb, params_const=False, want_stats=False)
        out = auxiliary_ce([lp for lp, _, _ in res], self.lambdas if lambdas is None else lambdas)
        return out if return_per_module else out[0]


def summarize_stats(out: MTPOutput, mask: torch.Tensor | None = None) -> dict[str, list[float]]:
    """Per-predictor means over valid (and ``mask``ed, [B, S]) positions: top-1 accuracy, mean rank, mean log-prob."""
    K = out.logprobs.shape[-1]
    v = out.valid if mask is None else out.valid & mask.bool()[..., None]
    res: dict[str, list[float]] = {"top1": [], "mean_rank": [], "mean_logprob": [], "count": []}
    for k in range(K):
        m = v[..., k]
        n = int(m.sum())
        res["count"].append(n)
        res["mean_logprob"].append(float(out.logprobs[..., k][m].mean()) if n else math.nan)
        if out.top1 is not None:
            res["top1"].append(float(out.top1[..., k][m].float().mean()) if n else math.nan)
            res["mean_rank"].append(float(out.rank[..., k][m].float().mean()) if n else math.nan)
    return res
