"""Collectives over the training processes (``accelerate``); plain identities with one process."""

from __future__ import annotations

import torch

from mpo import algos


class Dist:
    """Sum / any / max / concatenation across processes, and whitening with statistics pooled over all of them."""

    def __init__(self, acc):
        self.acc, self.world, self.device = acc, acc.num_processes, acc.device

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over processes."""
        return self.acc.reduce(x, reduction="sum") if self.world > 1 else x

    def sum(self, x: float) -> float:
        """A Python number summed over processes."""
        return float(self.reduce(torch.tensor([float(x)], device=self.device)).item())

    def any(self, flag: bool) -> bool:
        return bool(self.reduce(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def max(self, x: float) -> float:
        t = torch.tensor([float(x)], device=self.device)
        return float(self.acc.gather(t).max().item()) if self.world > 1 else float(x)

    def gather_cat(self, v: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor over processes (lengths may differ)."""
        if self.world == 1:
            return v
        n = self.acc.gather(torch.tensor([v.numel()], device=v.device))
        padded = self.acc.gather(self.acc.pad_across_processes(v, dim=0)).view(self.world, -1)
        return torch.cat([padded[i, : int(n[i])] for i in range(self.world)])

    def whiten(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``algos.masked_whiten`` with statistics pooled over every process's tokens."""
        if self.world == 1:
            return algos.masked_whiten(x, mask)
        pooled = self.gather_cat(x[mask.bool()])
        ones = torch.ones_like(pooled, dtype=torch.bool)
        mean, var = algos.masked_mean(pooled, ones), algos.masked_var(pooled, ones)
        return torch.where(mask.bool(), (x - mean) * torch.rsqrt(var + 1e-8), torch.zeros_like(x))
