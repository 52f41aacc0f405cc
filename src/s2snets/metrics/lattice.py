"""Lattice measures: how much of a map is a period-P lattice, where it sits, and what noise alone would give.

A period-P lattice on an H x W grid lives on the frequencies (k H / P, l W / P), k, l = 0 .. P-1, (0, 0) excluded
(the *lattice bins*). Two kinds of lattice matter here, and they look different in the spectrum:

* an **additive** lattice (the same small tile added everywhere, a checkerboard proper) puts peaks on the lattice
  bins themselves;
* a **multiplicative** one (a map multiplied by a tile, e.g. the zero insertion of a strided layer's backward pass)
  puts *copies of the whole map's spectrum* centred on the lattice bins, and a modulation of the local power that
  repeats with period P.

So a constant pattern's checkerboard is measured by its lattice bins' power *above the local spectral background*
(``peak_amplitude``): broadband content (edges, a learnt translation) raises a bin and its neighbours alike and
does not count. A gradient's lattice is measured both ways: peaks (``lattice_contrast`` in ``spectrum``) and the
modulation of its power over the P x P phases (``phase_power_profile``). Interventions remove a lattice by the
*band* of frequencies nearer to a non-DC lattice bin than to DC (``lattice_band``), which holds the copies too.

Every measure has a noise floor computed from the same data (``random_sign_floor``): the value a set of
image-specific maps gives when nothing is constant across them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from s2snets.layers.frequency import (  # noqa: F401  (part of the measures' public names)
    lattice_band,
    lattice_bins,
    lattice_neighbourhoods,
    neighbourhood_radius,
    smoothing_response,
)
from s2snets.metrics.spectrum import spatial_maps


def lattice_coefficients(maps: Tensor, period: int) -> Tensor:
    """Complex DFT coefficients of (..., H, W) maps at the lattice bins, divided by H W. -> complex (..., L).

    With this scaling a pure tile pattern's coefficients are its own amplitudes (a checkerboard +-a gives a at (H/2,
    W/2)), and the RMS over pixels of the lattice component is sqrt(sum |c|^2) by Parseval.
    """
    h, w = maps.shape[-2:]
    spectrum = torch.fft.fft2(maps.double())
    u = torch.tensor([b[0] for b in lattice_bins(h, w, period)], device=maps.device)
    v = torch.tensor([b[1] for b in lattice_bins(h, w, period)], device=maps.device)
    return spectrum[..., u, v] / (h * w)


def peak_power(maps: Tensor, period: int) -> Tensor:
    """Per lattice bin: its power minus the mean power of its 8 neighbours, in (pixel units)^2; can be negative.
    (..., H, W) -> (..., L), the same 1/(H W) scaling as ``lattice_coefficients``."""
    maps = spatial_maps(maps, "maps")
    h, w = maps.shape[-2:]
    power = torch.fft.fft2(maps.double()).abs().square() / float(h * w) ** 2
    out = []
    for u, v, _, _ in lattice_bins(h, w, period):
        ring = [power[..., (u + dy) % h, (v + dx) % w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        out.append(power[..., u, v] - torch.stack(ring).mean(0))
    return torch.stack(out, -1)


def peak_amplitude(maps: Tensor, period: int) -> Tensor:
    """The checkerboard amplitude of (..., H, W) maps: RMS over pixels of their period-P lattice component, counting
    at each lattice bin only the power above its neighbours' (the local background). -> (...,) in pixel units.

    A pure tile pattern gives its own RMS; broadband content (white noise, edges) about 0.

    >>> import torch
    >>> y, x = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    >>> round(float(peak_amplitude(0.01 * (-1.0) ** (x + y), 2)), 6)
    0.01
    """
    return peak_power(maps, period).clamp_min(0).sum(-1).sqrt()


def random_sign_floor(maps: Tensor, measure: Callable[[Tensor], Tensor], draws: int = 16, seed: int = 0) -> float:
    """Noise floor of ``measure`` applied to the mean of N per-image maps (N, H, W): the RMS over ``draws`` of the
    measure of (1/N) sum_n s_n maps_n with random signs s_n = +-1.

    The signed mean keeps each map's own content and its spread but nothing that is constant across the maps, so
    it is what the measure of the mean gives when no pattern is shared: a measured value at or below this floor
    says nothing.
    """
    if maps.ndim < 3 or len(maps) < 2:
        raise ValueError(f"maps must be (N >= 2, ..., H, W), got {tuple(maps.shape)}")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(draws):
        signs = torch.randint(0, 2, (len(maps),), generator=generator).to(maps) * 2 - 1
        signed = (signs.view(-1, *[1] * (maps.ndim - 1)) * maps).mean(0)
        values.append(float(measure(signed)) ** 2)
    return math.sqrt(sum(values) / len(values))


def shift_rotation(h: int, w: int, period: int, shift: tuple[int, int]) -> Tensor:
    """Complex (L,): how each lattice coefficient of a pattern turns when the frame it is tied to moves by ``shift``
    = (dy, dx) pixels (content moved down/right): exp(2 pi i (u dy / H + v dx / W)). 1 where the shift leaves that
    lattice component in place (e.g. (0, W/2) under a vertical shift, every bin under a shift by P)."""
    angles = [2 * math.pi * (u * shift[0] / h + v * shift[1] / w) for u, v, _, _ in lattice_bins(h, w, period)]
    return torch.polar(torch.ones(len(angles), dtype=torch.float64), torch.tensor(angles, dtype=torch.float64))


def frame_follow(pattern: Tensor, control: Tensor, period: int, shift: tuple[int, int]) -> float:
    """Which frame the lattice of ``pattern`` (made with the classifier's input moved by ``shift``) is tied to,
    from its lattice coefficients against the unshifted ``control``'s. Both (H, W). In [-1, 1], NaN if undefined.

    Only the lattice bins that the shift turns count (the others cannot tell). On them, with both coefficient vectors
    normalised, lock_c = Re<a, b rotation> and lock_d = Re<a, b> (normalised inner products with the two
    predictions) and

        follow = (lock_c - lock_d) / (2 - lock_c - lock_d)  =  (|a - b|^2 - |a - b rotation|^2) / (sum of both)

    +1: the pattern turned as the classifier's frame did; -1: it stayed where the decoder puts it; 0: neither (equally
    far from both predictions), whatever the rotation's angle (for P = 2 every informative bin turns by 180 degrees
    and follow = lock_c = -lock_d).
    """
    h, w = pattern.shape[-2:]
    rotation = shift_rotation(h, w, period, shift)
    informative = (rotation - 1).abs() > 1e-9
    if not bool(informative.any()):
        return math.nan
    a = lattice_coefficients(pattern, period)[informative]
    b = lattice_coefficients(control, period)[informative]
    norm = float(a.abs().square().sum().sqrt() * b.abs().square().sum().sqrt())
    if norm == 0:
        return math.nan
    lock_classifier = float((a * (b * rotation[informative]).conj()).real.sum()) / norm
    lock_decoder = float((a * b.conj()).real.sum()) / norm
    return (lock_classifier - lock_decoder) / (2 - lock_classifier - lock_decoder)


def phase_lock(pattern: Tensor, control: Tensor, period: int) -> float:
    """Normalised real inner product of two patterns' lattice coefficients (H, W) x2 -> [-1, 1]: 1 when the lattice
    is the same (same phase), -1 when it is inverted, 0 when unrelated; NaN when either has none."""
    a, b = lattice_coefficients(pattern, period), lattice_coefficients(control, period)
    norm = float(a.abs().square().sum().sqrt() * b.abs().square().sum().sqrt())
    return float((a * b.conj()).real.sum()) / norm if norm > 0 else math.nan


def phase_power_profile(maps: Tensor, period: int) -> Tensor:
    """Mean squared value of (N, ..., H, W) maps over the pixels of each phase (y mod P, x mod P). -> (P, P).

    A multiplicative lattice (zero insertion) makes it uneven; its max/min is how many times more some positions
    get than others (Odena et al.'s "some neurons get many times the gradient of their neighbours").
    """
    h, w = maps.shape[-2:]
    crop = maps[..., : h - h % period, : w - w % period].double().square()
    tiles = crop.reshape(-1, (h - h % period) // period, period, (w - w % period) // period, period)
    return tiles.mean((0, 1, 3))


MODULATION_CAP = 1000.0


def phase_modulation(maps: Tensor, period: int) -> float:
    """max / min of ``phase_power_profile``: 1 for power spread evenly over the phases; positions that never get any
    (zero insertion) give the cap, 1000 (the minimum is clamped at 1/1000 of the mean: a ratio, never inf or NaN).
    0 for maps without any power."""
    profile = phase_power_profile(maps, period)
    mean = float(profile.mean())
    if mean == 0:
        return 0.0
    return float(profile.max()) / max(float(profile.min()), mean / MODULATION_CAP)


def phase_scrambled_floor(maps: Tensor, period: int, draws: int = 16, seed: int = 0) -> float:
    """Noise floor of ``phase_modulation`` for (N, ..., H, W) maps: the median over draws of the modulation after
    rolling each map by a random (dy, dx) in {0 .. P-1}^2, which keeps everything but the alignment of the phases
    across maps (the large-scale envelope barely moves). The median: with few maps, a draw that leaves some phase
    without any map's power reaches the cap, and would rule a mean."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(draws):
        offsets = torch.randint(0, period, (len(maps), 2), generator=generator).tolist()
        rolled = torch.stack([torch.roll(m, shifts=(dy, dx), dims=(-2, -1)) for m, (dy, dx) in zip(maps, offsets)])
        values.append(phase_modulation(rolled, period))
    return float(torch.tensor(values).median())


def band_amplitude(maps: Tensor, period: int, radius: int | None = None) -> Tensor:
    """RMS over pixels of the part of (..., H, W) maps within ``radius`` of the lattice bins: the lattice and what
    a multiplicative lattice spreads around it (radius: ``neighbourhood_radius`` of the smaller side). -> (...,).

    Less specific than ``peak_amplitude`` (broadband content near the lattice frequencies counts too) and, measured
    on fine-tunings, about half as variable from run to run: the checkerboard experiment measures its interventions'
    effects with it, and asks ``peak_amplitude`` whether there is a lattice at all.
    """
    maps = spatial_maps(maps, "maps")
    h, w = maps.shape[-2:]
    radius = neighbourhood_radius(min(h, w), period) if radius is None else radius
    mask = lattice_neighbourhoods(h, w, period, radius, maps.device)
    power = torch.fft.fft2(maps.double()).abs().square() / float(h * w) ** 2
    return (power * mask).sum((-2, -1)).sqrt()
