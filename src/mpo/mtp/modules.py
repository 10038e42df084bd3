"""The MTP modules themselves (docs/method.md §2): architecture check, ``MTPHead`` (FinalNorm_k + Head_k),
``MTPModule`` (RMSNorms, P_k, Block_k, head), the sequence shift, and the auxiliary cross-entropy with its
per-module weights ``lambdas``.

Three weight families appear around the modules; they are distinct:

* ``lambdas`` (lambda_k, k = 1 .. K-1; this file): the per-module weights of the auxiliary next-k-token CE,
  ``sum_k lambda_k CE_k`` (docs/method.md §2, warm-up loss; :func:`mtp_lambdas`, config ``mtp.lambda_first`` /
  ``mtp.lambda_decay``). They shape only the loss that trains the modules.
* ``mtp_aux_coef`` (train config): the total coefficient of that auxiliary CE in the MPO loss during RL
  (docs/method.md §4, "hidden" regime): the trainer adds ``mtp_aux_coef * sum_k lambda_k CE_k``.
* ``w_k`` (k = 0 .. K-1; ``mpo.algos.mtp_weights``): the block-ratio weights of the policy terms, i.e. how much
  each predictor's log-ratio counts in ``log rtilde_t`` (docs/method.md §3). Not used in this package.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

PROJ_INITS = ("identity", "random")


class MTPArchitectureError(ValueError):
    """The wrapped model does not expose what the MTP modules need."""


def mtp_lambdas(K: int, first: float = 1.0, decay: float = 0.8) -> list[float]:
    """``lambdas``: per-module weights of the auxiliary MTP cross-entropy (docs/method.md §2),
    lambda_k = first * decay^(k-1), k = 1 .. K-1. Not the block-ratio weights w_k (§3) nor ``mtp_aux_coef`` (§4)."""
    return [float(first) * float(decay) ** (k - 1) for k in range(1, K)]


def auxiliary_ce(module_logps: list[torch.Tensor], lambdas: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The auxiliary MTP cross-entropy ``sum_k lambda_k CE_k`` from the realised-token log-probs of modules
    k = 1 .. K-1 (one [M_k] tensor each; CE_k = minus their mean, 0 when empty), weighted by ``lambdas``.

    Returns (the weighted sum, a scalar in the graph; the detached [K-1] vector of CE_k)."""
    lam = list(lambdas)
    if len(lam) != len(module_logps):
        raise ValueError(f"mtp_ce: need K-1 = {len(module_logps)} lambdas, got {lam}")
    ces = torch.stack([-lp.sum() / max(lp.numel(), 1) for lp in module_logps])
    total = (ces * torch.tensor(lam, dtype=ces.dtype, device=ces.device)).sum()
    return total, ces.detach()


def shifted(x: torch.Tensor, k: int, fill=0) -> torch.Tensor:
    """y[:, s] = x[:, s + k] (``fill`` past the end), for [B, S, ...] tensors."""
    if k == 0:
        return x
    S = x.shape[1]
    if k >= S:
        return torch.full_like(x, fill)
    pad = torch.full_like(x[:, :k], fill)
    return torch.cat([x[:, k:], pad], dim=1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, S] from an attention mask with zeros on either side: the cumulative count of attended
    tokens minus one, clamped at 0 (left padding gets position 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def check_architecture(model: nn.Module) -> None:
    """Raise :class:`MTPArchitectureError` naming what `model` lacks (a Llama-style decoder is needed)."""
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
    """One DeepSeek-V3-style MTP module (docs/method.md §2): RMSNorms, 2d -> d projection, a decoder block,
    norm + head."""

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
