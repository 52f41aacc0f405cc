"""Layers that leave the forward pass alone and filter the gradient that flows back through them.

``filter_gradient(x, response)`` is the identity on ``x`` (B, C, H, W); on the backward pass the gradient's 2-D
spectrum is multiplied by ``response`` (H, W), a real frequency response. Two responses matter here:

* ``band_stop_gradient(x, period)``: the gradient loses every frequency nearer to a non-DC period-P lattice bin
  than to DC (``layers.frequency.lattice_band``): the lattice bins *and* the copies of the spectrum that a strided
  layer's zero insertion centres on them. Equivalently, an ideal low-pass at the period-P sub-lattice's Nyquist
  frequency (FORGrad's low-pass with the cutoff set by the stride).
* ``smooth_gradient(x, period)``: a binomial-like smoothing with zeros at the lattice frequencies
  (``layers.frequency.smoothing_response``): the zero-order hold that Sugawara et al. use against gradient
  checkerboards.

Spectra are circular (FFT): the filter treats the map as periodic, which at the border mixes the first and last
rows, the price of an exact frequency response.

>>> import torch
>>> x = torch.randn(2, 1, 8, 8, requires_grad=True)
>>> y = band_stop_gradient(x, 2)
>>> torch.equal(y, x)
True
>>> y.backward(torch.ones(2, 1, 8, 8) * (-1.0) ** torch.arange(8))  # an alternation: all of it on the band
>>> float(x.grad.abs().max()) < 1e-6
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from s2snets.layers.frequency import lattice_band, smoothing_response


class _FilterGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, response: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(response)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (response,) = ctx.saved_tensors
        filtered = torch.fft.ifft2(torch.fft.fft2(grad.float()) * response).real
        return filtered.to(grad.dtype), None


def filter_gradient(x: Tensor, response: Tensor) -> Tensor:
    """Identity on ``x`` (..., H, W); its gradient's spectrum is multiplied by ``response`` (H, W, real)."""
    if response.shape != x.shape[-2:]:
        raise ValueError(f"response is {tuple(response.shape)}, the input's maps are {tuple(x.shape[-2:])}")
    return _FilterGradient.apply(x, response.to(x.device, torch.float32))


def band_stop_response(h: int, w: int, period: int, device: torch.device | None = None) -> Tensor:
    """(H, W): 0 on the period-P lattice band, 1 on the DC cell."""
    return (~lattice_band(h, w, period, device)).float()


def band_stop_gradient(x: Tensor, period: int) -> Tensor:
    """Identity on ``x`` (..., H, W); its gradient loses the period-P lattice band (bins and their copies)."""
    return filter_gradient(x, band_stop_response(x.shape[-2], x.shape[-1], period, x.device))


def smooth_gradient(x: Tensor, period: int, order: int = 2) -> Tensor:
    """Identity on ``x`` (..., H, W); its gradient is smoothed with zeros of order 2``order`` at the lattice bins."""
    return filter_gradient(x, smoothing_response(x.shape[-2], x.shape[-1], period, order, x.device))


def _removal_order(h: int, w: int, period: int, device: torch.device | None) -> tuple[Tensor, Tensor]:
    """For the power-matched sham: (pair id per bin (H, W), pair ids in removal order). Bins outside the lattice band
    and not DC, paired with their conjugates (a real map's spectrum removes both or neither), ordered from the
    edge of the DC cell inwards (farthest from DC first: nearest to the band without being in it)."""
    band = lattice_band(h, w, period, device)
    u, v = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    index = u * w + v
    partner = ((-u) % h) * w + ((-v) % w)
    pair = torch.minimum(index, partner)
    du = torch.minimum(u, h - u)
    dv = torch.minimum(v, w - v)
    distance = torch.maximum(du * (w / h), dv.double()) if h != w else torch.maximum(du, dv).double()
    eligible = ~band & (index != 0)
    ids = pair[eligible & (index == pair)]
    order = torch.argsort(distance[eligible & (index == pair)] * (h * w) - ids.double(), descending=True)
    return pair, ids[order]


class _MatchedShamGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, band: Tensor, pair: Tensor, order: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(band, pair, order)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        band, pair, order = ctx.saved_tensors
        spectrum = torch.fft.fft2(grad.double())
        power = spectrum.abs().square()
        flat = power.flatten(-2)
        target = (flat * band.flatten()).sum(-1, keepdim=True)  # the band's power, per map
        pair_power = torch.zeros(*flat.shape[:-1], flat.shape[-1], dtype=flat.dtype, device=flat.device)
        pair_power.scatter_add_(-1, pair.flatten().expand_as(flat), flat)
        ranked = pair_power[..., order]
        before = ranked.cumsum(-1) - ranked  # power removed before each pair in the order
        remove_pair = torch.zeros_like(pair_power, dtype=torch.bool)
        remove_pair[..., order] = before + ranked / 2 < target  # the last pair taken when it brings the sum nearer
        remove = remove_pair.gather(-1, pair.flatten().expand_as(flat)).view_as(power)
        filtered = torch.fft.ifft2(spectrum * (~remove)).real
        return filtered.to(grad.dtype), None, None, None


def matched_sham_gradient(x: Tensor, period: int) -> Tensor:
    """Identity on ``x`` (..., H, W); its gradient loses as much power as ``band_stop_gradient`` would remove, but
    *away* from the lattice band: per map, frequency pairs of the DC cell (not DC itself), from its edge inwards,
    until the removed power reaches the band's. The band-stop's sham: it differs from it only in *where* the power
    goes (when the DC cell holds less power than the band, all of it goes and the match falls short: the probe
    reports the matched share).

    >>> import torch
    >>> x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    >>> g = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> matched_sham_gradient(x, 2).backward(g)
    >>> band = lattice_band(8, 8, 2)
    >>> bool(torch.allclose(torch.fft.fft2(x.grad)[0, 0][band], torch.fft.fft2(g)[0, 0][band], atol=1e-5))
    True
    """
    h, w = x.shape[-2:]
    pair, order = _removal_order(h, w, period, x.device)
    return _MatchedShamGradient.apply(x, lattice_band(h, w, period, x.device).double(), pair, order)


def sham_removed_share(grad: Tensor, period: int) -> Tensor:
    """What ``matched_sham_gradient`` removes from (..., H, W) gradients, as a share of the band's power -> (...,):
    1 when matched, below 1 when the DC cell held too little power."""
    x = torch.zeros_like(grad, dtype=torch.float64, requires_grad=True)
    matched_sham_gradient(x, period).backward(grad.double())
    power = torch.fft.fft2(grad.double()).abs().square()
    removed = (power - torch.fft.fft2(x.grad).abs().square()).sum((-2, -1))
    band = (power * lattice_band(grad.shape[-2], grad.shape[-1], period, grad.device)).sum((-2, -1))
    return torch.where(band > 0, removed / band.clamp_min(1e-300), torch.ones_like(band))


class GradientFilter(nn.Module):
    """Module twin of the filters: ``GradientFilter("band_stop" | "smooth", period)``; responses are cached per size."""

    RESPONSES: dict[str, Callable[..., Tensor]] = {
        "band_stop": lambda h, w, p, device: band_stop_response(h, w, p, device),
        "smooth": lambda h, w, p, device: smoothing_response(h, w, p, 2, device),
    }

    def __init__(self, kind: str, period: int):
        super().__init__()
        if kind not in self.RESPONSES:
            raise ValueError(f"unknown gradient filter '{kind}'; use {', '.join(self.RESPONSES)}")
        if period < 2:
            raise ValueError(f"period must be >= 2, got {period}")
        self.kind, self.period = kind, period
        self._cache: dict[tuple, Tensor] = {}

    def response(self, h: int, w: int, device: torch.device) -> Tensor:
        key = (h, w, str(device))
        if key not in self._cache:  # built once per size and device: the forward pass stays cheap
            self._cache[key] = self.RESPONSES[self.kind](h, w, self.period, device)
        return self._cache[key]

    def forward(self, x: Tensor) -> Tensor:
        return filter_gradient(x, self.response(x.shape[-2], x.shape[-1], x.device))

    def extra_repr(self) -> str:
        return f"{self.kind}, period={self.period}"
