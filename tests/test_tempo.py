"""TEMPO advantages (``mpo.algos.tempo_advantages``, docs/method.md §8).

Pinned: a hand-worked prefix tree (numbers worked out by hand below), the reduction to GRPO when no
response branches, the doubled first token and GRPO afterwards when every response branches at token 0,
zero padding (padding never counts as a shared token), and a brute-force loop over random groups that
follows the authors' estimator (fatebreaker/tempo, ``compute_tempo_outcome_advantage``) token by token.
"""

from __future__ import annotations

import pytest
import torch

from mpo.algos import group_advantages, tempo_advantages

PAD = 0


def _hand_tree():
    # G = 4, T = 3.  Tree: root -> 1 -> {2 -> {3, 4}, 5 -> 6};  root -> 7 -> 8 (row 3 has 2 tokens).
    ids = torch.tensor([[1, 2, 3], [1, 2, 4], [1, 5, 6], [7, 8, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    return ids, mask, rewards


def test_hand_worked_tree_unscaled():
    ids, mask, r = _hand_tree()
    # mean r = 1/2.  V([1]) = 2/3, V([1,2]) = 1/2, V([1,5]) = 1, V([7]) = 0, leaves = own reward.
    # A_{i,t} = r_i - 1/2 + V(prefix through t) - V(prefix before t), V(empty) = 1/2:
    # row 0: 1/2 + (2/3 - 1/2) = 2/3;  1/2 + (1/2 - 2/3) = 1/3;  1/2 + (1 - 1/2) = 1
    # row 1: -1/2 + 1/6 = -1/3;  -1/2 - 1/6 = -2/3;  -1/2 + (0 - 1/2) = -1
    # row 2: 2/3;  1/2 + (1 - 2/3) = 5/6;  1/2 (alone: TD 0)
    # row 3: -1/2 + (0 - 1/2) = -1;  -1/2;  padding 0
    expected = torch.tensor([
        [2 / 3, 1 / 3, 1.0],
        [-1 / 3, -2 / 3, -1.0],
        [2 / 3, 5 / 6, 1 / 2],
        [-1.0, -1 / 2, 0.0],
    ])
    got = tempo_advantages(ids, mask, r, 4, scale=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_hand_worked_tree_scaled_by_group_std():
    ids, mask, r = _hand_tree()
    std = (1 / 3) ** 0.5  # unbiased: sum of squared deviations 4 * 1/4 = 1, divided by G - 1 = 3
    unscaled = tempo_advantages(ids, mask, r, 4, scale=False)
    got = tempo_advantages(ids, mask, r, 4, eps=1e-6)
    torch.testing.assert_close(got, unscaled / (std + 1e-6), rtol=1e-6, atol=1e-7)
    assert got[0, 2].item() == pytest.approx(1 / (std + 1e-6), rel=1e-6)


def test_no_branching_is_grpo():
    ids = torch.tensor([[4, 5, 6, 7]] * 3 + [[9, 9, 9, 9]] * 3)
    mask = torch.ones_like(ids)
    r = torch.tensor([1.0, 0.0, 0.5, 2.0, 2.0, -1.0])
    got = tempo_advantages(ids, mask, r, 3)
    torch.testing.assert_close(got, group_advantages(r, 3)[:, None].expand(6, 4), rtol=0, atol=1e-6)


def test_all_branch_at_token_zero():
    # Every response is alone from token 0: V jumps from the group mean to r_i at token 0 (TD = r_i - mean,
    # twice the GRPO advantage there), then each branch is a single leaf (TD 0, plain GRPO).
    ids = torch.tensor([[1, 9, 9], [2, 9, 9], [3, 9, 9], [4, 9, 9]])
    mask = torch.ones_like(ids)
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    grpo = group_advantages(r, 4)
    got = tempo_advantages(ids, mask, r, 4)
    torch.testing.assert_close(got[:, 1:], grpo[:, None].expand(4, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(got[:, 0], 2 * grpo, rtol=0, atol=1e-6)


def test_padding_is_zero_and_never_shared():
    # Row 1 stops after [5, 6]; its padding id equals row 0's token 2, which must not make them share [5, 6, 0].
    ids = torch.tensor([[5, 6, PAD, 3], [5, 6, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    r = torch.tensor([1.0, 0.0])
    got = tempo_advantages(ids, mask, r, 2, scale=False)
    # [5], [5, 6] shared (V = 1/2, TD 0); row 0 alone from token 2: TD = 1 - 1/2.
    torch.testing.assert_close(got, torch.tensor([[0.5, 0.5, 1.0, 0.5], [-0.5, -0.5, 0.0, 0.0]]))
    assert torch.equal(tempo_advantages(ids, mask, r, 1), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="multiple of 3"):
        tempo_advantages(ids, mask, r, 3)


def _brute_force(ids, mask, r, G, scale, eps):
    """The authors' loop (per response, per token, shrinking the branch), with mask-aware token equality."""
    B, T = ids.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for i in range(B):
        g0 = (i // G) * G
        group = list(range(g0, g0 + G))
        rs = torch.tensor([float(r[k]) for k in group], dtype=torch.float64)
        mean, std = rs.mean().item(), rs.std().item()
        branch = group
        for t in range(T):
            if not mask[i, t]:
                break
            new = [k for k in branch if mask[k, t] and ids[k, t] == ids[i, t]]
            v_before = sum(float(r[k]) for k in branch) / len(branch)
            v_after = sum(float(r[k]) for k in new) / len(new)
            a = float(r[i]) - mean + v_after - v_before
            out[i, t] = a / (std + eps) if scale else a
            branch = new
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_groups_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    G, n, T = [(2, 3, 5), (4, 2, 7), (5, 3, 6), (8, 2, 9), (3, 4, 4), (6, 1, 8)][seed]
    B = G * n
    vocab = 2 + seed % 3  # small vocabularies: long shared prefixes and many branch points
    ids = torch.randint(1, vocab + 1, (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]
    ids = torch.where(mask, ids, torch.full_like(ids, PAD))
    r = torch.randint(0, 3, (B,), generator=g).double() / 2
    for scale in (True, False):
        got = tempo_advantages(ids, mask, r, G, scale=scale)
        torch.testing.assert_close(got, _brute_force(ids, mask, r, G, scale, 1e-6), rtol=1e-9, atol=1e-9)
