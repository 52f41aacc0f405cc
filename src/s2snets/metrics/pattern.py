"""Constant patterns: what a decoder writes into every reconstruction, whatever the input.

Over a set of N originals x_n and reconstructions r_n, (N, C, H, W) in [0, 1]:

    mean_difference[c, h, w] = (1/N) sum_n (r_n - x_n)[c, h, w]
    constancy[c, h, w]       = 1 - Var_n(r_n[c, h, w]) / Var_n(x_n[c, h, w])

Constancy 1: the pixel has the same value in every reconstruction (it carries no information about the input);
0: it varies as much as the originals; negative: it varies more. Pixels where the originals barely vary
(Var_n(x_n) < 1% of its mean over pixels, e.g. Fashion-MNIST's padding and corners) are set to NaN and left out of
the summaries, which would otherwise be ruled by a ratio with a near-zero denominator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from s2snets.metrics.spectrum import lattice_energy


@dataclass
class ConstantPattern:
    mean_difference: Tensor  # (C, H, W)
    constancy: Tensor  # (C, H, W), NaN where the originals are constant
    mean_constancy: float
    constant_share: float  # share of (varying) pixels with constancy > 0.5
    lattice: dict[int, float]  # lattice energy of mean_difference per period

    def summary(self) -> dict:
        return {
            "mean_constancy": self.mean_constancy,
            "constant_share": self.constant_share,
            "mean_abs_difference": float(self.mean_difference.abs().mean()),
            "lattice_energy": {str(k): v for k, v in self.lattice.items()},
        }


def constant_pattern(originals: Tensor, reconstructions: Tensor, periods: tuple[int, ...] = (2, 4, 8)) -> ConstantPattern:
    """Per-pixel mean difference and constancy of reconstructions over a set. (N, C, H, W) x2 in [0, 1]."""
    if originals.shape != reconstructions.shape:
        raise ValueError(f"shapes differ: {tuple(originals.shape)} vs {tuple(reconstructions.shape)}")
    x, r = originals.double(), reconstructions.double()
    mean_diff = (r - x).mean(0)
    var_x, var_r = x.var(0, unbiased=False), r.var(0, unbiased=False)
    varying = var_x > 0.01 * var_x.mean()
    constancy = torch.where(varying, 1 - var_r / var_x.clamp_min(1e-30), torch.full_like(var_x, float("nan")))
    valid = constancy[varying]
    size = min(mean_diff.shape[-2:])
    lattice = {p: float(lattice_energy(mean_diff.mean(0), p)) for p in periods if p <= size}
    return ConstantPattern(
        mean_diff.float(),
        constancy.float(),
        float(valid.mean()) if valid.numel() else float("nan"),
        float((valid > 0.5).double().mean()) if valid.numel() else float("nan"),
        lattice,
    )
