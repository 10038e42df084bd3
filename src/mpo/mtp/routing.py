"""Where the gradients of the module terms go: the three regimes of docs/method.md §4 (``mtp_grad``) and the
auxiliary CE.

* ``"hidden"`` (default): modules read the live backbone state; their parameters are constants in the policy
  path (:func:`_const_view`: a shallow copy of each module whose parameters are detached views).
* ``"detach"``: the module terms are constants in the policy loss.
* ``"joint"``: plain autograd, into a shared LM head too.

The auxiliary MTP cross-entropy always runs on detached backbone states: it trains the modules and never reaches
the backbone. With both ("hidden" + auxiliary CE, the MPO default) ONE chain forward serves the two losses and the
backward routes each gradient where its regime sends it (:class:`_RoutedModules`; equal to two passes up to float
summation order). :class:`_Capture` records the backbone's last-layer state and call kwargs the modules reuse.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn

from mpo.mtp.logprobs import checkpoint_wanted, chunked_token_logprobs, const_head_logprobs
from mpo.mtp.modules import MTPModule, shifted

from mpo.enums import MTP_GRAD_MODES  # noqa: E402,F401 - the one source of the regime names
_DROP_LAYER_KWARGS = ("past_key_values", "past_key_value", "use_cache", "cache_position", "output_attentions")

# one entry per module k = 1 .. K-1: (logp [M_k], rank [M_k] | None, top1 [M_k] | None) on its valid flat rows
ModuleResults = list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]


class _Capture:
    """Forward hook on the backbone's last decoder layer: its output (h0, pre final norm) and call kwargs."""

    def __init__(self):
        self.output: torch.Tensor | None = None
        self.kwargs: dict | None = None

    def __call__(self, module, args, kwargs, output):
        if self.output is None:  # first call only (a checkpoint recompute in backward must not overwrite it)
            self.output = output[0] if isinstance(output, tuple) else output
            self.kwargs = {k: v for k, v in kwargs.items() if k not in _DROP_LAYER_KWARGS and k != "hidden_states"}


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


class _RoutedModules(torch.autograd.Function):
    """ONE forward of the MTP module chain for two losses whose gradients take different routes ("hidden" regime
    with the auxiliary CE, docs/method.md §4):

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


@dataclass
class ModuleChain:
    """The K-1 modules applied in chain order to one batch: ``rows_idx[k]`` / ``targets[k]`` are module k's valid
    flat rows (b * S + s) and the realised tokens they predict (index 0, the backbone's, is not used here)."""

    modules: nn.ModuleList
    layer_kwargs: dict
    rows_idx: list[torch.Tensor]
    targets: list[torch.Tensor]
    temperature: float
    chunk_size: int
    checkpoint_min_mb: float

    def run(self, h0: torch.Tensor, emb: torch.Tensor, *, params_const: bool, want_stats: bool,
            shared_head_const: bool = True) -> ModuleResults:
        """Module chain from h0; for module k, (logp, rank, top1) on its valid rows.

        params_const: module parameters are constants (the "hidden" regime); shared_head_const: a shared LM head
        (``share_head``) is a constant too (everywhere but the "joint" regime: it belongs to the backbone)."""
        results = []
        h_prev = h0
        for k, module in enumerate(self.modules, start=1):
            if params_const:
                module = _const_view(module)
            h_k = module(h_prev, shifted(emb, k), self.layer_kwargs)
            results.append(self._head_logprobs(module, h_k, k, params_const=params_const, want_stats=want_stats,
                                               shared_head_const=shared_head_const))
            h_prev = h_k
        return results

    def _head_logprobs(self, module: MTPModule, h_k: torch.Tensor, k: int, *, params_const: bool, want_stats: bool,
                       shared_head_const: bool):
        B, S, _ = h_k.shape
        head = module.head
        rows = h_k.reshape(B * S, -1).index_select(0, self.rows_idx[k])
        const_out = params_const or (head.is_shared and shared_head_const)
        if const_out and rows.requires_grad and not want_stats:
            # constant output layer: the input gradient is computed in the forward (_ConstHeadLogp)
            out = head.output_layer
            lp = const_head_logprobs(head.norm(rows), out.weight, getattr(out, "bias", None), self.targets[k],
                                     temperature=self.temperature, chunk_size=self.chunk_size)
            return lp, None, None
        head_fn = functools.partial(head, const_shared=True) if head.is_shared and shared_head_const else head
        lp, _, rk, tp = chunked_token_logprobs(
            head_fn, rows, self.targets[k], chunk_size=self.chunk_size, temperature=self.temperature,
            want_stats=want_stats, use_checkpoint=checkpoint_wanted(rows, head, self.checkpoint_min_mb),
        )
        return lp, rk, tp

    def run_routed(self, h0: torch.Tensor, emb: torch.Tensor) -> tuple[ModuleResults, ModuleResults]:
        """The "hidden" regime's policy terms and the auxiliary CE's terms from ONE chain forward
        (:class:`_RoutedModules`); returns (policy results, auxiliary results) shaped like :meth:`run`'s."""
        sizes = [int(self.rows_idx[k].numel()) for k in range(1, len(self.modules) + 1)]

        def run_fn(hx, ex):
            res = self.run(hx, ex, params_const=False, want_stats=False)
            return torch.cat([lp for lp, _, _ in res])

        params = [p for p in self.modules.parameters() if p.requires_grad]
        pol, aux = _RoutedModules.apply(run_fn, h0, emb, *params)
        return ([(c, None, None) for c in torch.split(pol, sizes)],
                [(c, None, None) for c in torch.split(aux, sizes)])


def regime_terms(chain: ModuleChain, h0: torch.Tensor, emb: torch.Tensor, *, mtp_grad: str, mtp_ce: bool,
                 want_stats: bool, fuse: bool) -> tuple[ModuleResults, ModuleResults | None]:
    """The module terms of the policy path under ``mtp_grad`` and, with ``mtp_ce``, the auxiliary CE's terms
    (live module parameters on detached backbone states); returns (policy results, auxiliary results | None).

    One chain pass serves both when it can: the fused routed pass ("hidden" + CE + ``fuse``), or the CE's pass
    when the policy's module terms are constants anyway (no grad, or "detach")."""
    if mtp_grad not in MTP_GRAD_MODES:
        raise ValueError(f"mtp_grad must be one of {MTP_GRAD_MODES}, got {mtp_grad!r}")
    grad_on = torch.is_grad_enabled()
    if (mtp_ce and grad_on and mtp_grad == "hidden" and fuse and not want_stats
            and (h0.requires_grad or emb.requires_grad)):
        return chain.run_routed(h0, emb)
    aux = None
    if mtp_ce:
        shared_pass = (not grad_on) or mtp_grad == "detach"
        aux = chain.run(h0.detach(), emb.detach(), params_const=False, want_stats=want_stats and shared_pass)
    if not grad_on:
        pol = aux if aux is not None else chain.run(h0, emb, params_const=False, want_stats=want_stats)
    elif mtp_grad == "detach":
        if aux is not None:
            pol = [(lp.detach(), rk, tp) for lp, rk, tp in aux]
        else:
            with torch.no_grad():
                pol = chain.run(h0.detach(), emb.detach(), params_const=False, want_stats=want_stats)
    elif mtp_grad == "hidden":
        pol = chain.run(h0, emb, params_const=True, want_stats=want_stats)
    else:  # joint: plain autograd, into a shared LM head too
        pol = chain.run(h0, emb, params_const=False, want_stats=want_stats, shared_head_const=False)
    return pol, aux
