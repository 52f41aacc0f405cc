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
