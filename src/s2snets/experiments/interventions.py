"""The arms of the checkerboard experiment: each changes one thing about how the decoder is fine-tuned.

``arm_models(arm, autoencoder, classifier, period)`` returns the (autoencoder, classifier) pair the arm fine-tunes
through (classifier None: no classifier):

| arm            | what changes                                                        | forward pass the decoder is judged by |
|----------------|---------------------------------------------------------------------|---------------------------------------|
| control        | nothing: the paper's setting                                        | the classifier                        |
| sham           | the loss: the decoder's own reconstruction error (MSE), no classifier | -                                  |
| band_stop      | the classifier's input gradient loses its period-P lattice band     | identical                             |
| stride_smooth  | each strided layer of the classifier sends back a smoothed gradient | identical                             |
| shift_y / shift_x | the autoencoder's grid moves 1 pixel down / right against the image and the classifier | identical (content aligned) |
| shift_period   | the autoencoder's grid moves P pixels down and right (its period-P phase does not change) | identical |

The shifts move the *autoencoder's* grid (its input is rolled by s and its output rolled back), not the
classifier's input: moving the classifier's input misaligns the content it sees (top-1 0.92 -> 0.87 for a 1-pixel
shift), the decoder then learns a translation, and that translation writes lattices of its own (measured on the
smooth-gradient and transposed-decoder controls: their pattern's phase flipped at random from run to run). A
rolled autoencoder reconstructs less well near Fashion-MNIST's black border (30.4 -> 28.0 dB for 1 pixel), which
the fine-tuning partly repairs; the repair is an edge, not a lattice, and the lattice measure does not count it.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn

from s2snets.layers.gradient import GradientFilter
from s2snets.models.hooks import smooth_strided_backward
from s2snets.names import ARMS

SHIFTS = {"shift_y": lambda p: (1, 0), "shift_x": lambda p: (0, 1), "shift_period": lambda p: (p, p)}


class GridShifted(nn.Module):
    """An autoencoder whose grid is moved by ``shift`` = (dy, dx) against its input: (B, C, H, W) -> same.

    forward(x) = roll(autoencoder(roll(x, shift)), -shift): exact and invertible (circular). It keeps the fine-tuning
    interface (``decoder``, ``freeze_encoder``) of the autoencoder it wraps.
    """

    def __init__(self, autoencoder: nn.Module, shift: tuple[int, int]):
        super().__init__()
        self.autoencoder, self.shift = autoencoder, tuple(shift)

    @property
    def decoder(self) -> nn.Module:
        return cast(nn.Module, self.autoencoder.decoder)

    def freeze_encoder(self) -> GridShifted:
        self.autoencoder.freeze_encoder()
        return self

    def train(self, mode: bool = True) -> GridShifted:
        super().train(mode)
        self.autoencoder.train(mode)
        return self

    def forward(self, x: Tensor) -> Tensor:
        dy, dx = self.shift
        return torch.roll(self.autoencoder(torch.roll(x, (dy, dx), (-2, -1))), (-dy, -dx), (-2, -1))

    def extra_repr(self) -> str:
        return f"shift={self.shift}"


class StrideSmoothed(nn.Module):
    """A copy of ``classifier`` whose strided layers send back smoothed gradients (``models.hooks``)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = copy.deepcopy(classifier)  # the hooks stay on the copy: other arms share the original
        self.handles = smooth_strided_backward(self.classifier)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)


def arm_models(arm: str, autoencoder: nn.Module, classifier: nn.Module, period: int) -> tuple[nn.Module, nn.Module | None]:
    """(autoencoder, classifier) for fine-tuning in ``arm``; classifier None for the sham (reconstruction loss)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm '{arm}'; use one of {', '.join(ARMS)}")
    if arm == "control":
        return autoencoder, classifier
    if arm == "sham":
        return autoencoder, None
    if arm == "band_stop":
        return autoencoder, nn.Sequential(GradientFilter("band_stop", period), classifier)
    if arm == "stride_smooth":
        return autoencoder, StrideSmoothed(classifier)
    return GridShifted(autoencoder, SHIFTS[arm](period)), classifier


def arm_shift(arm: str, period: int) -> tuple[int, int]:
    """How far the arm moves the autoencoder's grid: (0, 0) for arms that do not."""
    return SHIFTS[arm](period) if arm in SHIFTS else (0, 0)
