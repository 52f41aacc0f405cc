"""Interventions on a frozen classifier that change one thing, for the causal test of the checkerboard question.

Each wraps the classifier; the decoder is fine-tuned through the wrapper exactly as through the bare classifier.

* ``control``: the classifier as is.
* ``grid_shift``: the classifier sees its input moved by ``shift`` pixels down and right (replicate-pad the top and
  left, crop the bottom and right), so its stride lattice moves against the decoder's upsampling lattice. A pattern
  born in the classifier's backward pass moves with it; one born in the decoder stays.
* ``gradient_notch``: identity forward (the accuracy the decoder can restore is unchanged); the backward pass
  removes the input gradient's power on the period-P lattices (P: the periods the lint predicts for the classifier),
  DC kept. Only the checkerboard in the gradient is gone.
* ``phase_average``: a random shift in {0 .. P-1}^2 per batch (drawn from torch's global RNG, which checkpoints
  save and restore, so resume stays exact): the gradient lattice averaged over its phases, as feature-visualisation
  jitter does. Only while gradients are being taken (fine-tuning); evaluation under ``no_grad`` sees no shift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2snets.errors import ConfigError
from s2snets.metrics.spectrum import lattice_mask
from s2snets.names import INTERVENTIONS


def shift_image(x: Tensor, dy: int, dx: int) -> Tensor:
    """Move the content of (B, C, H, W) images by (dy, dx) >= 0 pixels down/right: replicate-pad top/left, crop."""
    if dy == dx == 0:
        return x
    h, w = x.shape[-2:]
    return F.pad(x, (dx, 0, dy, 0), mode="replicate")[..., :h, :w]


def lattice_notch_mask(h: int, w: int, periods: tuple[int, ...], device: torch.device | None = None) -> Tensor:
    """(H, W) float: 0 on the period-P lattices (DC excluded), 1 elsewhere."""
    keep = torch.ones(h, w, device=device)
    for p in periods:
        keep[lattice_mask(h, w, p, device)] = 0.0
    return keep


class _NotchGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        spectrum = torch.fft.fft2(grad.float())
        return torch.fft.ifft2(spectrum * keep).real.to(grad.dtype), None


def notch_gradient(x: Tensor, periods: tuple[int, ...]) -> Tensor:
    """Identity on ``x`` (B, C, H, W); its gradient loses all power on the period-P lattices (DC kept)."""
    keep = lattice_notch_mask(x.shape[-2], x.shape[-1], periods, x.device)
    return _NotchGradient.apply(x, keep)


class Intervened(nn.Module):
    """A frozen classifier behind one intervention. ``forward(x) -> logits``."""

    def __init__(self, classifier: nn.Module, kind: str, period: int = 2, shift: int = 1):
        super().__init__()
        if kind not in INTERVENTIONS:
            raise ConfigError(f"unknown intervention '{kind}'; choose one of {', '.join(INTERVENTIONS)}")
        if period < 2:
            raise ConfigError(f"an intervention's lattice period must be >= 2, got {period}")
        self.classifier, self.kind, self.period, self.shift = classifier, kind, period, shift

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "grid_shift":
            x = shift_image(x, self.shift, self.shift)
        elif self.kind == "gradient_notch":
            x = notch_gradient(x, (self.period,))  # the period-P lattice holds those of P's divisors too
        elif self.kind == "phase_average" and torch.is_grad_enabled():
            dy, dx = (int(v) for v in torch.randint(0, self.period, (2,)))
            x = shift_image(x, dy, dx)
        return self.classifier(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, period={self.period}" + (f", shift={self.shift}" if self.kind == "grid_shift" else "")
