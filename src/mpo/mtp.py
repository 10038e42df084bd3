"""Multi-token-prediction (MTP) modules on top of a Hugging Face causal LM (METHOD.md section 2).

``MTPModel`` wraps a loaded ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` (anything exposing ``model.layers``,
``model.norm``, ``model.embed_tokens``, ``model.rotary_emb`` and ``lm_head``) and K-1 DeepSeek-V3-style
modules. Module k (1 .. K-1) at sequence position s::

    u_s   = P_k [ RMSNorm_a(h(k-1)_s) ; RMSNorm_b(Emb(x_{s+k})) ]       P_k: Linear(2d -> d, bias=False)
    hk_s  = Block_k(u_<=s)                                             causal decoder layer
    logits_k(s) = Head_k(FinalNorm_k(hk_s))                            predicts x_{s+k+1}

Design choices (documented, see also the README / report):

* ``h0`` is the output of the backbone's LAST decoder layer *before* the backbone's final norm (the residual
  stream), and ``hk`` is Block_k's output before FinalNorm_k, so every module of the chain reads the same kind
  of state (RMSNorm_a normalises it anyway). ``return_hidden`` gives the usual post-norm last hidden state.
* ``Block_k`` is a deep copy of the backbone's last decoder layer and is called exactly as the backbone calls
  that layer: the causal mask, rotary ``position_embeddings`` and ``position_ids`` are captured from the
  backbone's own call (a forward hook on the last layer), so they are computed once per forward, padding is
  handled identically (left or right), and Qwen2's per-layer attention type carries over.
* ``FinalNorm_k`` is a deep copy of the backbone's final norm. ``Head_k`` is a deep copy of the backbone's LM head
  (an untied copy even when the backbone ties its embeddings; the paper's model sizes, Table 7, count one head per
  module), or, with ``share_head=True``, the backbone's own LM head as in DeepSeek-V3 (not copied, not saved with
  the modules). A shared head is part of the backbone: module terms reach it only under ``mtp_grad="joint"``
  (plain autograd); in the "hidden" regime and in the auxiliary CE it is a constant, exactly like the module
  parameters / the backbone there. Sharing removes K-1 [vocab, d] weights, their gradients and optimizer state
  (SmolLM2-135M: 28 M parameters per module, 4 x 28 M x 16 bytes = 1.8 GB of fp32 AdamW state at K = 5).
  ``Emb`` is the backbone's (shared, not copied, not saved with the modules).
* RMSNorm_a / RMSNorm_b start at weight 1. ``P_k`` init (``proj_init``): ``"identity"`` (default) = ``[I | 0]``,
  i.e. the untrained module 1 is the backbone's last layer applied once more to the (normalised) final state
  and ignores the look-ahead embedding until trained; ``"random"`` = N(0, initializer_range). Because the copied
  layer expects a residual stream of RMS ~ 10-100 (not 1), the warm-up first calls
  :meth:`MTPModel.calibrate_input_norms` (RMSNorm_a weight := median RMS of the module's input on a batch), which
  makes the untrained module exactly "the last layer applied again" (SmolLM2-135M: module-1 held-out CE 45 -> 9.4).
* Positions where ``x_{s+k}`` does not exist (s + k >= S) get a zero embedding and are marked invalid.

Log-probs are computed by a chunked gather (rows of valid positions -> norm + head -> log_softmax -> gather of the
realised token), under ``torch.utils.checkpoint`` when grad is enabled, so no ``[B, S, vocab]`` tensor is ever
held, and the backbone's own term (k = 0) goes through the same code (PPO = MPO with K = 1). Where a head's output
weight is a constant (module heads in the "hidden" regime, a shared head outside "joint") the gradient w.r.t. its
input is computed in the forward instead (:func:`const_head_logprobs`): no logits are kept or recomputed.

Gradient regimes for the policy path (``mtp_grad``, METHOD.md section 4):
``"hidden"`` (default): modules read the live backbone state, their parameters are constants in this path
(a shallow copy of each module whose parameters are detached views); ``"detach"``: module terms are constants;
``"joint"``: plain autograd. The auxiliary MTP cross-entropy (``mtp_ce`` / :meth:`MTPModel.mtp_ce_loss`) is
always computed on detached backbone states: it trains the modules and never reaches the backbone. With both
("hidden" + ``mtp_ce``, the MPO default) ONE chain forward serves the two losses and the backward routes each
gradient where its regime sends it (:class:`_RoutedModules`, ``fuse_module_passes``; equal to two passes up to
float summation order).

Save format: the backbone stays a plain HF directory; the modules go to ``<dir>/mtp.safetensors`` (keys of the
``mtp`` ModuleList, e.g. ``0.proj.weight``) and ``<dir>/mtp_config.json``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

MTP_WEIGHTS_NAME = "mtp.safetensors"
MTP_CONFIG_NAME = "mtp_config.json"
FORMAT_VERSION = 1
PROJ_INITS = ("identity", "random")
MTP_GRAD_MODES = ("hidden", "detach", "joint")
DEFAULT_CHUNK = 1024
_DROP_LAYER_KWARGS = ("past_key_values", "past_key_value", "use_cache", "cache_position", "output_attentions")


class MTPArchitectureError(ValueError):
    """The wrapped model does not expose what the MTP modules need."""


def mtp_lambdas(K: int, first: float = 1.0, decay: float = 0.8) -> list[float]:
    """Decaying weights of the auxiliary MTP cross-entropy: lambda_k = first * decay^(k-1), k = 1 .. K-1."""
    return [float(first) * float(decay) ** (k - 1) for k in range(1, K)]


def _check_architecture(model: nn.Module) -> None:
    inner = getattr(model, "model", None)
    missing = []
    for owner, attr, label in [
        (model, "model", "model.model"),
        (inner, "layers", "model.model.layers"),
        (inner, "norm", "model.model.norm"),
        (inner, "embed_tokens", "model.model.embed_tokens"),
        (inner, "rotary_emb", "model.model.rotary_emb"),
        (model, "lm_head", "model.lm_head"),
    ]:
        if owner is None or getattr(owner, attr, None) is None:
            missing.append(label)
    if missing:
        cfg = getattr(model, "config", None)
        raise MTPArchitectureError(
            f"MTPModel: unsupported architecture {type(model).__name__} "
            f"(model_type {getattr(cfg, 'model_type', '?')!r}): it lacks {', '.join(missing)}. Supported: "
            "Llama-style decoders (LlamaForCausalLM, Qwen2ForCausalLM, ...) exposing model.layers, model.norm, "
            "model.embed_tokens, model.rotary_emb and lm_head."
        )
    if len(inner.layers) == 0:
        raise MTPArchitectureError(f"MTPModel: {type(model).__name__} has no decoder layers")


class MTPHead(nn.Module):
    """FinalNorm_k followed by Head_k: a deep copy of the backbone's LM head (``lm_head``, a registered submodule)
    or, with ``shared`` given, the backbone's own LM head (held outside the module tree: not a parameter of the
    module, not in its state dict)."""

    def __init__(self, norm: nn.Module, lm_head: nn.Module | None, shared: nn.Module | None = None):
        super().__init__()
        if (lm_head is None) == (shared is None):
            raise ValueError("MTPHead: give exactly one of lm_head (own copy) or shared (the backbone's head)")
        self.norm = norm
        if lm_head is not None:
            self.lm_head = lm_head
        self._shared = [shared] if shared is not None else None  # a list: nn.Module must not register it

    @property
    def is_shared(self) -> bool:
        return self._shared is not None

    @property
    def output_layer(self) -> nn.Module:
        """The [vocab, d] output layer (its own copy or the shared backbone head)."""
        return self._shared[0] if self._shared is not None else self.lm_head

    @property
    def weight(self) -> torch.Tensor:
        """The [vocab, d] output weight this head multiplies by (its own or the shared one)."""
        return self.output_layer.weight

    def drop_output(self) -> None:
        """Keep FinalNorm_k only (the head then returns the normed state): MTP value heads read that, not logits."""
        self._shared = None
        self.lm_head = nn.Identity()

    def forward(self, h: torch.Tensor, const_shared: bool = False) -> torch.Tensor:
        """Logits of state ``h``; ``const_shared``: a shared head's weight enters as a constant (no gradient)."""
        x = self.norm(h)
        if self._shared is None:
            return self.lm_head(x)
        head = self._shared[0]
        w = head.weight.detach() if const_shared else head.weight
        b = getattr(head, "bias", None)
        if b is not None and const_shared:
            b = b.detach()
        return F.linear(x, w, b)


class MTPModule(nn.Module):
    """One DeepSeek-V3-style MTP module: RMSNorms, 2d -> d projection, a decoder block, norm + head."""

    def __init__(self, backbone: nn.Module, proj_init: str = "identity", share_head: bool = False):
        super().__init__()
        if proj_init not in PROJ_INITS:
            raise ValueError(f"MTPModule: proj_init must be one of {PROJ_INITS}, got {proj_init!r}")
        inner = backbone.model

        def clone(mod: nn.Module) -> nn.Module:  # a fresh deep copy that shares the backbone's config object
            return copy.deepcopy(mod, {id(backbone.config): backbone.config})

        ref = backbone.lm_head.weight
        d = ref.shape[1]
        self.norm_h = clone(inner.norm)
        self.norm_e = clone(inner.norm)
        with torch.no_grad():
            self.norm_h.weight.fill_(1.0)
            self.norm_e.weight.fill_(1.0)
        self.proj = nn.Linear(2 * d, d, bias=False, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if proj_init == "identity":
                self.proj.weight.zero_()
                self.proj.weight[:, :d].copy_(torch.eye(d, device=ref.device, dtype=ref.dtype))
            else:
                std = float(getattr(backbone.config, "initializer_range", 0.02))
                self.proj.weight.normal_(0.0, std)
        self.block = clone(inner.layers[-1])
        if share_head:
            self.head = MTPHead(clone(inner.norm), None, shared=backbone.lm_head)
        else:
            self.head = MTPHead(clone(inner.norm), clone(backbone.lm_head))
        self.requires_grad_(True)  # trainable even when copied from a frozen backbone

    def forward(self, h_prev: torch.Tensor, emb: torch.Tensor, layer_kwargs: dict) -> torch.Tensor:
        """h_prev, emb: [B, S, d] -> this module's state hk: [B, S, d] (before FinalNorm_k)."""
        dt = self.proj.weight.dtype
        u = self.proj(torch.cat([self.norm_h(h_prev.to(dt)), self.norm_e(emb.to(dt))], dim=-1))
        out = self.block(u, **layer_kwargs)
        return out[0] if isinstance(out, tuple) else out


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
    mtp_ce: scalar, sum_k lambda_k CE_k of the modules on detached backbone states (grads reach MTP params only).
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


def _chunk_fn(
    head_fn: Callable[[torch.Tensor], torch.Tensor],
    rows: torch.Tensor,
    targets: torch.Tensor,
    inv_temp: float,
    want_entropy: bool,
    want_stats: bool,
):
    logits = head_fn(rows).float()
    if inv_temp != 1.0:
        logits = logits * inv_temp
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1) if want_entropy else None
    if want_stats:
        with torch.no_grad():
            tgt_logit = logits.gather(-1, targets[:, None])
            rank = (logits > tgt_logit).sum(-1)
            top1 = logits.argmax(-1) == targets
    else:
        rank = top1 = None
    return logp, ent, rank, top1


def chunked_token_logprobs(
    head_fn: Callable[[torch.Tensor], torch.Tensor],
    rows: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    temperature: float = 1.0,
    want_entropy: bool = False,
    want_stats: bool = False,
    use_checkpoint: bool | None = None,
):
    """log_softmax(head_fn(rows) / temperature)[i, targets[i]] for rows [M, d], `chunk_size` rows at a time.

    Returns (logp [M], entropy [M] | None, rank [M] | None, top1 [M] | None). With grad enabled each chunk runs
    under a non-reentrant checkpoint, so only the rows (not the [chunk, vocab] logits) are kept for backward.
    """
    M = rows.shape[0]
    if use_checkpoint is None:
        use_checkpoint = torch.is_grad_enabled()
    inv_temp = 1.0 / float(temperature)
    if M == 0:
        z = rows[:, 0].float() * 0.0  # empty, but still attached to the graph of `rows`
        zl = torch.zeros(0, dtype=torch.long, device=rows.device)
        return z, (z if want_entropy else None), (zl if want_stats else None), (zl.bool() if want_stats else None)
    lps, ents, ranks, tops = [], [], [], []
    for a in range(0, M, chunk_size):
        r, t = rows[a : a + chunk_size], targets[a : a + chunk_size]
        if use_checkpoint:
            lp, ent, rk, tp = checkpoint(
                _chunk_fn, head_fn, r, t, inv_temp, want_entropy, want_stats, use_reentrant=False, preserve_rng_state=False
            )
        else:
            lp, ent, rk, tp = _chunk_fn(head_fn, r, t, inv_temp, want_entropy, want_stats)
        lps.append(lp)
        ents.append(ent)
        ranks.append(rk)
        tops.append(tp)
    cat = lambda xs: torch.cat(xs) if len(xs) > 1 else xs[0]  # noqa: E731
    return (
        cat(lps),
        cat(ents) if want_entropy else None,
        cat(ranks) if want_stats else None,
        cat(tops) if want_stats else None,
    )


class _ConstHeadLogp(torch.autograd.Function):
    """Realised-token log-probs through a CONSTANT output layer, with the input gradient computed in the forward.

    ``logp_i = log_softmax((x_i W^T + b) / T)[t_i]`` is one scalar per row, so its gradient w.r.t. ``x_i`` is the
    [d] vector ``v_i = (W[t_i] - p_i W) / T`` (p_i: the softmax), whatever the loss above it: the forward keeps
    ``v`` ([M, d]) and the backward is one broadcast multiply. No [M, vocab] tensor outlives a chunk, nothing is
    recomputed (the checkpointed path runs the head matmul twice), and one forward serves any number of
    backward routes (the fused policy + auxiliary pass). The same idea as fused linear cross-entropy kernels, for
    the case where W and b get no gradient: MTP heads in the "hidden" regime and a shared LM head outside "joint".
    """

    @staticmethod
    def forward(ctx, x, weight, bias, targets, inv_temp: float, chunk: int):
        lps, vs = [], []
        for a in range(0, x.shape[0], chunk):
            t = targets[a : a + chunk]
            logits = F.linear(x[a : a + chunk], weight, bias).float()
            if inv_temp != 1.0:
                logits = logits * inv_temp
            logp_all = torch.log_softmax(logits, dim=-1)
            lps.append(logp_all.gather(-1, t[:, None]).squeeze(-1))
            p = logp_all.exp_()  # in place: the [chunk, vocab] log-probs are not needed any more
            v = weight.index_select(0, t).float() - torch.mm(p.to(weight.dtype), weight).float()
            vs.append(v * inv_temp if inv_temp != 1.0 else v)
        cat = lambda xs: torch.cat(xs) if len(xs) > 1 else xs[0]  # noqa: E731
        ctx.save_for_backward(cat(vs))
        ctx.x_dtype = x.dtype
        return cat(lps)

    @staticmethod
    def backward(ctx, grad_logp):
        (v,) = ctx.saved_tensors
        return (grad_logp.float()[:, None] * v).to(ctx.x_dtype), None, None, None, None, None


def const_head_logprobs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, *,
                        temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """``log_softmax(F.linear(x, weight, bias) / temperature)[i, targets[i]]`` ([M]) for a head whose weight and
    bias are constants (detached here); differentiable w.r.t. ``x`` through :class:`_ConstHeadLogp`."""
    if x.shape[0] == 0:
        return x[:, 0].float() * 0.0
    b = bias.detach() if bias is not None else None
    return _ConstHeadLogp.apply(x, weight.detach(), b, targets, 1.0 / float(temperature), int(chunk_size))


class _RoutedModules(torch.autograd.Function):
    """ONE forward of the MTP module chain for two losses whose gradients take different routes ("hidden" regime
    with the auxiliary CE, METHOD.md section 4):

    * output 0, the policy terms: their gradient reaches the backbone state h0 and the embeddings only (the module
      parameters are constants in the policy path);
    * output 1, the same log-probs for the auxiliary CE: its gradient reaches the module parameters only (h0 and the
      embeddings are constants there).

    Equal, up to float summation order, to running the chain twice (params detached on live states + live params
    on detached states), at the cost of one chain forward instead of two. The inner graph lives on ``ctx`` until
    the backward, which runs it twice: input gradients for output 0, parameter gradients for output 1.
    """

    @staticmethod
    def forward(ctx, run_fn, h0, emb, *params):
        ctx.set_materialize_grads(False)
        with torch.enable_grad():
            hx = h0.detach().requires_grad_(h0.requires_grad)
            ex = emb.detach().requires_grad_(emb.requires_grad)
            flat = run_fn(hx, ex)
        ctx.inner = (hx, ex, flat)
        ctx.params = params
        out = flat.detach()
        return out, out.clone()

    @staticmethod
    def backward(ctx, g_pol, g_aux):
        if ctx.inner is None:
            raise RuntimeError(
                "MTPModel: a second backward through the fused policy + auxiliary module pass (its inner graph is "
                "freed by the first one, whatever retain_graph says); set model.fuse_module_passes = False to use "
                "two separate passes"
            )
        hx, ex, flat = ctx.inner
        params = ctx.params
        grads_in: list = [None, None]
        want_in = [t for t, need in zip((hx, ex), ctx.needs_input_grad[1:3]) if need]
        want_p = [i for i, (p, need) in enumerate(zip(params, ctx.needs_input_grad[3:])) if need]
        if g_pol is not None and want_in and flat.requires_grad:
            got = iter(torch.autograd.grad(flat, want_in, g_pol, retain_graph=g_aux is not None, allow_unused=True))
            grads_in = [next(got) if need else None for need in ctx.needs_input_grad[1:3]]
        grads_p: list = [None] * len(params)
        if g_aux is not None and want_p and flat.requires_grad:
            got = torch.autograd.grad(flat, [params[i] for i in want_p], g_aux, allow_unused=True)
            for i, g in zip(want_p, got):  # zeros, not None: DDP waits for a gradient of every parameter it saw
                grads_p[i] = g if g is not None else torch.zeros_like(params[i])
        ctx.inner = ctx.params = None
        return (None, *grads_in, *grads_p)


def _const_view(module: nn.Module) -> nn.Module:
    """A shallow copy of `module` (recursively) whose parameters are detached views of the originals.

    Same storage, same code, no autograd edge to the parameters: the "hidden" regime's modules read the live
    backbone state while their weights are constants. (Cheaper than, and free of the checkpoint interplay of,
    torch.func.functional_call, which swaps the parameters in and out of the shared module.)
    """
    clone = copy.copy(module)
    clone._parameters = {n: (p.detach() if p is not None else None) for n, p in module._parameters.items()}
    clone._buffers = dict(module._buffers)
    clone._modules = {n: (_const_view(m) if m is not None else None) for n, m in module._modules.items()}
    return clone


class _Capture:
    """Forward hook on the backbone's last decoder layer: its output (h0, pre final norm) and call kwargs."""

    def __init__(self):
        self.output: torch.Tensor | None = None
        self.kwargs: dict | None = None

    def __call__(self, module, args, kwargs, output):
        if self.output is None:  # first call only (a checkpoint recompute in backward must not overwrite it)
            self.output = output[0] if isinstance(output, tuple) else output
            self.kwargs = {k: v for k, v in kwargs.items() if k not in _DROP_LAYER_KWARGS and k != "hidden_states"}


class MTPModel(nn.Module):
    """A causal LM backbone plus K-1 MTP modules. ``K = 1``: no modules (PPO shares every code path)."""

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
        _check_architecture(backbone)
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

        proj_init: "identity" ([I | 0]) or "random"; lambdas: K-1 weights of the auxiliary CE (default
        :func:`mtp_lambdas`); chunk_size: rows per log-prob chunk; checkpoint_min_mb: skip the chunk checkpoint
        when a predictor's logits + log_softmax would take at most this many MiB (0: always checkpoint);
        share_head: the modules use the backbone's LM head instead of their own copies (module docstring).
        """
        return cls(model, K, proj_init=proj_init, lambdas=lambdas, chunk_size=chunk_size,
                   checkpoint_min_mb=checkpoint_min_mb, share_head=share_head)

    def mtp_config(self) -> dict:
        cfg = self.backbone.config
        return {
            "format_version": FORMAT_VERSION,
            "K": self.K,
            "num_modules": self.K - 1,
            "architecture": type(self.backbone).__name__,
            "model_type": getattr(cfg, "model_type", None),
            "hidden_size": getattr(cfg, "hidden_size", None),
            "vocab_size": getattr(cfg, "vocab_size", None),
            "proj_init": self.proj_init,
            "lambdas": self.lambdas,
            "chunk_size": self.chunk_size,
            "checkpoint_min_mb": self.checkpoint_min_mb,
            "share_head": self.share_head,
            "h0": "last decoder layer output, before the backbone's final norm",
            "block_source_layer": len(self.backbone.model.layers) - 1,
        }

    def save_modules(self, out_dir: str | Path, extra_config: dict | None = None) -> Path:
        """Write ``mtp.safetensors`` (the K-1 modules only) and ``mtp_config.json`` into ``out_dir``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.mtp.state_dict().items()}
        save_file(state, str(out / MTP_WEIGHTS_NAME), metadata={"format": "pt", "K": str(self.K)})
        cfg = {**self.mtp_config(), **(extra_config or {})}
        with open(out / MTP_CONFIG_NAME, "w") as f:
            json.dump(cfg, f, indent=2)
        return out

    def load_modules_state(self, modules_dir: str | Path) -> None:
        """Load module weights saved by :meth:`save_modules` into this model (strict: same K and shapes)."""
        from safetensors.torch import load_file

        path = Path(modules_dir) / MTP_WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {MTP_WEIGHTS_NAME} in {modules_dir}")
        state = load_file(str(path))
        self.mtp.load_state_dict(state, strict=True)

    @classmethod
    def load(
        cls, backbone: str | Path | nn.Module, modules_dir: str | Path, **from_pretrained_kwargs
    ) -> "MTPModel":
        """Backbone (HF directory or loaded model) + modules saved by :meth:`save_modules` -> MTPModel."""
        mdir = Path(modules_dir)
        cfg_path = mdir / MTP_CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no {MTP_CONFIG_NAME} in {modules_dir}")
        with open(cfg_path) as f:
            mcfg = json.load(f)
        if isinstance(backbone, (str, Path)):
            from transformers import AutoModelForCausalLM

            backbone = AutoModelForCausalLM.from_pretrained(backbone, **from_pretrained_kwargs)
        if mcfg.get("architecture") not in (None, type(backbone).__name__):
            raise MTPArchitectureError(
                f"modules in {modules_dir} were built for {mcfg['architecture']}, backbone is {type(backbone).__name__}"
            )
        model = cls(
            backbone,
            int(mcfg["K"]),
            proj_init=mcfg.get("proj_init", "identity"),
            lambdas=mcfg.get("lambdas"),
            chunk_size=int(mcfg.get("chunk_size", DEFAULT_CHUNK)),
            checkpoint_min_mb=float(mcfg.get("checkpoint_min_mb", 0.0)),
            share_head=bool(mcfg.get("share_head", False)),
        )
        if model.K > 1:
            model.load_modules_state(mdir)
        return model

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
        pos = (am.long().cumsum(-1) - 1).clamp(min=0)
        h, _, layer_kwargs = self._backbone_states(input_ids, am, pos)
        emb = self.backbone.model.embed_tokens(input_ids)
        sel = am.bool()
        scales = []
        for k, module in enumerate(self.mtp, start=1):
            rms = h.float().pow(2).mean(-1).sqrt()[sel]
            scale = float(rms.median()) if rms.numel() else 1.0
            module.norm_h.weight.fill_(scale)
            scales.append(scale)
            h = module(h, self._shifted(emb, k), layer_kwargs)
        return scales

    def mtp_parameters(self):
        return self.mtp.parameters()

    def num_parameters(self) -> dict[str, int]:
        backbone = sum(p.numel() for p in self.backbone.parameters())
        modules = sum(p.numel() for p in self.mtp.parameters())
        return {"backbone": backbone, "modules": modules, "total": backbone + modules}

    # ------------------------------------------------------------------ forward
    def _use_checkpoint(self, rows: torch.Tensor, head: nn.Module) -> bool:
        """Checkpoint the chunks when grad is on, unless all of this predictor's logits (and their log_softmax)
        would fit in ``checkpoint_min_mb`` (0, the default: always checkpoint)."""
        if not torch.is_grad_enabled():
            return False
        if self.checkpoint_min_mb <= 0:
            return True
        vocab = head.weight.shape[0]  # an nn.Linear or an MTPHead (own or shared weight)
        return rows.shape[0] * vocab * 4 * 2 > self.checkpoint_min_mb * 2**20

    def _backbone_states(self, input_ids, attention_mask, position_ids, inputs_embeds=None):
        """Run the backbone once; return (h0 pre-norm [B,S,d], post-norm last hidden [B,S,d], layer kwargs).

        ``inputs_embeds``: ``embed_tokens(input_ids)`` computed by the caller, who also feeds it to the modules:
        one embedding lookup, so one dense [vocab, d] embedding gradient per backward instead of two."""
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

    def backbone_states(self, input_ids, attention_mask, position_ids=None):
        """Public form of the backbone pass: (h0 before the final norm, last hidden state after it, the kwargs the
        last decoder layer was called with -- causal mask, rotary position embeddings, position ids), which is
        what a module needs: ``module(h_prev, MTPModel.shifted(emb, k), layer_kwargs)``."""
        if position_ids is None:
            am = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            position_ids = (am.long().cumsum(-1) - 1).clamp(min=0)
        return self._backbone_states(input_ids, attention_mask, position_ids)

    @staticmethod
    def shifted(x: torch.Tensor, k: int, fill=0) -> torch.Tensor:
        """y[:, s] = x[:, s + k] (``fill`` past the end), for [B, S, ...] tensors."""
        return MTPModel._shifted(x, k, fill)

    @staticmethod
    def _shifted(x: torch.Tensor, k: int, fill=0) -> torch.Tensor:
        """y[:, s] = x[:, s + k] (fill past the end), for [B, S, ...] tensors."""
        if k == 0:
            return x
        S = x.shape[1]
        if k >= S:
            return torch.full_like(x, fill)
        pad = torch.full_like(x[:, :k], fill)
        return torch.cat([x[:, k:], pad], dim=1)

    def _run_modules(
        self,
        h0: torch.Tensor,
        emb: torch.Tensor,
        layer_kwargs: dict,
        rows_idx: list[torch.Tensor],
        targets: list[torch.Tensor],
        *,
        params_const: bool,
        temperature: float,
        want_stats: bool,
        chunk_size: int,
        shared_head_const: bool = True,
    ):
        """Module chain; for module k returns (logp [M_k], rank, top1) on its valid flat rows.

        params_const: module parameters are constants (the "hidden" regime); shared_head_const: a shared LM head
        (``share_head``) is a constant too (everywhere but the "joint" regime: it belongs to the backbone)."""
        B, S, d = h0.shape
        results = []
        h_prev = h0
        for k, module in enumerate(self.mtp, start=1):
            emb_k = self._shifted(emb, k)
            if params_const:
                module = _const_view(module)
            h_k = module(h_prev, emb_k, layer_kwargs)
            head = module.head
            rows = h_k.reshape(B * S, -1).index_select(0, rows_idx[k])
            const_out = params_const or (head.is_shared and shared_head_const)
            if const_out and rows.requires_grad and not want_stats:
                # constant output layer: the input gradient is computed in the forward (_ConstHeadLogp)
                out = head.output_layer
                lp = const_head_logprobs(head.norm(rows), out.weight, getattr(out, "bias", None), targets[k],
                                         temperature=temperature, chunk_size=chunk_size)
                rk = tp = None
            else:
                head_fn = functools.partial(head, const_shared=True) if head.is_shared and shared_head_const else head
                lp, _, rk, tp = chunked_token_logprobs(
                    head_fn, rows, targets[k], chunk_size=chunk_size, temperature=temperature, want_stats=want_stats,
                    use_checkpoint=self._use_checkpoint(rows, head),
                )
            results.append((lp, rk, tp))
            h_prev = h_k
        return results

    def _run_modules_routed(self, h0, emb, layer_kwargs, rows_idx, targets, *, temperature: float, chunk_size: int):
        """The "hidden" regime's policy terms and the auxiliary CE's terms from ONE module-chain forward
        (:class:`_RoutedModules`); returns (policy results, auxiliary results) shaped like :meth:`_run_modules`'s."""
        sizes = [int(rows_idx[k].numel()) for k in range(1, self.K)]

        def run_fn(hx, ex):
            res = self._run_modules(hx, ex, layer_kwargs, rows_idx, targets, params_const=False,
                                    temperature=temperature, want_stats=False, chunk_size=chunk_size)
            return torch.cat([lp for lp, _, _ in res])

        params = [p for p in self.mtp.parameters() if p.requires_grad]
        pol, aux = _RoutedModules.apply(run_fn, h0, emb, *params)
        return ([(c, None, None) for c in torch.split(pol, sizes)],
                [(c, None, None) for c in torch.split(aux, sizes)])

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
        mtp_grad: "hidden" | "detach" | "joint" (module docstring). mtp_ce: also return the auxiliary
        sum_k lambda_k CE_k (``lambdas`` default: the model's) over the same valid positions, on detached
        backbone states. temperature: logits are divided by it (all predictors).
        compute_backbone / compute_modules: skip the k = 0 column / the module columns (left 0, valid False).
        """
        if mtp_grad not in MTP_GRAD_MODES:
            raise ValueError(f"mtp_grad must be one of {MTP_GRAD_MODES}, got {mtp_grad!r}")
        B, S = input_ids.shape
        K = self.K
        device = input_ids.device
        chunk = int(chunk_size or self.chunk_size)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        am = attention_mask.bool()
        position_ids = (am.long().cumsum(-1) - 1).clamp(min=0)
        want_mask = am if logprob_mask is None else (logprob_mask.bool() & am)

        # valid[b, s, k]: position s wanted, token s+k+1 exists and is attended.
        valid_cols = []
        for k in range(K):
            tgt_ok = self._shifted(am, k + 1, fill=False)
            valid_cols.append(want_mask & tgt_ok)
        valid = torch.stack(valid_cols, dim=-1)
        if not compute_backbone:
            valid[..., 0] = False
        if not compute_modules:
            valid[..., 1:] = False
        flat_ids = input_ids.reshape(-1)
        rows_idx = [valid[..., k].reshape(-1).nonzero().squeeze(-1) for k in range(K)]
        # target of flat row (b, s) for predictor k is flat id (b, s+k+1): same row, so index + k + 1.
        targets = [flat_ids.index_select(0, rows_idx[k] + k + 1) if rows_idx[k].numel() else flat_ids[:0] for k in range(K)]

        need_modules = K > 1 and compute_modules
        grad_on = torch.is_grad_enabled()
        backbone_grad = grad_on and any(p.requires_grad for p in self.backbone.parameters())
        bb_ctx = contextlib.nullcontext() if backbone_grad else torch.no_grad()
        with bb_ctx:
            # the modules read the same embedding output as the backbone (one lookup, one [vocab, d] grad buffer)
            emb = self.backbone.model.embed_tokens(input_ids) if need_modules else None
            h0, h_last, layer_kwargs = self._backbone_states(input_ids, attention_mask, position_ids, emb)

        cols: list[torch.Tensor | None] = [None] * K
        rank = top1 = entropy = None
        if return_stats:
            rank = torch.zeros(B * S, K, dtype=torch.long, device=device)
            top1 = torch.zeros(B * S, K, dtype=torch.bool, device=device)

        # k = 0: the backbone's own head, same chunked code as the modules.
        if compute_backbone:
            rows = h_last.reshape(B * S, -1).index_select(0, rows_idx[0])
            lp, ent, rk, tp = chunked_token_logprobs(
                self.backbone.lm_head, rows, targets[0], chunk_size=chunk, temperature=temperature,
                want_entropy=return_entropy, want_stats=return_stats,
                use_checkpoint=(backbone_grad or rows.requires_grad) and self._use_checkpoint(rows, self.backbone.lm_head),
            )
            cols[0] = lp
            if return_entropy:
                entropy = torch.zeros(B * S, dtype=torch.float32, device=device).index_copy(0, rows_idx[0], ent).view(B, S)
            if return_stats:
                rank[:, 0].index_copy_(0, rows_idx[0], rk)
                top1[:, 0].index_copy_(0, rows_idx[0], tp)

        ce_total = ce_per = None
        if need_modules:
            run = lambda h, e, const, stats=return_stats, head_const=True: self._run_modules(  # noqa: E731
                h, e, layer_kwargs, rows_idx, targets, params_const=const, temperature=temperature,
                want_stats=stats, chunk_size=chunk, shared_head_const=head_const,
            )
            aux_res = None
            if (mtp_ce and grad_on and mtp_grad == "hidden" and self.fuse_module_passes and not return_stats
                    and (h0.requires_grad or emb.requires_grad)):
                # one chain forward serves both losses, each gradient routed where the regime sends it
                pol_res, aux_res = self._run_modules_routed(h0, emb, layer_kwargs, rows_idx, targets,
                                                            temperature=temperature, chunk_size=chunk)
            else:
                if mtp_ce:  # detached backbone states, live module params (one pass serves the policy too when
                    # the module terms are constants anyway: no grad, or mtp_grad "detach")
                    shared = (not grad_on) or mtp_grad == "detach"
                    aux_res = run(h0.detach(), emb.detach(), False, return_stats and shared)
                if not grad_on:
                    pol_res = aux_res if aux_res is not None else run(h0, emb, False)
                elif mtp_grad == "detach":
                    if aux_res is not None:
                        pol_res = [(lp.detach(), rk, tp) for lp, rk, tp in aux_res]
                    else:
                        with torch.no_grad():
                            pol_res = run(h0.detach(), emb.detach(), False)
                elif mtp_grad == "hidden":
                    pol_res = run(h0, emb, True)
                else:  # joint: plain autograd, into a shared LM head too
                    pol_res = run(h0, emb, False, head_const=False)
            for k in range(1, K):
                lp, rk, tp = pol_res[k - 1]
                cols[k] = lp
                if return_stats:
                    rank[:, k].index_copy_(0, rows_idx[k], rk)
                    top1[:, k].index_copy_(0, rows_idx[k], tp)
            if aux_res is not None:
                lam = self.lambdas if lambdas is None else list(lambdas)
                if len(lam) != K - 1:
                    raise ValueError(f"mtp_ce: need K-1 = {K - 1} lambdas, got {lam}")
                ces = []
                for k in range(1, K):
                    lp = aux_res[k - 1][0]
                    ces.append(-lp.sum() / max(lp.numel(), 1))
                ce_vec = torch.stack(ces)
                ce_total = (ce_vec * torch.tensor(lam, dtype=ce_vec.dtype, device=device)).sum()
                ce_per = ce_vec.detach()

        logp = self._assemble(cols, rows_idx, B, S, device)
        return MTPOutput(
            logprobs=logp,
            valid=valid,
            entropy=entropy,
            hidden=h_last if return_hidden else None,
            top1=top1.view(B, S, K) if return_stats else None,
            rank=rank.view(B, S, K) if return_stats else None,
            mtp_ce=ce_total,
            mtp_ce_per_module=ce_per,
        )

    @staticmethod
    def _assemble(cols, rows_idx, B, S, device) -> torch.Tensor:
        out = []
        for k, lp in enumerate(cols):
            base = torch.zeros(B * S, dtype=torch.float32, device=device)
            if lp is not None and lp.numel():
                base = base.index_copy(0, rows_idx[k], lp.float())
            out.append(base)
        return torch.stack(out, dim=-1).view(B, S, len(cols))

    def realized_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw):
        """[B, S, K] realised-token log-probs (see :meth:`forward`); returns the full :class:`MTPOutput` instead
        when any of ``return_entropy``, ``return_hidden``, ``return_stats``, ``mtp_ce`` is set."""
        out = self.forward(input_ids, attention_mask, **kw)
        if any(kw.get(f) for f in ("return_entropy", "return_hidden", "return_stats", "mtp_ce")):
            return out
        return out.logprobs

    def mtp_ce_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        loss_mask: torch.Tensor | None = None,
        lambdas: list[float] | None = None,
        return_per_module: bool = False,
    ):
        """Auxiliary next-k-token CE sum_k lambda_k CE_k of the modules on detached backbone states.

        The backbone runs under no_grad (its state is a constant here), only the module heads are evaluated;
        ``loss_mask`` [B, S] selects positions s whose targets count (e.g. positions whose next token is a
        response token). Gradients reach the MTP parameters only. K = 1: a zero tensor.
        """
        if self.K == 1:
            z = torch.zeros((), device=input_ids.device)
            return (z, z[None][:0]) if return_per_module else z
        with torch.no_grad():
            B, S = input_ids.shape
            am = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            position_ids = (am.long().cumsum(-1) - 1).clamp(min=0)
            h0, _, layer_kwargs = self._backbone_states(input_ids, am, position_ids)
            emb = self.backbone.model.embed_tokens(input_ids)
        out = self._ce_from_states(input_ids, am, h0, emb, layer_kwargs, loss_mask, lambdas)
        return out if return_per_module else out[0]

    def _ce_from_states(self, input_ids, am, h0, emb, layer_kwargs, loss_mask, lambdas):
        B, S = input_ids.shape
        K = self.K
        amb = am.bool()
        want = amb if loss_mask is None else (loss_mask.bool() & amb)
        flat_ids = input_ids.reshape(-1)
        rows_idx, targets = [None], [None]
        for k in range(1, K):
            v = want & self._shifted(amb, k + 1, fill=False)
            idx = v.reshape(-1).nonzero().squeeze(-1)
            rows_idx.append(idx)
            targets.append(flat_ids.index_select(0, idx + k + 1))
        res = self._run_modules(
            h0, emb, layer_kwargs, rows_idx, targets, params_const=False, temperature=1.0, want_stats=False,
            chunk_size=self.chunk_size,
        )
        lam = self.lambdas if lambdas is None else list(lambdas)
        ces = torch.stack([-lp.sum() / max(lp.numel(), 1) for lp, _, _ in res])
        total = (ces * torch.tensor(lam, dtype=ces.dtype, device=ces.device)).sum()
        return total, ces.detach()


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
