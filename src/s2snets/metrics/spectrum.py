"""Spectral artifact scores, batched and differentiable.

``lattice_energy(x, p)``: the share of the non-DC power of the 2-D power spectrum that lies on the frequency lattice
of period p, i.e. at frequencies (u, v) with u a multiple of H/p and v a multiple of W/p, (0, 0) excluded:

    E_p(x) = sum_{(u,v) in L_p, (u,v) != 0} |X(u,v)|^2  /  sum_{(u,v) != 0} |X(u,v)|^2

Any pattern with period p on both axes has all its power on L_p (E = 1); white noise has the lattice's share of
the frequencies, (p^2 - 1) / (HW - 1); a flat image has no non-DC power and gets 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from s2snets.metrics.inputs import as_tensor


def spatial_maps(x, name: str = "x") -> Tensor:
    """x (..., H, W) as a tensor (``inputs.as_tensor``: tensors, numpy arrays, lists). ValueError for fewer than two
    dimensions."""
    x = as_tensor(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must be (..., H, W), got shape {tuple(x.shape)}")
    return x


def power_spectrum(x: Tensor) -> Tensor:
    """|FFT2|^2 over the last two dims. (..., H, W) -> (..., H, W), unshifted (DC at [0, 0])."""
    return torch.fft.fft2(spatial_maps(x).float()).abs().square()


def lattice_mask(h: int, w: int, period: int, device: torch.device | None = None) -> Tensor:
    """Boolean (H, W): frequencies on the period-p lattice (multiples of round(H/p), round(W/p)), DC excluded."""
    if period < 2 or period > min(h, w):
        raise ValueError(f"period must be in 2..{min(h, w)}, got {period}")
    rows = torch.zeros(h, dtype=torch.bool, device=device)
    cols = torch.zeros(w, dtype=torch.bool, device=device)
    rows[[round(k * h / period) % h for k in range(period)]] = True
    cols[[round(k * w / period) % w for k in range(period)]] = True
    mask = rows[:, None] & cols[None, :]
    mask[0, 0] = False
    return mask


def lattice_energy(x: Tensor, period: int) -> Tensor:
    """Share of non-DC spectral power on the period-p lattice. (..., H, W) -> (...,) in [0, 1]; 0 for flat input,
    NaN for input holding NaN or infinity (not 0: no answer is not "no lattice")."""
    power = power_spectrum(x)
    h, w = power.shape[-2:]
    mask = lattice_mask(h, w, period, power.device)
    non_dc = power.clone()
    non_dc[..., 0, 0] = 0
    total = non_dc.sum((-2, -1))
    on_lattice = (non_dc * mask).sum((-2, -1))
    # clamp_min keeps the gradient finite where total is 0 (torch.where differentiates both branches) and lets NaN through
    return torch.where(total == 0, torch.zeros_like(total), on_lattice / total.clamp_min(torch.finfo(total.dtype).tiny))


def noise_lattice_share(h: int, w: int, period: int) -> float:
    """Expected lattice energy of white noise: the lattice's share of the non-DC frequencies."""
    return float(lattice_mask(h, w, period).sum()) / (h * w - 1)


def radial_profile(power: Tensor) -> Tensor:
    """Azimuthal average of an unshifted power spectrum. (..., H, W) -> (..., R), R = floor(min(H, W) / 2) + 1,
    bin r holding the mean over frequencies with round(sqrt(fy^2 + fx^2)) = r (frequencies in cycles per image)."""
    h, w = power.shape[-2:]
    fy = torch.fft.fftfreq(h, d=1.0 / h, device=power.device)
    fx = torch.fft.fftfreq(w, d=1.0 / w, device=power.device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round().long()
    bins = min(h, w) // 2 + 1
    keep = radius < bins
    idx = radius[keep]
    flat = power[..., keep]
    sums = torch.zeros(*power.shape[:-2], bins, dtype=power.dtype, device=power.device).index_add_(-1, idx, flat)
    counts = torch.zeros(bins, dtype=power.dtype, device=power.device).index_add_(0, idx, torch.ones_like(idx, dtype=power.dtype))
    return sums / counts


def azimuthal_spectrum(images: Tensor) -> Tensor:
    """Mean azimuthally averaged power spectrum of a set. (N, C, H, W) -> (R,)."""
    return radial_profile(power_spectrum(images - images.mean((-2, -1), keepdim=True))).mean(dim=tuple(range(images.ndim - 2)))


def lattice_contrast(power: Tensor, period: int) -> float:
    """Peak contrast of an (averaged, unshifted) power spectrum (H, W) on the period-P lattice.

    Mean power at the lattice frequencies (DC excluded) divided by the mean power of their 8 neighbours that are not
    lattice frequencies themselves. About 1 when the lattice frequencies are no brighter than their surroundings (no
    checkerboard, whatever the spectrum's slope); well above 1 for a periodic artifact. Unlike ``lattice_energy``
    it is not swamped by the low-frequency power of image content, so it detects a checkerboard in a gradient or an
    image that also holds a picture. NaN when the neighbourhood holds no power.
    """
    h, w = power.shape[-2:]
    on = lattice_mask(h, w, period, power.device)
    ring = torch.zeros_like(on)
    ys, xs = torch.nonzero(on, as_tuple=True)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                ring[(ys + dy) % h, (xs + dx) % w] = True
    ring &= ~on
    ring[0, 0] = False
    background = float(power[ring].mean()) if ring.any() else 0.0
    return float(power[on].mean()) / background if background > 0 else float("nan")
