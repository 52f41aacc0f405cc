"""Is there a period-P lattice in one map? A within-map spectral test, calibrated on the map's own spectrum.

A lattice of period P (additive: a tile added everywhere; or the power of a map modulated by a tile, as a strided
layer's backward pass does) puts power on the lattice bins (k H / P, l W / P) of the spectrum. The test compares each
lattice bin's power with the mean power of the map's own non-lattice bins *around it*:

* for a bin off the axes, the bins within Chebyshev distance ``radius`` (the same radius and orientation: a 1/f
  spectrum's level there, not the global median, which would make every low-frequency bin of a smooth image a peak);
* for a bin on an axis (u = 0 or v = 0), the bins on the same axis within ``axis_radius``: structure aligned with the
  rows or columns (a border effect of zero padding, a horizon) puts power on the whole axis, and would otherwise read
  as a peak there;

leaving out DC, the self-conjugate bins and every lattice bin of the periods tested. The axes get their own
reference for a second reason: the jump between opposite borders of a non-periodic map (every natural image) puts a
cross of power on them. (The periodic-plus-smooth decomposition, Moisan 2011, would remove that cross, but it also
moves up to a quarter of a lattice's own power at 224 px: a tile's last row differs from its first.)

Under the null (a map whose spectrum is smooth over a few bins, no lattice) the periodogram values are independent
exponentials (a chi-square with 1 degree of freedom at a self-conjugate bin) scaled by the local spectral density, so
power / mean(reference) follows an F(d, 2K) distribution (d = 2, or 1 at a self-conjugate bin; K reference bins,
conjugate pairs counted once). The per-bin p-values of all maps are combined with Fisher's method (independent maps,
asymptotically independent bins), so one map and eight maps are tested the same way.

Only the period's *primitive* bins are tested (those on the period-P lattice but on no coarser one: gcd(k, l, P) = 1),
so a period-2 grid does not also read as a period-4 one; ``lattice_excess`` measures all of them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats
from torch import Tensor


def _canonical(u: int, v: int, h: int, w: int) -> tuple[int, int]:
    """One representative of a bin and its complex conjugate (-u, -v): a real map's spectrum holds the same power."""
    return min((u, v), ((-u) % h, (-v) % w))


def _lattice(h: int, w: int, period: int) -> set[tuple[int, int]]:
    return {(k * h // period % h, l * w // period % w) for k in range(period) for l in range(period)}


@dataclass(frozen=True)
class LatticeBin:
    """A lattice bin (u, v), its degrees of freedom (1 at a self-conjugate bin, else 2), whether it is primitive for
    the period (on no coarser lattice), and its reference bins (conjugate pairs once) as index lists."""

    u: int
    v: int
    dof: int
    primitive: bool
    reference_u: tuple[int, ...]
    reference_v: tuple[int, ...]


@functools.lru_cache(maxsize=64)
def lattice_test_bins(
    h: int, w: int, period: int, tested: tuple[int, ...] = (), radius: int = 3, axis_radius: int = 6
) -> tuple[LatticeBin, ...]:
    """The period-P lattice bins of an H x W spectrum (conjugate pairs once, DC excluded) with the reference bins each
    is compared with: see the module's docstring. ``tested``: every period tested, whose lattice bins no reference
    holds. H and W must be multiples of P.

    >>> [(b.u, b.v, b.dof, b.primitive, len(b.reference_u)) for b in lattice_test_bins(16, 16, 2)]
    [(0, 8, 1, True, 6), (8, 0, 1, True, 6), (8, 8, 1, True, 24)]
    """
    if period < 2 or h % period or w % period:
        raise ValueError(f"period must be >= 2 and divide both sides {h} x {w}, got {period}")
    excluded = set().union(*(_lattice(h, w, p) for p in {period, *tested}))
    self_conjugate = {(u, v) for u in {0, h // 2} for v in {0, w // 2} if (2 * u) % h == 0 and (2 * v) % w == 0}
    excluded |= self_conjugate
    out = []
    seen = set()
    for k in range(period):
        for l in range(period):
            u, v = k * h // period % h, l * w // period % w
            if (u, v) == (0, 0) or _canonical(u, v, h, w) in seen:
                continue
            seen.add(_canonical(u, v, h, w))
            if u == 0 or v == 0:  # on an axis: its neighbours on the same axis
                steps = range(-axis_radius, axis_radius + 1)
                near = [(u, (v + j) % w) if u == 0 else ((u + j) % h, v) for j in steps]
            else:  # off the axes: a square around it, without the axes
                near = [((u + i) % h, (v + j) % w) for i in range(-radius, radius + 1) for j in range(-radius, radius + 1)]
                near = [(a, b) for a, b in near if a and b]
            reference = sorted({_canonical(a, b, h, w) for a, b in near if (a, b) not in excluded} - {_canonical(u, v, h, w)})
            out.append(
                LatticeBin(
                    u,
                    v,
                    1 if (u, v) in self_conjugate else 2,
                    math.gcd(math.gcd(k, l), period) == 1,
                    tuple(a for a, _ in reference),
                    tuple(b for _, b in reference),
                )
            )
    return tuple(out)


class _Plan(NamedTuple):
    peak: Tensor  # (B,) flat index of each bin
    reference: Tensor  # (B, K_max) flat indices of its reference bins (padded)
    weight: Tensor  # (B, K_max) 1 / K on the reference bins, 0 on the padding
    sizes: Tensor  # (B,) K
    dof: Tensor  # (B,) float64: 1 or 2
    primitive: Tensor  # (B,) bool


@functools.lru_cache(maxsize=64)
def _test_plan(h: int, w: int, period: int, tested: tuple[int, ...], radius: int) -> _Plan:
    bins = lattice_test_bins(h, w, period, tested, radius)
    k_max = max(len(b.reference_u) for b in bins)
    reference = torch.zeros(len(bins), k_max, dtype=torch.long)
    weight = torch.zeros(len(bins), k_max, dtype=torch.float64)
    for i, b in enumerate(bins):
        k = len(b.reference_u)
        reference[i, :k] = torch.tensor([u * w + v for u, v in zip(b.reference_u, b.reference_v)], dtype=torch.long)
        weight[i, :k] = 1.0 / max(k, 1)
    return _Plan(
        peak=torch.tensor([b.u * w + b.v for b in bins], dtype=torch.long),
        reference=reference,
        weight=weight,
        sizes=torch.tensor([len(b.reference_u) for b in bins], dtype=torch.long),
        dof=torch.tensor([float(b.dof) for b in bins], dtype=torch.float64),
        primitive=torch.tensor([b.primitive for b in bins], dtype=torch.bool),
    )


@dataclass(frozen=True)
class LatticePeakTest:
    """``lattice_peak_tests``'s answer for one period.

    p_value: Fisher's combination over maps and primitive bins (0.0 when below float64's range); map_p_values: the
    same per map, (N,); strength: the mean over maps and primitive bins of power / local background (about 1 without
    a lattice, E F(d, 2K) = K / (K - 1)); bins: primitive bins per map; excess: per map, the share of the map's variance
    on the whole period-P lattice above the local background, in [0, 1], (N,).
    """

    period: int
    p_value: float
    map_p_values: list[float]
    strength: float
    bins: int
    excess: list[float]


def lattice_peak_tests(maps: Tensor, periods: tuple[int, ...], radius: int = 3) -> dict[int, LatticePeakTest]:
    """Within-map test for a period-P lattice, for each P of ``periods``, in (N, H, W) real maps (each map tested
    against its own spectrum; H and W multiples of every period). Every period's lattice bins are kept out of every
    reference. Scale-free: a map times any non-zero factor gives the same answer. -> {P: ``LatticePeakTest``}.

    >>> g = torch.Generator().manual_seed(0)
    >>> noise = torch.randn(1, 64, 64, generator=g, dtype=torch.float64)
    >>> tile = torch.tensor([[1.0, -1.0, 0.5, -0.5]]).T @ torch.tensor([[1.0, 0.0, -1.0, 0.0]])
    >>> gridded = noise + 0.5 * tile.repeat(16, 16)
    >>> lattice_peak_tests(noise, (4,))[4].p_value > 0.01, lattice_peak_tests(gridded, (4,))[4].p_value < 1e-6
    (True, True)
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(maps.shape)}")
    n, h, w = maps.shape
    z = maps.double()
    z = z - z.mean((-2, -1), keepdim=True)
    tiny = torch.finfo(torch.float64).tiny
    flat = torch.fft.fft2(z).abs().square().reshape(n, h * w)
    total = flat.sum(-1).clamp_min(tiny)
    out = {}
    for period in periods:
        plan = _test_plan(h, w, period, tuple(sorted(set(periods) - {period})), radius)
        if int(plan.sizes.min()) < 4:
            raise ValueError(f"maps of {h} x {w} leave fewer than 4 reference bins around some period-{period} bins: too small")
        background = (flat[:, plan.reference] * plan.weight).sum(-1)  # (N, B): mean power of each bin's reference
        peak = flat[:, plan.peak]
        excess = ((peak - background).clamp_min(0) * plan.dof / total[:, None]).sum(-1)
        ratio = (peak / background.clamp_min(tiny))[:, plan.primitive].numpy()
        log_p = stats.f.logsf(ratio, plan.dof[plan.primitive].numpy(), 2 * plan.sizes[plan.primitive].numpy())
        fisher = -2 * log_p.sum(-1)  # per map, chi-square with 2B degrees of freedom under the null
        out[period] = LatticePeakTest(
            period=period,
            p_value=float(np.exp(stats.chi2.logsf(fisher.sum(), 2 * log_p.size))),
            map_p_values=[float(p) for p in np.exp(stats.chi2.logsf(fisher, 2 * log_p.shape[-1]))],
            strength=float(ratio.mean()),
            bins=ratio.shape[-1],
            excess=[float(e) for e in excess],
        )
    return out
