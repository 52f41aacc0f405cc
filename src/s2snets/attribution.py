"""My saliency map has a grid: is it an artifact, where does it come from, and how do I remove it faithfully?

Gradient-based attributions (Captum's Saliency, IntegratedGradients, GuidedBackprop, pytorch-grad-cam's maps, plain
gradients) of models with strided layers often show a grid (Captum #852, MONAI #5156): the backward pass of a strided
layer inserts zeros between gradient samples and overlaps them unevenly, so some input positions get many times the
gradient of their neighbours whatever the image (Odena et al. 2016). ``grid_diagnostic`` tests for it, from one map
or many:

* per period P, a **p-value** and a **strength**: the power at the period's lattice frequencies against the same map's
  power at the frequencies around them (same radius and orientation), in the map and in its local amplitude, a
  within-map F-test per frequency combined over frequencies and maps (``metrics.lattice_significance``); a strength of
  about 1 is no grid. It is calibrated on one map (the false-positive rates are measured by
  ``benchmarks/grid_diagnostic_rates.py``), free of the map's scale, and it says which layout it read;
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
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from s2snets.errors import InputError, is_count
from s2snets.layers.gradient import band_stop_response
from s2snets.metrics.lattice import phase_modulation, phase_power_profile
from s2snets.metrics.lattice_significance import lattice_peak_tests
from s2snets.metrics.lint import lint
from s2snets.models.hooks import remove_hooks, smooth_strided_backward

logger = logging.getLogger("s2snets")

MAP_FORMS = "(H, W), (C, H, W), (N, H, W) or (N, C, H, W), a tensor or a numpy array"
LAYOUTS = ("HW", "CHW", "NHW", "NCHW")
DEFAULT_PERIODS = (2, 4, 8)
FEATURES = ("values", "amplitude")  # what each period is tested on: the map itself, and its local amplitude


def _as_float64(attribution: object) -> Tensor:
    if not isinstance(attribution, Tensor):
        if not hasattr(attribution, "__array__"):
            raise InputError(f"attribution must be {MAP_FORMS}, got {type(attribution).__name__}")
        import numpy as np

        array = np.asarray(attribution)
        if array.dtype.kind not in "biuf":
            raise InputError(f"attribution must hold real numbers, got a numpy array of dtype {array.dtype}")
        attribution = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    if attribution.is_complex():
        raise InputError("attribution must hold real numbers, got a complex tensor: pass its real part or its abs()")
    return attribution.detach().cpu().double()


def as_maps(attribution: object) -> Tensor:
    """An attribution in any of ``MAP_FORMS`` as float64 (N, C, H, W), a 3-D one read as (C, H, W) (what
    ``remove_grid`` filters: each (H, W) map alike). InputError otherwise."""
    a = _as_float64(attribution)
    a = a[None, None] if a.ndim == 2 else a[None] if a.ndim == 3 else a
    if a.ndim != 4 or min(a.shape[-2:]) < 4:
        shape = tuple(attribution.shape)  # type: ignore[attr-defined]
        raise InputError(f"attribution of shape {shape} is not {MAP_FORMS} with sides >= 4")
    if not bool(torch.isfinite(a).all()):
        raise InputError("attribution holds NaN or infinite values")
    return a


def read_maps(attribution: object, layout: str | None = None) -> tuple[Tensor, str]:
    """An attribution and the layout it is in -> (float64 (N, C, H, W), the layout read).

    ``layout``: one of ``LAYOUTS``, or None to read it from the number of dimensions: 2-D is one map (H, W), 4-D a
    batch (N, C, H, W), 3-D N maps (N, H, W) (pytorch-grad-cam's form, Captum's for single-channel inputs), except a
    3-D array of 3 maps, which could as well be one RGB attribution (C, H, W) (Captum's, for one image): that one is
    refused unless ``layout`` says which. InputError for anything else, the message saying what to pass.
    """
    a = _as_float64(attribution)
    shape = tuple(a.shape)
    if layout is not None and layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)} or None (read from the shape), got {layout!r}")
    if layout is None:
        if a.ndim == 3 and shape[0] == 3:
            raise InputError(
                f"attribution of shape {shape} is ambiguous: three maps (N, H, W), as pytorch-grad-cam returns for three "
                "images, or one RGB attribution (C, H, W), as Captum returns for one image: pass layout='NHW' or "
                "layout='CHW'"
            )
        layout = {2: "HW", 3: "NHW", 4: "NCHW"}.get(a.ndim)
        if layout is None:
            raise InputError(f"attribution of shape {shape} is not {MAP_FORMS}")
    elif a.ndim != len(layout):
        raise InputError(f"attribution of shape {shape} has {a.ndim} dimensions, layout {layout!r} {len(layout)}")
    maps = {"HW": lambda: a[None, None], "CHW": lambda: a[None], "NHW": lambda: a[:, None], "NCHW": lambda: a}[layout]()
    if maps.numel() == 0 or min(maps.shape[-2:]) < 4:
        raise InputError(f"attribution of shape {shape} read as {layout} is empty or under 4 pixels a side: nothing to diagnose")
    if not bool(torch.isfinite(maps).all()):
        bad = int((~torch.isfinite(maps)).sum())
        raise InputError(
            f"attribution holds {bad} NaN or infinite values: a map cannot be tested for a grid until they are fixed"
        )
    return maps, layout


def _check_threshold(threshold: object) -> float:
    import numbers

    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < float(threshold) < 1:
        raise InputError(
            f"threshold is the grid test's significance level, a number in (0, 1) such as 0.01, got {threshold!r} "
            "(it is no longer a strength cut-off: the strengths are in the result's .strength)"
        )
    return float(threshold)


def _check_periods(periods: object, h: int, w: int) -> tuple[int, ...]:
    """Explicit periods: ints >= 2 that divide both sides with at least 2 repeats. None: those of (2, 4, 8) that divide
    them with at least 4 (fewer leave too few frequencies around the lattice's to compare with)."""
    if periods is None:
        usable = tuple(p for p in DEFAULT_PERIODS if h % p == 0 and w % p == 0 and 4 * p <= min(h, w))
        if not usable:
            raise InputError(
                f"no period of {DEFAULT_PERIODS} divides the maps' {h} x {w} pixels with 4 repeats: crop them to a multiple "
                f"of the period (e.g. attribution[..., :{h - h % 8 or h - h % 2}, :{w - w % 8 or w - w % 2}]) or pass periods="
            )
        return usable
    if isinstance(periods, int | str) or not hasattr(periods, "__iter__"):
        raise InputError(f"periods must be a tuple of ints >= 2 such as (2, 4, 8), got {periods!r}")
    out = []
    for p in periods:  # type: ignore[attr-defined]
        if not is_count(p, 2):
            raise InputError(f"periods must be ints >= 2 such as (2, 4, 8), got {p!r} in {periods!r}")
        if h % p or w % p or 2 * p > min(h, w):
            raise InputError(
                f"period {p} does not divide the maps' {h} x {w} pixels with at least 2 repeats: crop them to a multiple of "
                f"{p} (e.g. attribution[..., :{h - h % p}, :{w - w % p}]) or leave {p} out of periods"
            )
        out.append(int(p))
    if not out:
        raise InputError("periods is empty: give at least one period, such as (2, 4, 8)")
    return tuple(sorted(set(out)))


@dataclass
class GridDiagnosis:
    """What ``grid_diagnostic`` found, per period P tested:

    * ``p_value[P]``: the grid test's p-value, adjusted (Bonferroni) for the two statistics and every period tested,
      so ``p_value[P] < threshold`` is the decision at level ``threshold`` for the whole diagnosis;
    * ``strength[P]``: how many times the local background the power at the period's lattice frequencies is (mean over
      maps and bins; about 1 without a grid), in the statistic that gave the smaller p-value, ``seen_in[P]``:
      ``"values"`` (the map itself: a pattern added to it) or ``"amplitude"`` (its local amplitude, the root of the
      summed squared channels: a modulation, as a strided layer's backward pass writes);
    * ``share[P]``: the share of that statistic's variance on the period-P lattice above the background, in [0, 1];
    * ``profile[P]``: the P x P mean squared attribution per phase (y mod P, x mod P), relative to its mean, and
      ``modulation[P]`` its max / min (descriptive: which positions the grid favours);

    and ``form``: the layout the attribution was read as (``HW``, ``CHW``, ``NHW``, ``NCHW``); ``maps``: how many
    maps were tested (constant maps, which hold no information, are left out); the layers that predict a grid.
    """

    strength: dict[int, float]
    p_value: dict[int, float]
    seen_in: dict[int, str]
    share: dict[int, float]
    modulation: dict[int, float]
    profile: dict[int, list[list[float]]]
    form: str = "NCHW"
    maps: int = 1
    layers: list[str] = field(default_factory=list)  # the lint's findings for the model, when one was given
    predicted_periods: list[int] = field(default_factory=list)
    threshold: float = 0.01
    shares: dict[str, dict[int, float]] = field(default_factory=dict)  # share[P] for each statistic

    @property
    def significant_periods(self) -> list[int]:
        """The periods whose p-value is below ``threshold``."""
        return sorted(p for p, v in self.p_value.items() if v < self.threshold)

    @property
    def dominant_period(self) -> int | None:
        """The grid's period, or None when no period is significant. The finest significant period P is folded onto
        its divisors: the smallest significant divisor d whose lattice holds at least half of the excess power that
        P's lattice holds (``shares``, in the statistic where P's share is the larger). A period-4 grid has power at
        the period-2 frequencies too; its period-8 frequencies stay empty, since each period is tested on the
        frequencies no coarser period has."""
        found = self.significant_periods
        if not found:
            return None
        finest = max(found)
        # Both periods' shares in one statistic: the one in which the grid is the larger part of the map.
        share = max(self.shares.values(), key=lambda shares: shares[finest]) if self.shares else self.share
        for d in found:
            if finest % d == 0 and d < finest and share[d] >= 0.5 * share[finest]:
                return d
        return finest

    @property
    def has_grid(self) -> bool:
        return self.dominant_period is not None

    def to_dict(self) -> dict:
        return {"strength": self.strength, "p_value": self.p_value, "seen_in": self.seen_in, "share": self.share,
                "modulation": self.modulation, "profile": self.profile, "form": self.form, "maps": self.maps,
                "threshold": self.threshold, "dominant_period": self.dominant_period, "layers": self.layers,
                "predicted_periods": self.predicted_periods}  # fmt: skip

    def __repr__(self) -> str:
        scores = ", ".join(f"P={p}: x{s:.1f} p={self.p_value[p]:.2g}" for p, s in self.strength.items())
        verdict = f"grid of period {self.dominant_period}" if self.has_grid else "no grid"
        maps = f"{self.maps} map{'s' if self.maps != 1 else ''} read as {self.form}"
        return f"GridDiagnosis({verdict} at level {self.threshold:g}; {maps}; strength {scores})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{p}</td><td>{self.strength[p]:.2f}</td><td>{self.p_value[p]:.2g}</td><td>{self.seen_in[p]}</td>"
            f"<td>{self.modulation[p]:.2f}</td></tr>"
            for p in self.strength
        )
        layers = "".join(f"<li>{x}</li>" for x in self.layers)
        return (f"<b>{'grid of period ' + str(self.dominant_period) if self.has_grid else 'no grid'}</b> "
                f"(level {self.threshold:g}; {self.maps} map(s) read as {self.form})"
                "<table><tr><th>period</th><th>strength (power / local background)</th><th>p-value</th><th>seen in</th>"
                f"<th>phase modulation</th></tr>{rows}</table>" + (f"layers the lint blames:<ul>{layers}</ul>" if layers else ""))  # fmt: skip

    def plot(self, attribution, fixed=None, *, index: int = 0):
        """The map before (and after a fix) and the phase profile of the dominant period: a matplotlib Figure.
        ``attribution`` (and ``fixed``) in the layout this diagnosis read."""
        from s2snets.report.figures import grid_diagnosis_figure

        maps = read_maps(attribution, self.form)[0]
        return grid_diagnosis_figure(self, maps, None if fixed is None else read_maps(fixed, self.form)[0], index)


def grid_diagnostic(
    attribution: object,
    *,
    model: nn.Module | None = None,
    inputs: object = None,
    periods: tuple[int, ...] | None = None,
    threshold: float = 0.01,
    layout: str | None = None,
) -> GridDiagnosis:
    """Is there a grid in ``attribution``, at which periods and phases, and which layers of ``model`` predict it?

    ``attribution``: one map or several, (H, W), (C, H, W), (N, H, W) or (N, C, H, W), tensor or numpy array, any scale
    (each map is normalised first, in float64); 3-D is read as N maps unless it has 3 (ambiguous: pass ``layout``
    'NHW' or 'CHW'); the layout read is the result's ``form``. ``periods``: ints >= 2 that divide the maps' sides
    (default: those of 2, 4, 8 that divide them 4 times or more). ``threshold``: the significance level in (0, 1).
    ``model``, ``inputs``: the model to lint and the example or size it traces with (default: the maps' own size).

    The test, one map at a time (``metrics.lattice_significance``): the power at each period's lattice frequencies
    against the same map's power at the frequencies around them (same radius and orientation), in the map and in its
    local amplitude; per-frequency F-tests combined over frequencies and maps by Fisher's method, adjusted (Bonferroni)
    for the two statistics and the periods. One map suffices; more maps sharpen it. -> ``GridDiagnosis``.
    """
    threshold = _check_threshold(threshold)
    maps, form = read_maps(attribution, layout)
    h, w = maps.shape[-2:]
    tested = _check_periods(periods, h, w)
    # Scale-free: every map divided by the power of two at or above its largest value (exact), then centred per channel.
    _, exponent = torch.frexp(maps.abs().amax((1, 2, 3), keepdim=True))
    maps = torch.ldexp(maps, -exponent)
    maps = maps - maps.mean((-2, -1), keepdim=True)
    informative = maps.abs().amax((1, 2, 3)) > 0
    if not bool(informative.any()):  # 0 / 0 everywhere: no answer, and most often an attribution that never ran
        raise InputError(
            "attribution is constant in every map: nothing to diagnose (an all-zero saliency map often means the "
            "gradient never reached the input: inputs.requires_grad, a detached tensor, a saturated output)"
        )
    if not bool(informative.all()):
        logger.warning("grid_diagnostic: %d of %d maps are constant and were left out", int((~informative).sum()), len(maps))
        maps = maps[informative]
    features = {"values": maps.sum(1), "amplitude": maps.square().sum(1).sqrt()}
    try:
        tests = {name: lattice_peak_tests(f, tested) for name, f in features.items()}
    except ValueError as exc:
        raise InputError(
            f"the maps are too small to test periods {tested} together ({exc}): pass fewer or smaller periods"
        ) from None
    out = GridDiagnosis({}, {}, {}, {}, {}, {}, form=form, maps=len(maps), threshold=threshold)
    family = len(FEATURES) * len(tested)
    for p in tested:
        best = min(FEATURES, key=lambda name: tests[name][p].p_value)
        result = tests[best][p]
        out.p_value[p] = min(1.0, result.p_value * family)
        out.strength[p], out.seen_in[p] = result.strength, best
        for name in FEATURES:
            out.shares.setdefault(name, {})[p] = sum(tests[name][p].excess) / len(tests[name][p].excess)
        out.share[p] = out.shares[best][p]
        profile = phase_power_profile(maps, p)
        out.profile[p] = (profile / profile.mean()).tolist()
        out.modulation[p] = phase_modulation(maps, p)
    if model is not None:
        shape = (h, w) if form in ("HW", "NHW") else (maps.shape[1], h, w)  # no channels: the model's own
        report = lint(model, inputs if inputs is not None else shape)
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
