"""The critic of PPO and MPO (docs/method.md §1 and §5).

:class:`Critic`: a separate copy of the policy backbone with a scalar value head on its last hidden state (after
the final norm), giving ``V(s)`` at every sequence position s; the value of response token t's state is read at
the position that predicts it (``Batch.response_view``), as verl does.

With ``mtp_dir`` (``value_heads: true``, paper Appendix C): the critic also gets its own copy of the warmed-up MTP
modules, and a scalar value head on each module's state after its final norm, ``V_k(s) = head_k(FinalNorm_k(hk_s))``
(k = 0 is the backbone's). The estimate is the learned convex combination

    Vbar(s) = sum_k softmax(alpha)_k [k available at s] V_k(s) / sum_k softmax(alpha)_k [k available at s],

alpha learnable (initialised to 0: equal weights). Module k's state at s reads the embeddings of tokens
s+1 .. s+k; where token s+k does not exist (the last k-1 positions of a sequence) the term is dropped and the
weights renormalised, as for the block ratio. Module parameters, backbone and heads are all trained by the value
loss. The modules' LM heads are not needed here and are removed.

Value heads are zero-initialised (V = 0 before the first update) and computed in float32.
"""

from __future__ import annotations

import torch
from torch import nn


def value_mixture(values: torch.Tensor, available: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Vbar = sum_k softmax(alpha)_k [k available] V_k / sum_k softmax(alpha)_k [k available] (docs/method.md §5).

    ``values`` [..., K] (float), ``available`` [..., K] (bool: head k has a state there), ``alpha`` [K] (the learnable
    mixture logits). Unavailable heads are dropped and the weights renormalised; where no head is available the
    result is 0. Differentiable in values and alpha. Returns [...].
    """
    w = torch.softmax(alpha, 0) * available.to(values.dtype)
    return (values * w).sum(-1) / w.sum(-1).clamp(min=1e-12)


class Critic(nn.Module):
    def __init__(self, causal_lm: nn.Module, mtp_dir: str | None = None):
        super().__init__()
        d = causal_lm.config.hidden_size
        self.mtp = None
        if mtp_dir is not None:
            from mpo.mtp import MTPModel

            self.mtp = MTPModel.load(causal_lm, mtp_dir)
            for module in self.mtp.mtp:
                module.head.drop_output()  # only FinalNorm_k is used (also drops a shared head's reference)
            causal_lm.lm_head = nn.Identity()
            self.K = self.mtp.K
        else:
            self.body = causal_lm.model  # the decoder stack; the LM head is not needed
            self.K = 1
        self.value_heads = nn.ModuleList([nn.Linear(d, 1, dtype=torch.float32) for _ in range(self.K)])
        for head in self.value_heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.alpha = nn.Parameter(torch.zeros(self.K, dtype=torch.float32)) if self.K > 1 else None

    def _head(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return self.value_heads[k](h.float()).squeeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values [B, S] (float32) at every position."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if self.mtp is None:
            h = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).last_hidden_state
            return self._head(0, h)
        # MTP value heads. Uses MTPModel's backbone pass (h0 before the final norm + the decoder-layer kwargs) and
        # runs the module chain itself, since the states (not log-probs) are needed here.
        m = self.mtp
        h0, h_last, layer_kwargs = m.backbone_states(input_ids, attention_mask, position_ids)
        emb = m.backbone.model.embed_tokens(input_ids)
        am = attention_mask.bool()
        values, avail = [self._head(0, h_last)], [torch.ones_like(am)]
        h_prev = h0
        for k, module in enumerate(m.mtp, start=1):
            h_k = module(h_prev, m.shifted(emb, k), layer_kwargs)
            values.append(self._head(k, module.head.norm(h_k)))
            avail.append(m.shifted(am, k, fill=False))
            h_prev = h_k
        return value_mixture(torch.stack(values, -1), torch.stack(avail, -1), self.alpha)

    def mixture_weights(self) -> list[float]:
        if self.alpha is None:
            return [1.0]
        alpha = self.alpha.detach()
        alpha = alpha.full_tensor() if hasattr(alpha, "full_tensor") else alpha  # sharded (FSDP2): a collective
        return torch.softmax(alpha.float(), 0).tolist()
