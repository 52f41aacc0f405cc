"""The frequency lattice of a period-P pattern on an H x W grid, as masks and responses: pure tensor functions.

Shared by the layers that filter gradients (``layers.gradient``) and the measures (``metrics.lattice``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def lattice_bins(h: int, w: int, period: int) -> list[tuple[int, int, int, int]]:
    """The non-DC period-P lattice bins of an H x W spectrum as (u, v, k, l): u = round(k H / P) mod H, likewise v.

    >>> lattice_bins(4, 4, 2)
    [(0, 2, 0, 1), (2, 0, 1, 0), (2, 2, 1, 1)]
    """
    if period < 2 or period > min(h, w):
        raise ValueError(f"period must be in 2..{min(h, w)}, got {period}")
    return [(round(k * h / period) % h, round(l * w / period) % w, k, l) for k in range(period) for l in range(period) if k or l]


def _circular_distance(n: int, centre: int, device: torch.device | None) -> Tensor:
    i = torch.arange(n, device=device)
    return torch.minimum((i - centre) % n, (centre - i) % n)


def lattice_band(h: int, w: int, period: int, device: torch.device | None = None) -> Tensor:
    """Boolean (H, W): the frequencies nearer (Chebyshev distance, circular) to a non-DC lattice bin than to DC.

    The band holds the lattice bins and the copies of a spectrum that a multiplicative lattice centres on them; its
    complement is the DC cell, |u| < H / 2P and |v| < W / 2P (ties stay with DC). Removing the band is an ideal
    low-pass to the Nyquist frequency of the period-P sub-lattice.

    >>> band = lattice_band(8, 8, 2)
    >>> int(band.sum()), bool(band[0, 0]), bool(band[4, 4]), bool(band[2, 0])
    (39, False, True, False)
    """

    def distance(cu: int, cv: int) -> Tensor:
        du, dv = _circular_distance(h, cu, device), _circular_distance(w, cv, device)
        return torch.maximum(du[:, None], dv[None, :])

    to_dc = distance(0, 0)
    to_lattice = torch.stack([distance(u, v) for u, v, _, _ in lattice_bins(h, w, period)]).min(0).values
    return to_lattice < to_dc


def smoothing_response(h: int, w: int, period: int, order: int = 2, device: torch.device | None = None) -> Tensor:
    """(H, W) real frequency response of a separable smoothing filter with zeros of order 2 ``order`` at every
    period-P lattice frequency: per axis |sin(pi f P / N) / (P sin(pi f / N))|^(2 order), 1 at DC.

    For P = 2 and order 1 this is cos^2(pi f / N), the [1, 2, 1] / 4 binomial; in general it is a box of length P
    convolved with itself ``order`` times: the kernel that fills a zero-inserted signal's gaps (zero-order hold).
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")

    def axis(n: int) -> Tensor:
        f = torch.arange(n, dtype=torch.float64, device=device)
        f = torch.where(f > n / 2, f - n, f)
        num, den = torch.sin(math.pi * f * period / n), period * torch.sin(math.pi * f / n)
        ratio = torch.where(f == 0, torch.ones_like(f), num / torch.where(den == 0, torch.ones_like(den), den))
        return ratio.abs() ** (2 * order)

    return (axis(h)[:, None] * axis(w)[None, :]).float()


def neighbourhood_radius(size: int, period: int) -> int:
    """The radius (in frequency bins) of the neighbourhood around each lattice bin that ``band_amplitude`` counts:
    a quarter of the lattice spacing, size / (4 P), at least 1 (4 bins at 32 px and P = 2)."""
    return max(1, round(size / (4 * period)))


def lattice_neighbourhoods(h: int, w: int, period: int, radius: int, device: torch.device | None = None) -> Tensor:
    """Boolean (H, W): the frequencies within Chebyshev distance ``radius`` (circular) of a non-DC lattice bin."""
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    for u, v, _, _ in lattice_bins(h, w, period):
        du, dv = _circular_distance(h, u, device), _circular_distance(w, v, device)
        mask |= (du[:, None] <= radius) & (dv[None, :] <= radius)
    return mask


def roll_lattice(x: Tensor, period: int, shift: tuple[int, int], radius: int | None = None) -> Tensor:
    """(..., H, W) -> same: the content of ``x`` near the period-P lattice bins (within ``radius``, default
    ``neighbourhood_radius``) moved by ``shift`` = (dy, dx) pixels (circularly), the rest left in place.

    Every frequency keeps its magnitude; only the phase of the lattice's neighbourhood turns (a shift by P turns no
    lattice bin, only their neighbours). A pure function of ``x``: its gradient is the exact adjoint (the same
    neighbourhood rolled back), so a model that reads ``roll_lattice(x)`` is trained by a true gradient.

    >>> import torch
    >>> x = torch.tensor([[1.0, 0, 1, 0]] * 4) + 0.5
    >>> roll_lattice(x, 2, (0, 1), radius=0)[0].tolist()  # the alternation moved one pixel; the mean stayed
    [0.5, 1.5, 0.5, 1.5]
    """
    h, w = x.shape[-2:]
    radius = neighbourhood_radius(min(h, w), period) if radius is None else radius
    mask = lattice_neighbourhoods(h, w, period, radius, x.device)
    high = torch.fft.ifft2(torch.fft.fft2(x) * mask).real.to(x.dtype)
    return x - high + torch.roll(high, (int(shift[0]), int(shift[1])), (-2, -1))
