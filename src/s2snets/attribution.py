"""My saliency map has a grid: is it an artifact, where does it come from, and how do I remove it faithfully?

Gradient-based attributions (Captum's Saliency, IntegratedGradients, GuidedBackprop, pytorch-grad-cam's maps, plain
gradients) of models with strided layers often show a grid (Captum #852, MONAI #5156): the backward pass of a strided
layer inserts zeros between gradient samples and overlaps them unevenly, so some input positions get many times the
gradient of their neighbours whatever the image (Odena et al. 2016). ``grid_diagnostic`` measures it:

* **grid strength** per period P: how uneven the attribution's power is over the P x P phases (max / min of the mean
  squared attribution per phase, ``metrics.lattice.phase_modulation``), against the same with the phases scrambled
  across maps (its floor); a strength of about 1 is no grid;
* the **phases** that get the most (the P x P profile) and the **layers** that predict the period (``lint``);
* two fixes: ``smoothed_backward(model)`` recomputes the attribution with every strided layer's backward pass
  smoothed (the forward pass, hence the prediction explained, is untouched: the hook surrogate of Herdt et al. 2024,
  "Smooth Deep Saliency"); ``remove_grid(attribution, P)`` low-passes a computed map at the period-P sub-lattice's
  Nyquist frequency (FORGrad's cutoff, Muzellec et al. 2023) when the model cannot be re-run.

No dependency on Captum: tensors (or numpy arrays) in, tensors out.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 1, stride=2), nn.Flatten(), nn.LazyLinear(3))
    >>> x = torch.randn(32, 1, 16, 16, requires_grad=True)
    >>> model(x)[:, 0].sum().backward()
    >>> diagnosis = grid_diagnostic(x.grad, model=model)
    >>> diagnosis.dominant_period, diagnosis.strength[2] > 10
    (2, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from s2snets.errors import InputError
from s2snets.layers.gradient import band_stop_response
from s2snets.metrics.lattice import phase_modulation, phase_power_profile, phase_scrambled_floor
from s2snets.metrics.lint import lint
from s2snets.models.hooks import remove_hooks, smooth_strided_backward

MAP_FORMS = "(H, W), (C, H, W) or (N, C, H, W), a tensor or a numpy array"


def as_maps(attribution: object) -> Tensor:
    """An attribution in any of ``MAP_FORMS`` as float64 (N, C, H, W). InputError otherwise."""
    if not isinstance(attribution, Tensor):
        if not hasattr(attribution, "__array__"):
            raise InputError(f"attribution must be {MAP_FORMS}, got {type(attribution).__name__}")
        import numpy as np

        attribution = torch.from_numpy(np.ascontiguousarray(attribution))
    a = attribution.detach().double().cpu()
    a = a[None, None] if a.ndim == 2 else a[None] if a.ndim == 3 else a
    if a.ndim != 4 or min(a.shape[-2:]) < 4:
        raise InputError(f"attribution of shape {tuple(attribution.shape)} is not {MAP_FORMS} with sides >= 4")
    if not bool(torch.isfinite(a).all()):
        raise InputError("attribution holds NaN or infinite values")
    return a


@dataclass
class GridDiagnosis:
    """What ``grid_diagnostic`` found: per period, the grid strength (phase modulation / its floor) and the P x P
    phase profile (mean squared attribution per phase, relative to its mean); the layers that predict it."""

    strength: dict[int, float]
    modulation: dict[int, float]
    floor: dict[int, float]
    profile: dict[int, list[list[float]]]
    layers: list[str] = field(default_factory=list)  # the lint's findings for the model, when one was given
    predicted_periods: list[int] = field(default_factory=list)
    threshold: float = 1.5

    @property
    def dominant_period(self) -> int | None:
        """The grid's period, or None when no period reaches ``threshold``. A period-2 grid shows at 4 and 8 too, so
        the finest period that reaches it is folded onto its divisors: the smallest divisor d whose profile (the
        finest one averaged over positions mod d) explains half of its variance, as the lint's dominant period."""
        found = [p for p, s in sorted(self.strength.items()) if s >= self.threshold]
        if not found:
            return None
        finest = max(found)
        profile = torch.tensor(self.profile[finest], dtype=torch.float64)
        variance = float(profile.var(unbiased=False))
        for d in sorted(p for p in self.strength if finest % p == 0 and p < finest):
            folded = profile.reshape(finest // d, d, finest // d, d).mean((0, 2)).repeat(finest // d, finest // d)
            if variance > 0 and float(folded.var(unbiased=False)) >= 0.5 * variance:
                return d
        return finest

    @property
    def has_grid(self) -> bool:
        return self.dominant_period is not None

    def to_dict(self) -> dict:
        return {"strength": self.strength, "modulation": self.modulation, "floor": self.floor, "profile": self.profile,
                "dominant_period": self.dominant_period, "layers": self.layers, "predicted_periods": self.predicted_periods}  # fmt: skip

    def __repr__(self) -> str:
        scores = ", ".join(f"P={p}: x{s:.1f}" for p, s in self.strength.items())
        verdict = f"grid of period {self.dominant_period}" if self.has_grid else "no grid"
        return f"GridDiagnosis({verdict}; strength {scores})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{p}</td><td>{self.strength[p]:.2f}</td><td>{self.modulation[p]:.2f}</td><td>{self.floor[p]:.2f}</td></tr>"
            for p in self.strength
        )
        layers = "".join(f"<li>{x}</li>" for x in self.layers)
        return (f"<b>{'grid of period ' + str(self.dominant_period) if self.has_grid else 'no grid'}</b>"
                "<table><tr><th>period</th><th>strength (modulation / floor)</th><th>modulation</th><th>floor</th></tr>"
                f"{rows}</table>" + (f"layers the lint blames:<ul>{layers}</ul>" if layers else ""))  # fmt: skip

    def plot(self, attribution, fixed=None, *, index: int = 0):
        """The map before (and after a fix) and the phase profile of the dominant period: a matplotlib Figure."""
        from s2snets.report.figures import grid_diagnosis_figure

        return grid_diagnosis_figure(self, as_maps(attribution), None if fixed is None else as_maps(fixed), index)


def grid_diagnostic(
    attribution: object,
    *,
    model: nn.Module | None = None,
    inputs: object = None,
    periods: tuple[int, ...] = (2, 4, 8),
    threshold: float = 1.5,
) -> GridDiagnosis:
    """Is there a grid in ``attribution`` (any of ``MAP_FORMS``; several maps sharpen the measure), at which periods
    and phases, and which layers of ``model`` predict it (``inputs``: the example or size its lint traces with;
    default the attribution's own shape)? ``threshold``: the strength from which a period counts as a grid."""
    maps = as_maps(attribution)
    usable = [p for p in periods if 2 <= p <= min(maps.shape[-2:]) // 2]
    if not usable:
        raise InputError(f"no period of {periods} fits maps of {tuple(maps.shape[-2:])} (each needs at least 2 repeats)")
    maps = maps - maps.mean((-2, -1), keepdim=True)
    if not bool(maps.abs().amax() > 0):  # 0 / 0 everywhere: no answer, and most often an attribution that never ran
        raise InputError(
            "attribution is constant in every map: nothing to diagnose (an all-zero saliency map often means the "
            "gradient never reached the input: inputs.requires_grad, a detached tensor, a saturated output)"
        )
    out = GridDiagnosis({}, {}, {}, {}, threshold=threshold)
    for p in usable:
        modulation, floor = phase_modulation(maps, p), phase_scrambled_floor(maps, p)
        out.modulation[p], out.floor[p] = modulation, floor
        out.strength[p] = modulation / floor if floor > 0 else math.inf
        profile = phase_power_profile(maps, p)
        out.profile[p] = (profile / profile.mean()).tolist()
    if model is not None:
        report = lint(model, inputs if inputs is not None else tuple(maps.shape[1:]))
        out.predicted_periods = list(report.predicted_periods)
        out.layers = [f"{layer.name} ({layer.op}): {layer.finding()}" for layer in report.findings]
    return out


@contextlib.contextmanager
def smoothed_backward(model: nn.Module, order: int = 2) -> Iterator[nn.Module]:
    """Within the block, every strided layer of ``model`` sends back a smoothed gradient (forward pass unchanged):
    compute the attribution again inside it. The hooks are removed on leaving.

        with s2snets.smoothed_backward(model):
            fixed = Saliency(model).attribute(x, target=y)
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    handles = smooth_strided_backward(model, order)
    try:
        yield model
    finally:
        remove_hooks(handles)


def remove_grid(attribution: object, period: int) -> Tensor:
    """The attribution without its period-P lattice band (an ideal low-pass at the sub-lattice's Nyquist frequency):
    for maps already computed. Not guaranteed faithful to the model (``smoothed_backward`` is). -> (N, C, H, W)."""
    maps = as_maps(attribution)
    keep = band_stop_response(maps.shape[-2], maps.shape[-1], period).double()
    return torch.fft.ifft2(torch.fft.fft2(maps) * keep).real
