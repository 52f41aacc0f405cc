"""Planted controls: classifiers (and decoders) whose answer to the checkerboard question is known by construction.

The checkerboard experiment runs them beside the real cells, through the same arms, measures and rules, and
reports a real cell's verdict only when every control of the same run was recovered (docs/measures.md,
"Calibration"). Each keeps the forward pass of a real classifier (a zoo classifier, or the user's) and changes only
what its truth is about:

| control        | classifier (forward pass; input gradient)                            | decoder    | truth              |
|----------------|----------------------------------------------------------------------|------------|--------------------|
| additive       | unchanged; smoothed, plus a fixed period-P tile (same sign in every image) | unpool | classifier-born    |
| multiplicative | unchanged; smoothed, then multiplied by a period-P tile of both signs    | unpool | classifier-born    |
| ignored        | reads one phase of P x P only (stride-P sub-sampling, nearest fill); smoothed | unpool | ignored positions |
| none           | unchanged; smoothed                                                  | flat       | no pattern         |
| decoder        | unchanged; smoothed                                                  | transposed | decoder-born       |

"Smoothed" is ``metrics.lattice.smoothing_response``: zeros of order 4 at every lattice frequency, so the
classifier's own gradient carries no lattice. ``flat`` is the grid-free autoencoder (``models.flat``): nothing in
it can anchor a lattice. ``transposed`` is SegNet with 3x3 stride-2 transposed convolutions (uneven overlap).
The additive and multiplicative lattices are planted at the input, not by a strided layer: smoothing the strided
layers' backward pass must leave them ("not the strided layers", reported beside the verdict). No control here has a
lattice made by a strided layer that the hooks remove (a strided branch that added its zero-inserted gradient wrote
too weak a pattern: band-stop x0.4 on one classifier), so the stride_smooth arm's result is reported as a number, not
used by any verdict or by the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2snets.metrics.lattice import smoothing_response
from s2snets.names import CONTROLS as CONTROL_NAMES

PLANTED_KINDS = ("smooth", "additive", "multiplicative", "zero_insertion", "ignored")


class _PlantedGradient(torch.autograd.Function):
    """Identity forward; backward: smooth the gradient, then multiply by ``mult`` and add ``add`` x its RMS."""

    @staticmethod
    def forward(ctx, x: Tensor, response: Tensor, mult: Tensor, add: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(response, mult, add)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        response, mult, add = ctx.saved_tensors
        g = torch.fft.ifft2(torch.fft.fft2(grad.float()) * response).real
        if mult.numel():
            g = g * mult
        if add.numel():  # scaled by each map's own RMS: the lattice is a fixed share of the gradient, whatever its size
            g = g + g.square().mean((-2, -1), keepdim=True).sqrt() * add
        return g.to(grad.dtype), None, None, None


MODULATION = 30.0  # the multiplicative tile is 1 + MODULATION x (a zero-mean unit-RMS tile)
ADDITIVE = 0.03  # the additive tile's RMS, as a share of the smoothed gradient's RMS


def planted_tile(period: int, kind: str, seed: int = 0, scale: float = 1.0) -> Tensor:
    """The P x P tile of a planted lattice, drawn from ``seed``. additive: zero mean, unit RMS (all lattice bins
    non-zero in general); multiplicative: 1 + 30 ``scale`` x that tile, a factor of either sign per phase;
    zero_insertion: 1 + ``scale`` (Z - 1) with Z = P^2 at phase (0, 0) and 0 elsewhere (mean 1): at scale 1 what a
    1x1 stride-P layer's backward pass does, below 1 a partial one."""
    if kind in ("additive", "multiplicative"):
        tile = torch.randn(period, period, generator=torch.Generator().manual_seed(seed))
        tile = tile - tile.mean()
        tile = tile / tile.square().mean().sqrt()
        return tile if kind == "additive" else 1 + MODULATION * scale * tile
    if kind == "zero_insertion":
        tile = torch.zeros(period, period)
        tile[0, 0] = period * period
        return 1 + scale * (tile - 1)
    raise ValueError(f"no tile for planted kind '{kind}'")


def planted_construction(kind: str, scale: float = 1.0) -> dict:
    """What a planted classifier of ``kind`` is made of, as data: part of every control job's key, so a change of
    the construction recomputes its jobs instead of reusing records of another one. (At ``scale`` 1 the record is
    0.3's, so its jobs keep their keys.)"""
    out = {"kind": kind, "smoothing_order": 2, "strength": ADDITIVE * scale if kind == "additive" else None,
           "modulation": MODULATION * scale if kind == "multiplicative" else None}  # fmt: skip
    if kind == "zero_insertion":
        out["depth"] = scale
    return out


class PlantedClassifier(nn.Module):
    """A classifier with a planted truth. ``forward(x) -> logits``; (B, C, H, W) with H = W = ``size``.

    ``kind``: smooth | additive | multiplicative | ignored (module docstring). ``strength``: the additive tile's RMS
    as a share of the smoothed gradient's RMS, per map.
    """

    def __init__(self, classifier: nn.Module, kind: str, period: int, size: int, *, strength: float = ADDITIVE, seed: int = 0,
                 scale: float = 1.0):  # fmt: skip
        super().__init__()
        if kind not in PLANTED_KINDS:
            raise ValueError(f"unknown planted kind '{kind}'; use {', '.join(PLANTED_KINDS)}")
        if size % period:
            raise ValueError(f"a period-{period} lattice needs a size divisible by it, got {size}")
        self.classifier, self.kind, self.period = classifier, kind, period
        repeat = (size // period, size // period)
        self.register_buffer("response", smoothing_response(size, size, period, 2), persistent=False)
        mult = (
            planted_tile(period, kind, seed, scale).repeat(*repeat)
            if kind in ("multiplicative", "zero_insertion")
            else torch.empty(0)
        )
        add = planted_tile(period, "additive", seed).repeat(*repeat) * strength * scale if kind == "additive" else torch.empty(0)
        self.register_buffer("mult", mult, persistent=False)
        self.register_buffer("add", add, persistent=False)
        # A stride-P layer that reads one pixel of every P x P block, then a nearest fill: the positions in between
        # are never read (its backward pass is zero there, as every strided layer's between its taps).
        self.sub_lattice = nn.AvgPool2d(1, period) if kind == "ignored" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.sub_lattice is not None:  # nearest the input: its zeros are written after the smoothing, not smoothed away
            x = F.interpolate(self.sub_lattice(x), scale_factor=self.period, mode="nearest")
        return self.classifier(_PlantedGradient.apply(x, self.response.to(x.dtype), self.mult.to(x.dtype), self.add.to(x.dtype)))

    def extra_repr(self) -> str:
        return f"planted={self.kind}, period={self.period}"


@dataclass(frozen=True)
class Control:
    """One planted control: which classifier to plant, with which decoder, and the verdict it must get."""

    name: str
    planted: str  # PlantedClassifier kind
    decoder: str  # unpool | transposed | flat
    truth: str  # the verdict the rules must give
    strided: str | None  # what the stride_smooth arm should find, where a control's construction fixes it (reported)
    description: str
    accepts: tuple[str, ...] = ()  # the verdicts that count as its truth (default: the truth itself)
    scalable: bool = False  # its planted lattice has a strength (``hypothesis.control_strengths`` scales it)

    def recovered_by(self, verdict: str) -> bool:
        return verdict in (self.accepts or (self.truth,))

    def build(self, classifier: nn.Module, period: int, size: int, seed: int = 0) -> PlantedClassifier:
        return PlantedClassifier(classifier, self.planted, period, size, seed=seed)


CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control("additive", "additive", "unpool", "classifier-born", "not the strided layers",
                "a fixed period-P tile (3 % of the gradient's RMS) added to a smoothed input gradient", scalable=True),
        Control("multiplicative", "multiplicative", "unpool", "classifier-born", "not the strided layers",
                "a smoothed input gradient multiplied by a period-P tile of both signs (1 + 30 x a unit tile), as the "
                "polyphase sub-kernels of a strided layer scale its gradient per phase", scalable=True),
        Control("ignored", "ignored", "unpool", "ignored positions", None,
                "a classifier that reads one pixel of every P x P block (a stride-P sub-sampler)"),
        Control("none", "smooth", "flat", "no pattern", None,
                "a smoothed input gradient and a decoder without any grid: no lattice has a source"),
        Control("decoder", "smooth", "transposed", "decoder-born", None,
                "a smoothed input gradient and a decoder of 3x3 stride-2 transposed convolutions (uneven overlap)"),
        Control("zero_insertion", "zero_insertion", "unpool", "classifier-born", "not the strided layers",
                "a smoothed input gradient multiplied by a stride-P zero insertion (P^2 at one phase, 0 elsewhere): "
                "what a 1x1 stride-P layer's backward pass does", scalable=True),
        Control("null_unpool", "smooth", "unpool", "not classifier-born", None,
                "a smoothed input gradient through the paper's unpool decoder: any pattern is the decoder's or the "
                "images'", accepts=("no pattern", "decoder-born")),
        Control("null_resize_conv", "smooth", "resize_conv", "not classifier-born", None,
                "a smoothed input gradient through the resize-conv decoder: any pattern is the decoder's or the "
                "images'", accepts=("no pattern", "decoder-born")),
    )
}  # fmt: skip
if tuple(CONTROLS) != CONTROL_NAMES:
    raise RuntimeError(f"planted controls {tuple(CONTROLS)} differ from s2snets.names.CONTROLS {CONTROL_NAMES}")
