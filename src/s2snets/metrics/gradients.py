"""Gradient-artifact probes: where the backward pass of a classifier puts checkerboards.

For inputs x (a dataset batch, or noise at initialisation) the probe computes g = d loss / d x, with loss the
cross-entropy against the labels (or, without labels, the sum of the logits), and reports the mean power spectrum of
g over the inputs and its lattice energy per period (see ``spectrum.lattice_energy``). Lattice energy of the *mean*
power spectrum (not the mean of per-image energies) measures artifacts shared across inputs; its peak contrast sees a
lattice added to the gradient. A lattice *multiplied* into it (a strided layer's zero insertion) puts no peak on the
bins but makes the gradient's power uneven over the P x P phases: ``modulation`` (max/min, ``metrics.lattice``) against
its phase-scrambled ``modulation_floor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2snets.errors import InputError, ModelError
from s2snets.metrics.lattice import phase_modulation, phase_scrambled_floor
from s2snets.metrics.spectrum import lattice_contrast, lattice_mask, power_spectrum, radial_profile


@dataclass
class GradientSpectrum:
    """What a gradient probe measured: the mean power spectrum of input gradients and its lattice scores."""

    mean_power: Tensor  # (H, W), unshifted
    mean_abs_gradient: Tensor  # (H, W): where the gradient lands, averaged over inputs and channels
    radial: Tensor  # (R,)
    lattice: dict[int, float]
    contrast: dict[int, float]  # lattice peak contrast per period (spectrum.lattice_contrast): ~1 = no checkerboard
    modulation: dict[int, float] = field(default_factory=dict)  # max/min gradient power over the P x P phases
    modulation_floor: dict[int, float] = field(default_factory=dict)  # the same with the phases scrambled

    def to_dict(self, maps: bool = True) -> dict:
        """JSON-able: the scores per period, and with ``maps`` the (H, W) maps as nested lists."""
        scores = {
            "lattice_energy": {str(k): v for k, v in self.lattice.items()},
            "lattice_contrast": {str(k): v for k, v in self.contrast.items()},
            "phase_modulation": {str(k): v for k, v in self.modulation.items()},
            "phase_modulation_floor": {str(k): v for k, v in self.modulation_floor.items()},
        }
        if not maps:
            return scores
        return {
            **scores,
            "mean_power": self.mean_power.tolist(),
            "mean_abs_gradient": self.mean_abs_gradient.tolist(),
            "radial": self.radial.tolist(),
        }

    def __repr__(self) -> str:
        h, w = self.mean_power.shape
        scores = ", ".join(
            f"P={p}: energy {self.lattice[p]:.4f}, contrast {self.contrast[p]:.2f}, modulation {self.modulation.get(p, float('nan')):.2f} "
            f"(floor {self.modulation_floor.get(p, float('nan')):.2f})"
            for p in self.lattice
        )
        return f"GradientSpectrum({h}x{w}; {scores})"

    def _repr_html_(self) -> str:
        h, w = self.mean_power.shape
        rows = "".join(
            f"<tr><td>{p}</td><td>{self.lattice[p]:.4f}</td><td>{self.contrast[p]:.2f}</td>"
            f"<td>{self.modulation.get(p, float('nan')):.2f} ({self.modulation_floor.get(p, float('nan')):.2f})</td></tr>"
            for p in self.lattice
        )
        return (
            f"<table><caption>input-gradient spectrum, {h}&times;{w}</caption>"
            "<tr><th>period</th><th>lattice energy</th><th>lattice contrast (1 = none)</th>"
            "<th>phase modulation (floor)</th></tr>"
            f"{rows}</table>"
        )


class GradientProbe:
    """Captum-style: ``GradientProbe(model).attribute(x, target=3)`` -> GradientSpectrum of d loss / d x.

    ``target``: an int (one class for every input), a (N,) tensor of classes, or None (the logit sum: the
    architecture's own gradient pattern). The model is put in eval mode for the probe and restored after it.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.Flatten(), nn.LazyLinear(10))
    >>> spectrum = GradientProbe(model).attribute(torch.randn(8, 1, 32, 32), target=3)
    >>> sorted(spectrum.lattice)
    [2, 4, 8]
    """

    def __init__(self, model: nn.Module, periods: tuple[int, ...] = (2, 4, 8), batch_size: int = 256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if any(p < 2 for p in periods):
            raise ValueError(f"lattice periods must be >= 2, got {periods}")
        self.model, self.periods, self.batch_size = model, tuple(periods), batch_size

    def attribute(self, inputs: Tensor, target: Tensor | int | None = None) -> GradientSpectrum:
        return gradient_probe(self.model, inputs, target, self.periods, self.batch_size)


def spectrum_lattice_energy(mean_power: Tensor, period: int) -> float:
    """Lattice energy of an already averaged power spectrum (H, W)."""
    h, w = mean_power.shape[-2:]
    p = mean_power.clone()
    p[0, 0] = 0
    total = p.sum()
    return float((p * lattice_mask(h, w, period, p.device)).sum() / total) if total > 0 else 0.0


TARGET_FORMS = "an int, a 0-dim tensor, or N class indices (a list, a numpy array or an (N,) tensor), or None"


def as_targets(target: object, n: int, device: torch.device) -> Tensor | None:
    """Captum's ``target`` forms -> int64 (N,) class indices on ``device`` (None stays None). InputError otherwise."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise InputError(f"target {target!r} is not a class index; give {TARGET_FORMS}")
    if isinstance(target, int) or (hasattr(target, "ndim") and target.ndim == 0):
        value = int(target.item() if hasattr(target, "item") else target)  # type: ignore[union-attr]
        return torch.full((n,), value, dtype=torch.long, device=device)
    try:
        t = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"target {target!r} is not a class index; give {TARGET_FORMS}") from None
    if t.shape != (n,) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"target of shape {tuple(t.shape)} and dtype {t.dtype} does not fit {n} inputs; give {TARGET_FORMS}")
    return t.to(device=device, dtype=torch.long)


def input_gradients(model: nn.Module, inputs: Tensor, labels: Tensor | None = None) -> Tensor:
    """d loss / d inputs, model in eval mode. (B, C, H, W) -> (B, C, H, W)."""
    was_training = model.training
    model.eval()
    x = inputs.detach().clone().requires_grad_(True)
    logits = model(x)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ModelError(f"the model returned {got}; a classifier must map (B, C, H, W) to logits (B, K)")
    if labels is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < logits.shape[1]:
        model.train(was_training)
        raise InputError(
            f"target holds classes {int(labels.min())}..{int(labels.max())}, the model has {logits.shape[1]} outputs"
        )
    loss = F.cross_entropy(logits, labels, reduction="sum") if labels is not None else logits.sum()
    (grad,) = torch.autograd.grad(loss, x)
    model.train(was_training)
    return grad


def gradient_probe(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | int | None = None,
    periods: tuple[int, ...] = (2, 4, 8),
    batch_size: int = 256,
) -> GradientSpectrum:
    """Mean power spectrum, lattice energies and contrasts of input gradients over ``inputs`` (N, C, H, W).

    ``labels``: (N,) class indices, one int for every input (Captum's ``target``), or None for the logit sum.
    """
    if not isinstance(inputs, Tensor) or inputs.ndim != 4 or not inputs.is_floating_point():
        got = f"{tuple(inputs.shape)} {inputs.dtype}" if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a float tensor (N, C, H, W), got {got}")
    if len(inputs) == 0:
        raise ValueError("inputs is empty: give at least one image")
    labels = as_targets(labels, len(inputs), inputs.device)
    power_sum, abs_sum, n, maps = None, None, 0, []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size]
        y = labels[start : start + batch_size] if labels is not None else None
        g = input_gradients(model, x, y).float()
        g = g - g.mean((-2, -1), keepdim=True)  # the DC of each map carries no spatial pattern
        maps.append(g.cpu())
        p = power_spectrum(g).sum((0, 1))
        a = g.abs().sum((0, 1))
        power_sum = p if power_sum is None else power_sum + p
        abs_sum = a if abs_sum is None else abs_sum + a
        n += x.shape[0] * x.shape[1]
    mean_power, mean_abs = power_sum / n, abs_sum / n
    size = min(mean_power.shape)
    return GradientSpectrum(
        mean_power.cpu(),
        mean_abs.cpu(),
        radial_profile(mean_power).cpu(),
        {p: spectrum_lattice_energy(mean_power, p) for p in periods if p <= size},
        {p: lattice_contrast(mean_power.cpu(), p) for p in periods if p <= size},
        {p: phase_modulation(torch.cat(maps), p) for p in periods if p <= size},
        {p: phase_scrambled_floor(torch.cat(maps), p) for p in periods if p <= size},
    )


def noise_probe(
    model: nn.Module, channels: int, size: int, n: int = 64, seed: int = 0, periods: tuple[int, ...] = (2, 4, 8)
) -> GradientSpectrum:
    """The probe on Gaussian-noise inputs with the logit sum as loss: the architecture's own gradient pattern."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = torch.randn(n, channels, size, size, generator=g).to(device)
    return gradient_probe(model, x, None, periods)
