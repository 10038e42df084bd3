"""MTP modules (mpo.mtp): architecture, causality, chunked log-probs vs a naive reference, gradient regimes,
memory, save/load."""

from __future__ import annotations
import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mpo.mtp import MTP_CONFIG_NAME, MTP_WEIGHTS_NAME, MTPArchitectureError, MTPModel, summarize_stats

V = 211


def tiny_llama(vocab=V, tie=True, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tie, max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_qwen2(vocab=V, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False, max_position_embeddings=256,
    )
    return Qwen2ForCausalLM(cfg).eval()


def randomize_modules(mm: MTPModel, seed=1):
    """Perturb module weights so that no module is an (accidental) identity copy of another."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mm.mtp.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def padded_batch(vocab=V, seed=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 12), generator=g)
    am = torch.ones_like(ids)
    am[0, 9:] = 0  # right padding
    am[1, :4] = 0  # left padding
    am[2, :2] = 0  # both sides
    am[2, 10:] = 0
    return ids, am


def reference(mm: MTPModel, ids, am, temperature=1.0):
    """Naive reference: full [B, S, V] logits of every predictor, computed from the module components."""
    pos = (am.long().cumsum(-1) - 1).clamp(min=0)
    cap = {}

    def hook(mod, args, kwargs, out):
        cap.setdefault("h0", out)
        cap.setdefault("kw", {k: v for k, v in kwargs.items() if k not in ("past_key_values", "use_cache")})

    hd = mm.backbone.model.layers[-1].register_forward_hook(hook, with_kwargs=True)
    try:
        out = mm.backbone(input_ids=ids, attention_mask=am, position_ids=pos, use_cache=False)
    finally:
        hd.remove()
    logits = [out.logits.float() / temperature]
    h = cap["h0"]
    emb = mm.backbone.model.embed_tokens(ids)
    B, S = ids.shape
    for k, mod in enumerate(mm.mtp, start=1):
        e = torch.zeros_like(emb)
        e[:, : S - k] = emb[:, k:]
        u = mod.proj(torch.cat([mod.norm_h(h), mod.norm_e(e)], -1))
        h = mod.block(u, **cap["kw"])
        logits.append(torch.nn.functional.linear(mod.head.norm(h), mod.head.weight).float() / temperature)
    K = len(logits)
    lp = torch.zeros(B, S, K)
    valid = torch.zeros(B, S, K, dtype=torch.bool)
    rank = torch.zeros(B, S, K, dtype=torch.long)
    top1 = torch.zeros(B, S, K, dtype=torch.bool)
    ent = torch.zeros(B, S)
    for k, lg in enumerate(logits):
        ls = torch.log_softmax(lg, -1)
        for b in range(B):
            for s in range(S):
                t = s + k + 1
                if t < S and am[b, s] and am[b, t]:
                    valid[b, s, k] = True
                    lp[b, s, k] = ls[b, s, ids[b, t]]
                    rank[b, s, k] = (lg[b, s] > lg[b, s, ids[b, t]]).sum()
                    top1[b, s, k] = lg[b, s].argmax() == ids[b, t]
                    if k == 0:
                        ent[b, s] = -(ls[b, s].exp() * ls[b, s]).sum()
    return logits, lp, valid, rank, top1, ent


# ----------------------------------------------------------------------------------------------- structure
def test_module_structure_and_init():
    m = tiny_llama()
    with torch.no_grad():
        m.model.norm.weight.mul_(torch.linspace(0.5, 1.5, m.config.hidden_size))
    mm = MTPModel.from_backbone(m, 3)
    assert len(mm.mtp) == 2
    mod = mm.mtp[0]
    last = m.model.layers[-1]
    for (n1, p1), (n2, p2) in zip(mod.block.named_parameters(), last.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2) and p1.data_ptr() != p2.data_ptr()
    # head and final norm: copies, untied even though the backbone ties its embeddings
    assert torch.equal(mod.head.lm_head.weight, m.lm_head.weight)
    assert mod.head.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr()
    assert torch.equal(mod.head.norm.weight, m.model.norm.weight)
    assert (mod.norm_h.weight == 1).all() and (mod.norm_e.weight == 1).all()
    ptrs = [p.data_ptr() for p in mm.parameters()]
    assert len(ptrs) == len(set(ptrs)), "no two parameters may share storage"
    d = m.config.hidden_size
    assert torch.equal(mod.proj.weight[:, :d], torch.eye(d)) and not mod.proj.weight[:, d:].any()
    # embeddings are shared, not copied: no module parameter has the embedding's shape
    assert all(p.shape != m.model.embed_tokens.weight.shape or p is mod.head.lm_head.weight for p in mod.parameters())
    n = mm.num_parameters()
    per_module = sum(p.numel() for p in mod.parameters())
    assert n["modules"] == 2 * per_module and n["backbone"] == sum(p.numel() for p in m.parameters())
    frozen = tiny_llama().requires_grad_(False)
    assert all(p.requires_grad for p in MTPModel.from_backbone(frozen, 2).mtp.parameters())
    rnd = MTPModel.from_backbone(tiny_llama(), 2, proj_init="random")
    assert not torch.equal(rnd.mtp[0].proj.weight[:, :d], torch.eye(d))


def test_unsupported_architecture_names_it():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    with pytest.raises(MTPArchitectureError, match="GPT2LMHeadModel"):
        MTPModel.from_backbone(m, 3)


def test_K1_has_no_modules_and_matches_plain_forward():
    m = tiny_llama()
    ids, am = padded_batch()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        plain = m(input_ids=ids, attention_mask=am).logits
    mm = MTPModel.from_backbone(m, 1)
    assert len(mm.mtp) == 0 and mm.num_parameters()["modules"] == 0
    with torch.no_grad():
        lp = mm.realized_token_logprobs(ids, am)
    assert lp.shape == (3, 12, 1)
    ls = torch.log_softmax(plain.float(), -1)
    for b in range(3):
        for s in range(11):
            if am[b, s] and am[b, s + 1]:
                assert torch.allclose(lp[b, s, 0], ls[b, s, ids[b, s + 1]], atol=1e-5, rtol=0)
            else:
                assert lp[b, s, 0] == 0
    assert (lp[:, -1] == 0).all()
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_backbone_bit_identical_with_modules_attached():
    m = tiny_llama()
    ids, am = padded_batch()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        plain = m(input_ids=ids, attention_mask=am).logits
    mm = MTPModel.from_backbone(m, 4)
    randomize_modules(mm)
    with torch.no_grad():
        mm(ids, am)  # a full MTP forward must leave the backbone untouched (no lingering hooks)
        again = m(input_ids=ids, attention_mask=am).logits
        lp1 = MTPModel.from_backbone(m, 1).realized_token_logprobs(ids, am)
        lp4 = mm.realized_token_logprobs(ids, am)
    assert torch.equal(plain, again)
    assert len(m.model.layers[-1]._forward_hooks) == 0
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(lp4[..., 0], lp1[..., 0])  # k = 0 column does not depend on K


def test_realized_token_logprobs_and_outputs_split_and_deprecated_wrapper():
    """The two return types have two names; the old keyword-dependent name still works (deprecated)."""
    mm = MTPModel.from_backbone(tiny_llama(), 3)
    randomize_modules(mm)
    ids, am = padded_batch()
    with torch.no_grad():
        full = mm(ids, am, return_stats=True)
        lp = mm.realized_token_logprobs(ids, am)
        out = mm.realized_outputs(ids, am, return_stats=True)
        with pytest.raises(ValueError, match="realized_outputs"):
            mm.realized_token_logprobs(ids, am, return_stats=True)
        with pytest.warns(DeprecationWarning, match="realized_token_logprobs"):
            old_lp = mm.realized_logprobs(ids, am)
        with pytest.warns(DeprecationWarning):
            old_out = mm.realized_logprobs(ids, am, return_stats=True)
    assert isinstance(lp, torch.Tensor) and torch.equal(lp, full.logprobs) and torch.equal(old_lp, lp)
    assert torch.equal(out.rank, full.rank) and torch.equal(old_out.rank, full.rank)


def test_backbone_states_and_shift_old_private_names_still_work():
    """mpo.train.critic calls MTPModel._backbone_states / _shifted: the aliases are the public methods."""
    mm = MTPModel.from_backbone(tiny_llama(), 2)
    ids, am = padded_batch()
    assert MTPModel._shifted is MTPModel.shifted and MTPModel._backbone_states is MTPModel.backbone_states
    x = torch.arange(6).view(1, 6)
    assert MTPModel.shifted(x, 2, fill=-1).tolist() == [[2, 3, 4, 5, -1, -1]]
    with torch.no_grad():
        h0, h_last, kw = mm.backbone_states(ids, am)
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        h0b, h_lastb, _ = mm._backbone_states(ids, am, pos)
    assert torch.equal(h0, h0b) and torch.equal(h_last, h_lastb) and "position_embeddings" in kw


def test_auxiliary_ce_is_one_weighted_mean():
    from mpo.mtp import auxiliary_ce

    lps = [torch.tensor([-1.0, -3.0]), torch.tensor([-2.0]), torch.zeros(0)]
    total, per = auxiliary_ce(lps, [1.0, 0.5, 0.25])
    assert per.tolist() == [2.0, 2.0, 0.0] and float(total) == 3.0
    with pytest.raises(ValueError, match="need K-1 = 3 lambdas"):
        auxiliary_ce(lps, [1.0, 0.5])


# ----------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_matches_naive_reference_with_padding(family):
    m = tiny_llama() if family == "llama" else tiny_qwen2()
    mm = MTPModel.from_backbone(m, 4, chunk_size=5)  # several chunks per predictor
    randomize_modules(mm)
    ids, am = padded_batch()
    with torch.no_grad():
        out = mm(ids, am, return_stats=True, return_entropy=True, return_hidden=True, temperature=0.7)
        _, lp, valid, rank, top1, ent = reference(mm, ids, am, temperature=0.7)
    assert out.logprobs.shape == (3, 12, 4) and out.logprobs.dtype == torch.float32
    assert torch.equal(out.valid, valid)
    assert torch.allclose(out.logprobs, lp, atol=1e-5, rtol=0)
    assert (out.logprobs[~valid] == 0).all()
    assert torch.equal(out.rank, rank) and torch.equal(out.top1, top1)
    assert torch.allclose(out.entropy, ent, atol=1e-5)
    assert out.hidden.shape == (3, 12, m.config.hidden_size)
    stats = summarize_stats(out)
    assert len(stats["top1"]) == 4 and stats["count"][3] == int(valid[..., 3].sum())


def test_logprob_mask_restricts_positions():
    mm = MTPModel.from_backbone(tiny_llama(), 3)
    randomize_modules(mm)
    ids, am = padded_batch()
    want = torch.zeros_like(am)
    want[:, 6:] = 1
    with torch.no_grad():
        full = mm(ids, am)
        part = mm(ids, am, logprob_mask=want)
    assert torch.equal(part.valid, full.valid & want.bool()[..., None])
    assert torch.allclose(part.logprobs, torch.where(part.valid, full.logprobs, 0.0), atol=1e-6)


def test_module_k_depends_only_on_tokens_up_to_s_plus_k():
    mm = MTPModel.from_backbone(tiny_llama(), 4)
    randomize_modules(mm)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, V, (1, 14), generator=g)
    am = torch.ones_like(ids)
    s = 5
    with torch.no_grad():
        base = reference(mm, ids, am)[0]
        for k in range(4):
            later = ids.clone()
            later[0, s + k + 1 :] = (later[0, s + k + 1 :] + 1) % V
            lg_later = reference(mm, later, am)[0][k]
            assert torch.equal(lg_later[0, : s + 1], base[k][0, : s + 1]), f"predictor {k} sees a later token"
            at = ids.clone()
            at[0, s + k] = (at[0, s + k] + 1) % V
            lg_at = reference(mm, at, am)[0][k]
            assert not torch.allclose(lg_at[0, s], base[k][0, s]), f"predictor {k} ignores token s+k"


# ----------------------------------------------------------------------------------------------- memory
class _MaxTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


def _saved_bytes(fn, params):
    """Bytes of the distinct activation storages autograd keeps for backward (parameters excluded)."""
    seen = {}
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}

    def pack(t):
        try:
            st = t.untyped_storage()
            if st.data_ptr() not in param_ptrs:
                seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        except Exception:  # noqa: BLE001
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        res = fn()
    return sum(seen.values()), res


def test_chunked_logprobs_use_less_memory_than_naive():
    vocab = 4000
    mm = MTPModel.from_backbone(tiny_llama(vocab=vocab), 3, chunk_size=16)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, 64), generator=g)
    am = torch.ones_like(ids)
    B, S = ids.shape

    def chunked():
        return mm(ids, am, mtp_grad="joint").logprobs.sum()

    def naive():
        logits, *_ = reference(mm, ids, am)
        return sum(torch.log_softmax(lg, -1).gather(-1, ids[..., None] % vocab).sum() for lg in logits)

    mode = _MaxTensor()
    with mode:
        saved_c, loss_c = _saved_bytes(chunked, list(mm.parameters()))
    max_c = mode.max_numel
    mode = _MaxTensor()
    with mode:
        saved_n, _ = _saved_bytes(naive, list(mm.parameters()))
    max_n = mode.max_numel
    # never a [B, S, vocab] tensor: the largest is a [chunk, vocab] logit block or a [vocab, d] weight
    d = mm.backbone.config.hidden_size
    assert max_n >= B * S * vocab and max_c <= max(16, d) * vocab < B * S * vocab
    full_logits_bytes = 3 * B * S * vocab * 4
    assert saved_n >= full_logits_bytes
    # the chunked path keeps only layer activations and [chunk, d] rows; the naive one keeps K full logit tensors
    assert saved_n - saved_c > full_logits_bytes and saved_c < saved_n / 4, (saved_c, saved_n)
    loss_c.backward()  # the checkpointed chunks recompute fine
    assert mm.mtp[1].head.lm_head.weight.grad is not None


# ----------------------------------------------------------------------------------------------- gradients
def _grads(mm):
    bb = {n: (p.grad.clone() if p.grad is not None else None) for n, p in mm.backbone.named_parameters()}
    md = {n: (p.grad.clone() if p.grad is not None else None) for n, p in mm.mtp.named_parameters()}
    mm.zero_grad(set_to_none=True)
    return bb, md


def _nonzero(gs):
    return any(g is not None and g.abs().sum() > 0 for g in gs.values())


def _equal_grads(a, b):
    for n in a:
        ga = a[n] if a[n] is not None else 0
        gb = b[n] if b[n] is not None else 0
        if not torch.allclose(torch.as_tensor(ga).float(), torch.as_tensor(gb).float(), atol=1e-7):
            return False
    return True


@pytest.fixture()
def grad_setup():
    mm = MTPModel.from_backbone(tiny_llama(), 3)
    randomize_modules(mm)
    ids, am = padded_batch()
    return mm, ids, am


def test_grad_hidden(grad_setup):
    mm, ids, am = grad_setup
    mm(ids, am, mtp_grad="hidden").logprobs[..., 1:].sum().backward()
    bb, md = _grads(mm)
    assert _nonzero(bb), "hidden: module terms must reach the backbone"
    assert not _nonzero(md), "hidden: module params must get no policy gradient"
    assert bb["model.layers.1.mlp.down_proj.weight"] is not None
    # same values as joint
    with torch.no_grad():
        assert torch.equal(mm(ids, am, mtp_grad="hidden").logprobs, mm(ids, am, mtp_grad="joint").logprobs)


def test_grad_detach(grad_setup):
    mm, ids, am = grad_setup
    mm(ids, am, mtp_grad="detach").logprobs.sum().backward()
    bb_all, md_all = _grads(mm)
    mm(ids, am, mtp_grad="detach").logprobs[..., 0].sum().backward()
    bb_0, _ = _grads(mm)
    assert not _nonzero(md_all)
    assert _nonzero(bb_all) and _equal_grads(bb_all, bb_0), "detach: backbone grads must come from k = 0 only"


def test_grad_joint(grad_setup):
    mm, ids, am = grad_setup
    mm(ids, am, mtp_grad="joint").logprobs[..., 1:].sum().backward()
    bb, md = _grads(mm)
    assert _nonzero(bb) and _nonzero(md)


def test_aux_ce_trains_modules_only(grad_setup):
    mm, ids, am = grad_setup
    loss, per = mm.mtp_ce_loss(ids, am, return_per_module=True)
    assert per.shape == (2,) and loss.requires_grad
    lam = torch.tensor(mm.lambdas)
    assert torch.allclose(loss.detach(), (per * lam).sum())
    loss.backward()
    bb, md = _grads(mm)
    assert not _nonzero(bb) and _nonzero(md)
    assert all(g is not None for g in md.values() if g is not None)
    # the same loss from a forward that also computes the policy terms (hidden regime)
    out = mm(ids, am, mtp_grad="hidden", mtp_ce=True)
    assert torch.allclose(out.mtp_ce, loss.detach(), atol=1e-6)
    out.mtp_ce.backward()
    bb2, md2 = _grads(mm)
    assert not _nonzero(bb2) and _equal_grads(md2, md)
    # CE equals minus the mean module log-prob over valid positions
    with torch.no_grad():
        o = mm(ids, am)
    ce1 = -o.logprobs[..., 1][o.valid[..., 1]].mean()
    assert torch.allclose(per[0], ce1, atol=1e-5)


def test_aux_ce_with_policy_terms_in_detach_mode_shares_one_pass(grad_setup):
    mm, ids, am = grad_setup
    out = mm(ids, am, mtp_grad="detach", mtp_ce=True)
    (out.logprobs.sum() + out.mtp_ce).backward()
    bb, md = _grads(mm)
    mm(ids, am).logprobs[..., 0].sum().backward()
    bb0, _ = _grads(mm)
    assert _equal_grads(bb, bb0) and _nonzero(md)


# ----------------------------------------------------------------------------------------------- fused passes
def test_const_head_logprobs_value_and_input_gradient():
    """The constant-head path (gradient w.r.t. the input computed in the forward) equals plain autograd: values,
    d/dx for an arbitrary upstream gradient, across chunk boundaries, with a bias and a temperature; W gets none."""
    from mpo.mtp import const_head_logprobs

    g = torch.Generator().manual_seed(0)
    M, d, vocab = 23, 8, 50
    x = torch.randn(M, d, generator=g, dtype=torch.float64).float().requires_grad_()
    W = torch.randn(vocab, d, generator=g).requires_grad_()
    b = torch.randn(vocab, generator=g)
    t = torch.randint(0, vocab, (M,), generator=g)
    up = torch.randn(M, generator=g)
    ref = torch.log_softmax((x @ W.T + b) / 0.7, -1).gather(-1, t[:, None]).squeeze(-1)
    (gx_ref,) = torch.autograd.grad((ref * up).sum(), x)
    lp = const_head_logprobs(x, W, b, t, temperature=0.7, chunk_size=5)  # 5 chunks, the last one partial
    assert torch.allclose(lp, ref.detach(), atol=1e-6)
    (lp * up).sum().backward()
    assert torch.allclose(x.grad, gx_ref, atol=1e-5) and W.grad is None
    empty = const_head_logprobs(x[:0], W, None, t[:0])
    assert empty.shape == (0,)


def _fused_vs_two_pass(mm, ids, am):
    res = {}
    for fuse in (False, True):
        mm.fuse_module_passes = fuse
        out = mm(ids, am, mtp_grad="hidden", mtp_ce=True, temperature=0.7)
        up = torch.randn(out.logprobs.shape, generator=torch.Generator().manual_seed(5))
        ((out.logprobs * up).sum() + 0.3 * out.mtp_ce).backward()
        res[fuse] = (out.logprobs.detach(), out.mtp_ce.detach(), out.mtp_ce_per_module, _grads(mm))
    return res[False], res[True]


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("checkpoint_min_mb", [0.0, 1e9])
def test_fused_module_pass_equals_two_passes(share, checkpoint_min_mb):
    """"hidden" regime + auxiliary CE from one module-chain forward (_RoutedModules) = the two-pass computation
    (policy terms with constant module params on live states, CE with live params on detached states), with own
    head copies or a shared head, chunks checkpointed or not: same log-probs, CE and every gradient."""
    torch.manual_seed(0)
    mm = MTPModel.from_backbone(tiny_llama(tie=not share), 3, share_head=share)
    randomize_modules(mm)
    mm.checkpoint_min_mb = checkpoint_min_mb
    ids, am = padded_batch()
    (lp0, ce0, per0, (bb0, md0)), (lp1, ce1, per1, (bb1, md1)) = _fused_vs_two_pass(mm, ids, am)
    assert torch.equal(lp0, lp1) and torch.allclose(ce0, ce1, atol=1e-7) and torch.allclose(per0, per1, atol=1e-7)
    for a, b in ((bb0, bb1), (md0, md1)):
        assert a.keys() == b.keys()
        for n in a:
            assert (a[n] is None) == (b[n] is None), n
            if a[n] is not None:
                assert torch.allclose(a[n], b[n], rtol=1e-5, atol=1e-6 * float(a[n].abs().max())), n
    assert _nonzero(bb1) and _nonzero(md1)
    # the routes themselves: policy terms alone reach the backbone only, the CE alone the modules only
    out = mm(ids, am, mtp_grad="hidden", mtp_ce=True)
    out.logprobs[..., 1:].sum().backward(retain_graph=True)
    bb, md = _grads(mm)
    assert _nonzero(bb) and not _nonzero(md)
    with pytest.raises(RuntimeError, match="second backward through the fused"):
        out.mtp_ce.backward()
    mm.zero_grad(set_to_none=True)
    mm(ids, am, mtp_grad="hidden", mtp_ce=True).mtp_ce.backward()
    bb, md = _grads(mm)
    assert not _nonzero(bb) and _nonzero(md)


def test_fused_module_pass_keeps_fewer_activations():
    """One chain forward and no kept [rows, vocab] logits for constant heads: less saved for backward."""
    vocab = 4000
    mm = MTPModel.from_backbone(tiny_llama(vocab=vocab, tie=False), 4, share_head=True, checkpoint_min_mb=1e9)
    ids = torch.randint(0, vocab, (2, 48), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)

    def loss():
        out = mm(ids, am, mtp_grad="hidden", mtp_ce=True)
        return out.logprobs.sum() + out.mtp_ce

    saved = {}
    for fuse in (False, True):
        mm.fuse_module_passes = fuse
        saved[fuse], _ = _saved_bytes(loss, list(mm.parameters()))
    backbone, _ = _saved_bytes(lambda: mm(ids, am, compute_modules=False).logprobs.sum(), list(mm.parameters()))
    # what the modules keep: one chain's activations instead of two (measured 0.65x: a const-param pass keeps less)
    assert saved[True] - backbone < 0.75 * (saved[False] - backbone), (saved, backbone)


# ----------------------------------------------------------------------------------------------- shared LM head
def _untied_pair(K=3):
    """The same modules twice: own head copies, and sharing the backbone's (untied) head; identical at init."""
    torch.manual_seed(0)
    own = MTPModel.from_backbone(tiny_llama(tie=False), K)
    randomize_modules(own)
    with torch.no_grad():  # the copies equal the backbone's head again (the rest of each module stays perturbed)
        for module in own.mtp:
            module.head.lm_head.weight.copy_(own.backbone.lm_head.weight)
    shared = MTPModel.from_backbone(tiny_llama(tie=False), K, share_head=True)
    state = {k: v for k, v in own.mtp.state_dict().items() if ".head.lm_head." not in k}
    shared.mtp.load_state_dict(state, strict=True)
    return own, shared


def test_shared_head_structure_and_same_logprobs_as_copies():
    own, shared = _untied_pair()
    head = shared.backbone.lm_head
    vocab, d = head.weight.shape
    for module in shared.mtp:
        assert module.head.is_shared and module.head.weight is head.weight
        assert all(p is not head.weight for p in module.parameters())
        assert not any("lm_head" in k for k in module.state_dict())
    # K-1 = 2 fewer [vocab, d] weights; the backbone is untouched
    assert own.num_parameters()["modules"] - shared.num_parameters()["modules"] == 2 * vocab * d
    assert own.num_parameters()["backbone"] == shared.num_parameters()["backbone"]
    ids, am = padded_batch()
    with torch.no_grad():
        a, b = own(ids, am, return_stats=True), shared(ids, am, return_stats=True)
    assert torch.equal(a.valid, b.valid) and torch.equal(a.rank, b.rank)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-6)
    _, lp, valid, _, _, _ = reference(shared, ids, am)
    assert torch.allclose(b.logprobs[valid], lp[valid], atol=1e-5)


def test_shared_head_gradients_follow_the_regimes():
    own, shared = _untied_pair()
    ids, am = padded_batch()
    # hidden: module terms reach the backbone through h0 only; the shared head is a constant there
    shared(ids, am, mtp_grad="hidden").logprobs[..., 1:].sum().backward()
    bb, md = _grads(shared)
    assert not _nonzero({"h": bb["lm_head.weight"]}) and _nonzero(bb) and not _nonzero(md)
    # joint: plain autograd, the shared head gets the module terms' gradient
    shared(ids, am, mtp_grad="joint").logprobs[..., 1:].sum().backward()
    bb, md = _grads(shared)
    assert bb["lm_head.weight"] is not None and bb["lm_head.weight"].abs().sum() > 0 and _nonzero(md)
    # ... and that gradient is the sum of what the K-1 head copies get
    own(ids, am, mtp_grad="joint").logprobs[..., 1:].sum().backward()
    copies = sum(p.grad for n, p in own.mtp.named_parameters() if n.endswith("head.lm_head.weight"))
    assert torch.allclose(bb["lm_head.weight"], copies, atol=1e-5)
    own.zero_grad(set_to_none=True)
    # auxiliary CE: trains the modules only, never the shared head
    loss = shared.mtp_ce_loss(ids, am)
    loss.backward()
    bb, md = _grads(shared)
    assert not _nonzero(bb) and _nonzero(md)
    out = shared(ids, am, mtp_grad="hidden", mtp_ce=True)
    out.mtp_ce.backward()
    bb, _ = _grads(shared)
    assert not _nonzero(bb)


def test_shared_head_save_load(tmp_path):
    _, shared = _untied_pair()
    shared.backbone.save_pretrained(tmp_path / "base")
    shared.save_modules(tmp_path / "mtp")
    cfg = json.loads((tmp_path / "mtp" / MTP_CONFIG_NAME).read_text())
    assert cfg["share_head"] is True
    from safetensors.torch import load_file

    assert not any("lm_head" in k for k in load_file(str(tmp_path / "mtp" / MTP_WEIGHTS_NAME)))
    back = MTPModel.load(tmp_path / "base", tmp_path / "mtp")
    assert back.share_head and back.mtp[0].head.weight is back.backbone.lm_head.weight
    ids, am = padded_batch()
    with torch.no_grad():
        assert torch.equal(back(ids, am).logprobs, shared(ids, am).logprobs)


# ----------------------------------------------------------------------------------------------- IO
def test_save_load_round_trip_exact(tmp_path):
    m = tiny_llama(tie=True)
    mm = MTPModel.from_backbone(m, 3, lambdas=[1.0, 0.5])
    randomize_modules(mm)
    m.save_pretrained(tmp_path / "base")
    mm.save_modules(tmp_path / "mods")
    assert (tmp_path / "mods" / "mtp.safetensors").is_file() and (tmp_path / "mods" / "mtp_config.json").is_file()
    # the backbone directory stays a plain HF checkpoint
    assert not (tmp_path / "base" / "mtp.safetensors").exists()
    loaded = MTPModel.load(tmp_path / "base", tmp_path / "mods").eval()
    assert loaded.K == 3 and loaded.lambdas == [1.0, 0.5]
    sd_a, sd_b = mm.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    ids, am = padded_batch()
    with torch.no_grad():
        assert torch.equal(mm.realized_token_logprobs(ids, am), loaded.realized_token_logprobs(ids, am))
    # an already loaded backbone works too; a mismatching K does not load silently
    again = MTPModel.load(m, tmp_path / "mods")
    assert torch.equal(again.mtp[1].proj.weight, mm.mtp[1].proj.weight)
    other = MTPModel.from_backbone(tiny_llama(), 4)
    with pytest.raises(RuntimeError):
        other.load_modules_state(tmp_path / "mods")


def test_qwen2_untied_save_load(tmp_path):
    m = tiny_qwen2()
    mm = MTPModel.from_backbone(m, 2)
    assert mm.mtp[0].block.self_attn.q_proj.bias is not None  # Qwen2 attention bias is copied
    randomize_modules(mm)
    mm.save_modules(tmp_path / "mods")
    loaded = MTPModel.load(m, tmp_path / "mods")
    ids, am = padded_batch()
    with torch.no_grad():
        assert torch.equal(mm.realized_token_logprobs(ids, am), loaded.realized_token_logprobs(ids, am))
