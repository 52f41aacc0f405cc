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

from s2snets.metrics.inputs import as_tensor
from s2snets.metrics.spectrum import lattice_energy, lattice_mask, spatial_maps


@dataclass
class ConstantPattern:
    mean_difference: Tensor  # (C, H, W)
    constancy: Tensor  # (C, H, W), NaN where the originals are constant
    mean_constancy: float
    constant_share: float  # share of (varying) pixels with constancy > 0.5
    lattice: dict[int, float]  # lattice energy of mean_difference per period

    def __repr__(self) -> str:
        c, h, w = self.mean_difference.shape
        energies = ", ".join(f"P={p}: {v:.3f}" for p, v in self.lattice.items())
        return (
            f"ConstantPattern({c}x{h}x{w}; mean constancy {self.mean_constancy:.3f}, constant share "
            f"{self.constant_share:.1%}, lattice energy {energies})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{p}</td><td>{v:.4f}</td></tr>" for p, v in self.lattice.items())
        return (
            f"<b>constant pattern</b>: mean constancy {self.mean_constancy:.3f}, constant share {self.constant_share:.1%}"
            f"<table><tr><th>period</th><th>lattice energy</th></tr>{rows}</table>"
        )

    def to_dict(self, maps: bool = True) -> dict:
        """JSON-able: the scores, and with ``maps`` the (C, H, W) maps as nested lists (NaN where the originals are
        constant)."""
        scores = {
            "mean_constancy": self.mean_constancy,
            "constant_share": self.constant_share,
            "mean_abs_difference": float(self.mean_difference.abs().mean()),
            "lattice_energy": {str(k): v for k, v in self.lattice.items()},
        }
        if not maps:
            return scores
        return {**scores, "mean_difference": self.mean_difference.tolist(), "constancy": self.constancy.tolist()}


def constant_pattern(originals: Tensor, reconstructions: Tensor, periods: tuple[int, ...] = (2, 4, 8)) -> ConstantPattern:
    """Per-pixel mean difference and constancy of reconstructions over a set. (N, C, H, W) x2 in [0, 1]."""
    return PatternAccumulator(periods).update(originals, reconstructions).result()


class PatternAccumulator:
    """``constant_pattern`` over a set seen batch by batch, in memory O(C H W) whatever N: per-pixel means and
    variances merged with Chan et al.'s pairwise update (float64), so a set streamed from disk gets the numbers a
    set in memory gets (identical for one batch, to float64 rounding for many).

    >>> import torch
    >>> x, r = torch.rand(64, 1, 8, 8), torch.rand(64, 1, 8, 8)
    >>> acc = PatternAccumulator((2,))
    >>> for s in range(0, 64, 10):
    ...     _ = acc.update(x[s : s + 10], r[s : s + 10])
    >>> bool(torch.allclose(acc.result().constancy, constant_pattern(x, r, (2,)).constancy, atol=1e-6))
    True
    """

    def __init__(self, periods: tuple[int, ...] = (2, 4, 8)):
        self.periods = tuple(periods)
        self.n = 0
        self.mean_diff: Tensor | None = None
        self.mean_x: Tensor | None = None
        self.mean_r: Tensor | None = None
        self.m2_x: Tensor | None = None  # sum of squared deviations from the mean, per pixel
        self.m2_r: Tensor | None = None

    def update(self, originals: Tensor, reconstructions: Tensor) -> PatternAccumulator:
        """Add a batch (B, C, H, W) x2 in [0, 1] (tensors or numpy arrays). Returns self."""
        originals, reconstructions = as_tensor(originals, "originals"), as_tensor(reconstructions, "reconstructions")
        if originals.shape != reconstructions.shape:
            raise ValueError(f"shapes differ: {tuple(originals.shape)} vs {tuple(reconstructions.shape)}")
        if self.mean_x is not None and originals.shape[1:] != self.mean_x.shape:
            raise ValueError(f"batch images are {tuple(originals.shape[1:])}, earlier ones {tuple(self.mean_x.shape)}")
        x, r = originals.double(), reconstructions.double()
        b = x.shape[0]
        if b == 0:
            return self
        stats = ((r - x).mean(0), x.mean(0), r.mean(0), x.var(0, unbiased=False) * b, r.var(0, unbiased=False) * b)
        if self.n == 0:
            self.mean_diff, self.mean_x, self.mean_r, self.m2_x, self.m2_r = stats
        else:
            n, total = self.n, self.n + b
            d_x, d_r = stats[1] - self.mean_x, stats[2] - self.mean_r
            self.m2_x = self.m2_x + stats[3] + d_x.square() * (n * b / total)
            self.m2_r = self.m2_r + stats[4] + d_r.square() * (n * b / total)
            self.mean_x = self.mean_x + d_x * (b / total)
            self.mean_r = self.mean_r + d_r * (b / total)
            self.mean_diff = self.mean_diff + (stats[0] - self.mean_diff) * (b / total)
        self.n += b
        return self

    def result(self) -> ConstantPattern:
        if self.n == 0 or self.mean_diff is None:
            raise ValueError("no images were added")
        mean_diff = self.mean_diff
        var_x, var_r = self.m2_x / self.n, self.m2_r / self.n
        varying = var_x > 0.01 * var_x.mean()
        constancy = torch.where(varying, 1 - var_r / var_x.clamp_min(1e-30), torch.full_like(var_x, float("nan")))
        valid = constancy[varying]
        size = min(mean_diff.shape[-2:])
        lattice = {p: float(lattice_energy(mean_diff.mean(0), p)) for p in self.periods if p <= size}
        return ConstantPattern(
            mean_diff.float(),
            constancy.float(),
            float(valid.mean()) if valid.numel() else float("nan"),
            float((valid > 0.5).double().mean()) if valid.numel() else float("nan"),
            lattice,
        )


def lattice_component(pattern: Tensor, period: int) -> Tensor:
    """The part of a pattern that lives on the period-P frequency lattice (DC excluded). (..., H, W) -> (..., H, W).

    For P = 2 this is the pixel-to-pixel alternation (rows, columns and the checkerboard proper).
    """
    pattern = spatial_maps(pattern, "pattern")
    h, w = pattern.shape[-2:]
    mask = lattice_mask(h, w, period, pattern.device)
    return torch.fft.ifft2(torch.fft.fft2(pattern.double()) * mask).real


def lattice_amplitude(pattern: Tensor, period: int) -> float:
    """RMS over pixels of the period-P lattice component of a pattern (H, W), in the pattern's units (pixel values).

    The checkerboard's absolute strength: unlike the lattice *energy* (a share of the pattern's power), it does not
    fall when something else is added to the pattern (a decoder that learns to shift the image, say).
    """
    return float(lattice_component(pattern, period).square().mean().sqrt())
