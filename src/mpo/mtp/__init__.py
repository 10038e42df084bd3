"""Multi-token-prediction (MTP) modules on top of a Hugging Face causal LM (docs/method.md §2).

``MTPModel`` wraps a loaded ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` (anything exposing ``model.layers``,
``model.norm``, ``model.embed_tokens``, ``model.rotary_emb`` and ``lm_head``) and K-1 DeepSeek-V3-style
modules. Module k (1 .. K-1) at sequence position s::

    u_s   = P_k [ RMSNorm_a(h(k-1)_s) ; RMSNorm_b(Emb(x_{s+k})) ]       P_k: Linear(2d -> d, bias=False)
    hk_s  = Block_k(u_<=s)                                             causal decoder layer
    logits_k(s) = Head_k(FinalNorm_k(hk_s))                            predicts x_{s+k+1}

Layout: :mod:`~mpo.mtp.modules` (``MTPHead``, ``MTPModule``, the architecture check, the auxiliary-CE weights
``lambdas`` and the CE itself), :mod:`~mpo.mtp.logprobs` (chunked and constant-head realised-token log-probs),
:mod:`~mpo.mtp.routing` (the three gradient regimes, the fused routed pass), :mod:`~mpo.mtp.model`
(``MTPModel``, ``MTPOutput``, ``summarize_stats``), :mod:`~mpo.mtp.io` (save / load).

Weights, three families (do not confuse them): ``lambdas`` = lambda_k, the per-module weights of the auxiliary
CE ``sum_k lambda_k CE_k`` (§2); ``mtp_aux_coef`` = the total coefficient of that CE in the MPO loss (§4, the
trainer); w_k = the block-ratio weights of the policy terms (§3, ``mpo.algos.mtp_weights``).

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

Gradient regimes for the policy path (``mtp_grad``, docs/method.md §4): ``"hidden"`` (default), ``"detach"``,
``"joint"``; the auxiliary MTP cross-entropy (``mtp_ce`` / :meth:`MTPModel.mtp_ce_loss`) is always computed on
detached backbone states. See :mod:`mpo.mtp.routing`.

Save format: the backbone stays a plain HF directory; the modules go to ``<dir>/mtp.safetensors`` (keys of the
``mtp`` ModuleList, e.g. ``0.proj.weight``) and ``<dir>/mtp_config.json``.
"""

from mpo.mtp.io import FORMAT_VERSION, MTP_CONFIG_NAME, MTP_WEIGHTS_NAME
from mpo.mtp.logprobs import DEFAULT_CHUNK, _ConstHeadLogp, chunked_token_logprobs, const_head_logprobs
from mpo.mtp.model import MTPModel, MTPOutput, summarize_stats
from mpo.mtp.modules import (
    PROJ_INITS,
    MTPArchitectureError,
    MTPHead,
    MTPModule,
    auxiliary_ce,
    check_architecture,
    mtp_lambdas,
    position_ids_from_mask,
    shifted,
)
from mpo.mtp.routing import MTP_GRAD_MODES, _Capture, _const_view, _RoutedModules

__all__ = [
    "DEFAULT_CHUNK",
    "FORMAT_VERSION",
    "MTP_CONFIG_NAME",
    "MTP_GRAD_MODES",
    "MTP_WEIGHTS_NAME",
    "PROJ_INITS",
    "MTPArchitectureError",
    "MTPHead",
    "MTPModel",
    "MTPModule",
    "MTPOutput",
    "auxiliary_ce",
    "check_architecture",
    "chunked_token_logprobs",
    "const_head_logprobs",
    "mtp_lambdas",
    "position_ids_from_mask",
    "shifted",
    "summarize_stats",
    # private, kept importable from mpo.mtp as before the package split
    "_Capture",
    "_ConstHeadLogp",
    "_RoutedModules",
    "_const_view",
]
