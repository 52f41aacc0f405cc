"""The arms of the checkerboard experiment, as one registry: each arm changes one thing about how the decoder is
fine-tuned, and names the quantity the rules read from it.

``ARMS[name]`` is an ``Arm``: what it changes, the models it fine-tunes through (``install``), its manipulation
check (a probe measurement that shows it changed what it says), and the readout it feeds. ``READOUTS[name]`` is a
``Readout``: one number per fine-tuning replicate, computed from the records of the arms it needs. Adding an arm is
one entry here (and its name in ``s2snets.names.ARMS``); the grid plans it, the summary computes its readout, the
verdict's clauses, the report and the schema read it by name.

| arm               | what changes                                                        | forward pass |
|-------------------|---------------------------------------------------------------------|--------------|
| control           | nothing: the paper's setting                                        | the classifier |
| sham              | the loss: the decoder's own reconstruction error (MSE), no classifier | -          |
| band_stop         | the classifier's input gradient loses its period-P lattice band     | identical    |
| stride_smooth     | each strided layer of the classifier sends back a smoothed gradient | identical    |
| shift_y / shift_x | the autoencoder's grid moves 1 pixel down / right against the image and the classifier | identical |
| shift_period      | the autoencoder's grid moves P pixels down and right (its period-P phase does not change) | identical |
| lattice_shift_y / _x | the classifier reads its input's lattice neighbourhood moved 1 pixel down / right | changed by design (probe: top-1 cost) |
| lattice_shift_period | the same neighbourhood moved P pixels (no lattice bin turns): the sham of the two above | changed by design |
| sham_band_stop    | the gradient loses as much power as band_stop removes, away from the lattice band | identical |

The shifts move the *autoencoder's* grid (its input is rolled by s and its output rolled back), not the
classifier's input: moving the classifier's input misaligns the content it sees (top-1 0.92 -> 0.87 for a 1-pixel
shift), the decoder then learns a translation, and that translation writes lattices of its own (measured on the
smooth-gradient and transposed-decoder controls: their pattern's phase flipped at random from run to run). A
rolled autoencoder reconstructs less well near Fashion-MNIST's black border (30.4 -> 28.0 dB for 1 pixel), which
the fine-tuning partly repairs; the repair is an edge, not a lattice, and the lattice measure does not count it.

The lattice shifts move the lattice the *classifier reads* (``layers.frequency.roll_lattice``: the content within a
quarter lattice spacing of the lattice bins, rolled by s; every magnitude kept): a pattern the classifier's gradient
writes must move by -s to be read where it was (follow +1), one the decoder or the images make stays (follow -1, or 0
for noise). ``lattice_shift_period`` rolls the same neighbourhood by P pixels: no lattice bin turns, so any "follow"
it shows is the measure's floor. 0.4's first design moved the lattice band of the *gradient* (identity forward): for
P = 2 a one-pixel move is a sign flip on the turned bins, so the decoder climbed the loss there (pilot, alexnet_s
seed 0: lattice peak x18 the control's, top-1 85.8 % against 89.9 %; the statistical review of 0.4): rejected, and
replaced by this forward version, whose gradient is a true one (arm version 2: their records are not reused).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from s2snets.experiments.verdict import log_ratio
from s2snets.layers.frequency import roll_lattice
from s2snets.layers.gradient import GradientFilter, matched_sham_gradient
from s2snets.metrics.lattice import frame_follow, lattice_coefficients, peak_amplitude, phase_lock, shift_rotation
from s2snets.models.hooks import smooth_strided_backward
from s2snets.names import ARMS as ARM_NAMES
from s2snets.names import check_registry

# ----------------------------------------------------------------------------------------------- model wrappers


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


class LatticeShifted(nn.Module):
    """``classifier`` that reads its input with the lattice's neighbourhood moved by ``shift``
    (``layers.frequency.roll_lattice``): a lattice it prefers must be written ``shift`` pixels back to reach it.
    The forward pass changes by design (the probe measures what that costs in top-1); the gradient is a true one."""

    def __init__(self, classifier: nn.Module, period: int, shift: tuple[int, int]):
        super().__init__()
        self.classifier, self.period, self.shift = classifier, period, tuple(shift)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(roll_lattice(x, self.period, self.shift))  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"period={self.period}, shift={self.shift}"


class MatchedSham(nn.Module):
    """``classifier`` whose input gradient loses band_stop's power away from the lattice band (forward identical)."""

    def __init__(self, classifier: nn.Module, period: int):
        super().__init__()
        self.classifier, self.period = classifier, period

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(matched_sham_gradient(x, self.period))


# ----------------------------------------------------------------------------------------------- arms

Install = Callable[[nn.Module, nn.Module | None, int], tuple[nn.Module, nn.Module | None]]


@dataclass(frozen=True)
class Arm:
    """One way of fine-tuning the decoder.

    ``install(autoencoder, classifier, period) -> (autoencoder, judge)``: the models the decoder is fine-tuned
    through (judge None: the reconstruction loss). ``shift(period)``: how far the arm moves the autoencoder's grid
    (``grid``) or the gradient's lattice (``lattice``). ``check``: the probe's manipulation check that shows the arm
    changed something (None: nothing to check). ``reads``: the readout it feeds."""

    name: str
    changes: str
    install: Install
    check: str | None = None
    reads: str | None = None
    grid: Callable[[int], tuple[int, int]] | None = None
    lattice: Callable[[int], tuple[int, int]] | None = None  # where a pattern the classifier prefers moves
    version: int = 1  # bumped when what the arm does changes: part of its jobs' keys, so old records are not reused

    def shift(self, period: int) -> tuple[int, int]:
        move = self.grid or self.lattice
        return move(period) if move else (0, 0)


def _same(autoencoder, classifier, period):
    return autoencoder, classifier


def _grid(shift: Callable[[int], tuple[int, int]]) -> Install:
    return lambda autoencoder, classifier, period: (GridShifted(autoencoder, shift(period)), classifier)


def _lattice(shift: Callable[[int], tuple[int, int]]) -> Install:
    return lambda autoencoder, classifier, period: (
        autoencoder,
        LatticeShifted(cast(nn.Module, classifier), period, shift(period)),
    )


def _back(shift: Callable[[int], tuple[int, int]]) -> Callable[[int], tuple[int, int]]:
    """The classifier reads the lattice moved by s: what it prefers is written at -s."""
    return lambda p: (-shift(p)[0], -shift(p)[1])


def _by_one_y(p: int) -> tuple[int, int]:
    return (1, 0)


def _by_one_x(p: int) -> tuple[int, int]:
    return (0, 1)


def _by_period(p: int) -> tuple[int, int]:
    return (p, p)


ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm("control", "nothing: the paper's setting", _same),
        Arm("sham", "the loss: the decoder's own reconstruction error, no classifier",
            lambda autoencoder, classifier, period: (autoencoder, None), reads="pattern"),
        Arm("band_stop", "the classifier's input gradient loses its period-P lattice band",
            lambda a, c, p: (a, nn.Sequential(GradientFilter("band_stop", p), cast(nn.Module, c))),
            check="band-stop acts (check)", reads="gradient"),
        Arm("stride_smooth", "each strided layer of the classifier sends back a smoothed gradient",
            lambda a, c, p: (a, StrideSmoothed(cast(nn.Module, c))), reads="geometry"),
        Arm("shift_y", "the autoencoder's grid moves 1 pixel down", _grid(_by_one_y), reads="frame", grid=_by_one_y),
        Arm("shift_x", "the autoencoder's grid moves 1 pixel right", _grid(_by_one_x), reads="frame", grid=_by_one_x),
        Arm("shift_period", "the autoencoder's grid moves P pixels down and right", _grid(_by_period), reads="stability",
            grid=_by_period),
        Arm("lattice_shift_y", "the classifier reads its input's lattice neighbourhood moved 1 pixel down",
            _lattice(_by_one_y), check="lattice shift costs little (check)", reads="follow", lattice=_back(_by_one_y),
            version=2),
        Arm("lattice_shift_x", "the classifier reads its input's lattice neighbourhood moved 1 pixel right",
            _lattice(_by_one_x), check="lattice shift costs little (check)", reads="follow", lattice=_back(_by_one_x),
            version=2),
        Arm("lattice_shift_period", "the classifier reads its lattice neighbourhood moved P pixels (no lattice bin "
            "turns): the sham", _lattice(_by_period), reads="follow_sham", lattice=_back(_by_period), version=2),
        Arm("sham_band_stop", "the gradient loses band_stop's power away from the lattice band",
            lambda a, c, p: (a, MatchedSham(cast(nn.Module, c), p)), check="sham matches the band's power (check)",
            reads="band_sham"),
    )
}  # fmt: skip
if tuple(ARMS) != ARM_NAMES:
    raise RuntimeError(f"arms {tuple(ARMS)} differ from s2snets.names.ARMS {ARM_NAMES}")


def arm_models(arm: str, autoencoder: nn.Module, classifier: nn.Module | None, period: int) -> tuple[nn.Module, nn.Module | None]:
    """(autoencoder, classifier) for fine-tuning in ``arm``; classifier None for the sham (reconstruction loss)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm '{arm}'; use one of {', '.join(ARMS)}")
    return ARMS[arm].install(autoencoder, classifier, period)


def arm_shift(arm: str, period: int) -> tuple[int, int]:
    """How far the arm moves the autoencoder's grid or the gradient's lattice: (0, 0) for arms that move neither."""
    return ARMS[arm].shift(period)


# ----------------------------------------------------------------------------------------------- readouts


@dataclass(frozen=True)
class Replicate:
    """One fine-tuning replicate of one (planted) classifier: its arms' records, the period, the records of the
    plain autoencoder it started from (``plain``: its own pattern) and of the sham of that autoencoder and seed."""

    arms: dict[str, dict]
    period: int
    plain: dict | None = None
    sham: dict | None = None


@dataclass(frozen=True)
class Readout:
    """One number per replicate that a rule reads: ``compute(replicate, h)`` (None where its arms are missing)."""

    name: str
    description: str
    needs: tuple[str, ...]
    compute: Callable[[Replicate, object], float | None] = field(repr=False)

    def value(self, run: Replicate, h: object) -> float | None:
        if any(a not in run.arms for a in self.needs):
            return None
        return self.compute(run, h)


def pattern_of(record: dict) -> Tensor:
    return torch.tensor(record["pattern"], dtype=torch.float64)


def _band_ratio(run: Replicate, arm: str, reference: str = "control") -> float:
    a, b = run.arms[arm], run.arms[reference]
    return log_ratio(a["band"], a["band_floor"], b["band"], b["band_floor"])


def _peak_ratio(run: Replicate, arm: str, reference: str) -> float:
    a, b = run.arms[arm], run.arms[reference]
    return log_ratio(a["peak"], a["peak_floor"], b["peak"], b["peak_floor"])


def _pattern(run: Replicate, h) -> float | None:
    if run.sham is None:
        return None
    control, sham = run.arms["control"], run.sham
    reference = max(h.min_amplitude, h.min_ratio * math.hypot(sham["peak"], sham["peak_floor"]))
    return 0.5 * math.log(control["peak"] ** 2 + control["peak_floor"] ** 2) - math.log(reference)


def classifier_follow(run: Replicate, arm: str) -> float:
    """+1: the lattice stayed in the classifier's frame when the autoencoder's grid moved (classifier-born);
    -1: it moved with the grid (the decoder's); 0: neither. ``metrics.lattice.frame_follow`` measures following the
    moved frame, here the autoencoder's, so its sign is flipped."""
    value = frame_follow(pattern_of(run.arms[arm]), pattern_of(run.arms["control"]), run.period, arm_shift(arm, run.period))
    return -value if value == value else value


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else math.nan


def induced(run: Replicate, arm: str) -> Tensor:
    """The fine-tuning-induced pattern of ``arm``: its mean residual minus the plain autoencoder's (H, W)."""
    pattern = pattern_of(run.arms[arm])
    return pattern - pattern_of(run.plain) if run.plain is not None else pattern


def lattice_follow(run: Replicate, arm: str, as_if: tuple[int, int] | None = None) -> float:
    """Does the induced pattern's lattice follow the gradient's lattice when ``arm`` moved it? +1 followed, -1 stayed,
    0 neither (``frame_follow`` on the induced patterns). ``as_if``: the shift to test against (the sham's readout
    tests its 1-pixel shifts on an arm that moved no phase)."""
    shift = as_if or arm_shift(arm, run.period)
    return frame_follow(induced(run, arm), induced(run, "control"), run.period, shift)


def classifier_share(run: Replicate, arms: tuple[str, ...] = ("lattice_shift_y", "lattice_shift_x")) -> float:
    """The classifier-born share of the induced pattern's lattice power, in [0, 1].

    Model per lattice bin that a shift turns by rotation q != 1: control b = c + d, shifted arm a = q c + d (the
    gradient-born part c turns, the rest d stays). So c = (b - a) / (1 - q), d = b - c, and the share is
    sum |c|^2 / (sum |c|^2 + sum |d|^2) over the informative bins of both shifts. Noise in a and b adds to both
    parts; the sham's share (``lattice_shift_period`` read as if it had turned) is the share noise alone gives."""
    c_power = d_power = 0.0
    for arm, as_if in arms_as(arms, run.period):
        h, w = pattern_of(run.arms["control"]).shape
        rotation = shift_rotation(h, w, run.period, as_if)
        informative = (rotation - 1).abs() > 1e-9
        b = lattice_coefficients(induced(run, "control"), run.period)[informative]
        a = lattice_coefficients(induced(run, arm), run.period)[informative]
        c = (b - a) / (1 - rotation[informative])
        c_power += float(c.abs().square().sum())
        d_power += float((b - c).abs().square().sum())
    total = c_power + d_power
    return c_power / total if total > 0 else math.nan


def arms_as(arms: tuple[str, ...], period: int) -> list[tuple[str, tuple[int, int]]]:
    """(arm, the shift its readout is tested against): the arm's own, or, for the sham, each 1-pixel arm's."""
    out: list[tuple[str, tuple[int, int]]] = []
    for arm in arms:
        if arm == "lattice_shift_period":
            out += [(arm, arm_shift(a, period)) for a in ONE_PIXEL]
        else:
            out.append((arm, arm_shift(arm, period)))
    return out


ONE_PIXEL = ("lattice_shift_y", "lattice_shift_x")


READOUTS: dict[str, Readout] = {
    r.name: r
    for r in (
        Readout("pattern", "x = ln A_peak(control) - ln max(q, r A_peak(sham))", ("control",), _pattern),
        Readout("gradient", "b = ln A_band(band_stop) - ln A_band(control)", ("control", "band_stop"),
                lambda run, h: _band_ratio(run, "band_stop")),
        Readout("frame", "f = mean classifier-follow index of shift_y, shift_x", ("control",),
                lambda run, h: _mean([classifier_follow(run, a) for a in ("shift_y", "shift_x") if a in run.arms]) if {
                    "shift_y", "shift_x"} & set(run.arms) else None),
        Readout("stability", "s = phase lock of shift_period with control", ("control", "shift_period"),
                lambda run, h: phase_lock(pattern_of(run.arms["shift_period"]), pattern_of(run.arms["control"]), run.period)),
        Readout("geometry", "g = ln A_band(stride_smooth) - ln A_band(band_stop)", ("stride_smooth", "band_stop"),
                lambda run, h: _band_ratio(run, "stride_smooth", "band_stop")),
        Readout("follow", "F = mean lattice-follow index of the induced pattern under lattice_shift_y, lattice_shift_x",
                ("control",), lambda run, h: _mean([lattice_follow(run, a) for a in ("lattice_shift_y", "lattice_shift_x")
                                                    if a in run.arms]) if {"lattice_shift_y", "lattice_shift_x"} & set(run.arms) else None),
        Readout("follow_sham", "F0 = the same index for lattice_shift_period, read as if it had moved by 1 pixel",
                ("control", "lattice_shift_period"),
                lambda run, h: _mean([lattice_follow(run, "lattice_shift_period", s) for _, s in arms_as(("lattice_shift_period",), run.period)])),
        Readout("follow_gain", "D = F - F0: how much more the pattern follows the moved lattice than the sham's",
                ("control", "lattice_shift_y", "lattice_shift_x", "lattice_shift_period"),
                lambda run, h: _mean([lattice_follow(run, a) for a in ("lattice_shift_y", "lattice_shift_x")])
                - _mean([lattice_follow(run, "lattice_shift_period", s) for _, s in arms_as(("lattice_shift_period",), run.period)])),
        Readout("induced_peak", "A = peak lattice amplitude of control's induced pattern (pixel units)", ("control",),
                lambda run, h: float(peak_amplitude(induced(run, "control"), run.period)) if run.plain is not None else None),
        Readout("top1_vs_sham", "t = the classifier's top-1 on the one-pixel arms' reconstructions minus on the sham's",
                ("lattice_shift_y", "lattice_shift_x", "lattice_shift_period"),
                lambda run, h: _mean([run.arms[a]["finetuned_top1"] for a in ONE_PIXEL])
                - run.arms["lattice_shift_period"]["finetuned_top1"]),
        Readout("shift_vs_sham", "v = ln A_peak(lattice_shift_y, _x) - ln A_peak(lattice_shift_period): the arms' validity",
                ("lattice_shift_y", "lattice_shift_x", "lattice_shift_period"),
                lambda run, h: _mean([_peak_ratio(run, a, "lattice_shift_period") for a in ONE_PIXEL])),
        Readout("share", "phi = classifier-born share of the induced pattern's lattice power (lattice shifts)",
                ("control", "lattice_shift_y", "lattice_shift_x"), lambda run, h: classifier_share(run)),
        Readout("share_sham", "phi0 = the same share from lattice_shift_period (what noise gives)",
                ("control", "lattice_shift_period"), lambda run, h: classifier_share(run, ("lattice_shift_period",))),
        Readout("band_sham", "b0 = ln A_band(sham_band_stop) - ln A_band(control)", ("control", "sham_band_stop"),
                lambda run, h: _band_ratio(run, "sham_band_stop")),
        Readout("band_specific", "b - b0 = ln A_band(band_stop) - ln A_band(sham_band_stop)",
                ("band_stop", "sham_band_stop"), lambda run, h: _band_ratio(run, "band_stop", "sham_band_stop")),
    )
}  # fmt: skip


check_registry("readout", READOUTS)


def readout_values(run: Replicate, h: object) -> dict[str, float]:
    """Every readout the replicate's arms allow: {name: value}."""
    out = {}
    for name, readout in READOUTS.items():
        value = readout.value(run, h)
        if value is not None:
            out[name] = value
    return out
