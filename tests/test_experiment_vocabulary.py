"""The experiment's vocabulary: arms and readouts as registry entries, jobs as typed specs keyed on what made them.

Every arm's install is checked against what it says it changes (the forward pass identical where it says so, the
gradient changed as it says); every job key moves when, and only when, something its record depends on moves.
"""

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from s2snets.config import RunConfig
from s2snets.experiments.controls import CONTROLS
from s2snets.experiments.hypothesis import GridClassifier, JobSpec, Upstream, grid_classifiers, plan
from s2snets.experiments.interventions import ARMS, READOUTS, Replicate, arm_models, readout_values
from s2snets.layers.frequency import lattice_band, roll_lattice
from s2snets.names import ARMS as ARM_NAMES


def fake_upstream(config: RunConfig, changed: dict | None = None) -> Upstream:
    """Stage keys for every classifier and autoencoder a config's grid uses (``changed``: some replaced)."""
    h = config.hypothesis
    decoders = [*h.upsamples, *(CONTROLS[n].decoder for n in h.controls)]
    classifiers = {c: f"classifier-{c.name}-{c.seed}" for c in grid_classifiers(config)}
    autoencoders = {(u, s): f"autoencoder-{u}-{s}" for u, s in itertools.product(decoders, h.autoencoder_seeds)}
    for key, value in (changed or {}).items():
        (classifiers if isinstance(key, GridClassifier) else autoencoders)[key] = value
    return Upstream(classifiers, autoencoders)


def _config() -> RunConfig:
    config = RunConfig()
    h = dataclasses.replace(config.hypothesis, seeds=[0, 1], upsamples=["unpool"], controls=["additive", "decoder"],
                            control_classifiers=2, interventions=[*config.hypothesis.interventions, "lattice_shift_y",
                                                                  "lattice_shift_x", "lattice_shift_period"])  # fmt: skip
    return dataclasses.replace(config, hypothesis=h)


def _keys(config, upstream, base="base") -> dict[str, str]:
    return {j.label: j.key for j in plan(config, grid_classifiers(config), {"alexnet_s/native": 2}, base, upstream)}


def test_registries_match_the_names_the_config_validates_against():
    assert tuple(ARMS) == ARM_NAMES
    for arm in ARMS.values():
        assert arm.reads is None or arm.reads in READOUTS, arm.name
    for readout in READOUTS.values():
        assert set(readout.needs) <= set(ARMS), readout.name


def test_changing_an_upstream_stage_re_keys_exactly_the_jobs_built_on_it():
    config = _config()
    before = _keys(config, fake_upstream(config))
    assert len(before) == len(set(before.values()))  # one key per job
    c0 = grid_classifiers(config)[0]
    retrained = _keys(config, fake_upstream(config, {c0: "classifier-retrained"}))
    moved = {label for label in before if before[label] != retrained[label]}
    assert moved and all("alexnet_s-native-s0 " in label for label in moved)  # its cell, probe and control jobs
    assert {label for label in before if "alexnet_s-native-s0 " in label} == moved
    other = _keys(config, fake_upstream(config, {("transposed", 1): "autoencoder-retrained"}))
    moved = {label for label in before if before[label] != other[label]}
    assert moved and all(" transposed " in label for label in moved)
    decoder_jobs = [label for label in before if " transposed " in label]
    assert len(moved) < len(decoder_jobs)  # only those that start from that autoencoder (seed 1 of two)
    assert _keys(config, fake_upstream(config), base="other").keys() == before.keys()
    assert not set(_keys(config, fake_upstream(config), base="other").values()) & set(before.values())


def test_a_job_spec_round_trips_and_refuses_unknown_roles_and_arms():
    c = GridClassifier("alexnet_s", "native", 3, "alexnet_s/native")
    spec = JobSpec("cell", "unpool", 0, 1, 1, "lattice_shift_x", 2, "base", ("a", "b"), c)
    assert JobSpec.from_record(spec.record()) == spec
    with pytest.raises(ValueError, match="unknown arm 'lattice_shift'"):
        JobSpec("cell", "unpool", 0, 0, 0, "lattice_shift", 2, "base")
    with pytest.raises(ValueError, match="unknown job role"):
        JobSpec("cel", "unpool", 0, 0, 0, "control", 2, "base")


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        return (x * self.w).sum((1, 2, 3))[:, None].repeat(1, 2)


@pytest.mark.parametrize("arm", [a for a in ARMS if a not in ("control", "sham")])
def test_every_arm_changes_what_it_says_and_nothing_else(arm):
    classifier, autoencoder = _Linear(), nn.Identity()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ae, judge = arm_models(arm, autoencoder, classifier, 2)
    assert judge is not None
    if ARMS[arm].grid is not None:  # the autoencoder's grid moves: the classifier is untouched
        assert judge is classifier and torch.equal(ae(x), x)
        return
    if ARMS[arm].lattice is not None:  # the classifier reads the lattice moved by s, and its gradient is the adjoint
        dy, dx = ARMS[arm].lattice(2)
        assert torch.allclose(judge(x), classifier(roll_lattice(x, 2, (-dy, -dx))))
        judge(x).sum().backward()
        w = classifier.w.detach().expand_as(x)
        assert torch.allclose(x.grad, 2 * roll_lattice(w, 2, (dy, dx)), atol=1e-5)  # two logits, each sum(x w)
        return
    assert torch.equal(judge(x), classifier(x))  # forward identical
    judge(x).sum().backward()
    changed = x.grad.clone()
    x.grad = None
    classifier(x).sum().backward()
    plain = x.grad
    band = lattice_band(16, 16, 2)
    spectrum, reference = torch.fft.fft2(changed), torch.fft.fft2(plain)
    if arm == "band_stop":
        assert spectrum[..., band].abs().max() < 1e-4 and torch.allclose(spectrum[..., ~band], reference[..., ~band], atol=1e-4)
    elif arm == "sham_band_stop":
        assert torch.allclose(spectrum[..., band], reference[..., band], atol=1e-4)  # the band untouched
        removed = reference.abs().square().sum() - spectrum.abs().square().sum()
        target = reference[..., band].abs().square().sum()
        assert 0.5 * target < removed < 1.5 * target  # as much power as the band-stop would take
    elif arm == "stride_smooth":  # a model without strided layers: nothing to smooth
        assert torch.allclose(changed, plain)


def _record(pattern: torch.Tensor) -> dict:
    return {
        "pattern": pattern.tolist(),
        "peak": 0.01,
        "peak_floor": 0.001,
        "band": 0.01,
        "band_floor": 0.001,
        "finetuned_top1": 0.9,
    }


def test_the_lattice_readouts_tell_a_pattern_that_follows_the_gradient_from_one_that_stays():
    """The follow index and the share on patterns built to be classifier-born (the lattice turns with the gradient's),
    decoder-born (it stays) and a half-half mixture, against the plain autoencoder's pattern subtracted first."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    c = 0.02 * (-1.0) ** (x + y) + 0.01 * (-1.0) ** y  # a lattice the gradient writes
    plain = 0.05 * torch.randn(16, 16, generator=g, dtype=torch.float64)  # the autoencoder's own error: never moves
    shifted = {"lattice_shift_y": torch.roll(c, (-1, 0), (0, 1)), "lattice_shift_x": torch.roll(c, (0, -1), (0, 1)),
               "lattice_shift_period": c}  # the classifier reads the lattice moved by s: it is written at -s  # fmt: skip

    def run(classifier_part: float) -> dict:
        d = (1 - classifier_part) * c  # the same lattice, but the decoder's: it stays
        arms = {"control": _record(plain + classifier_part * c + d)}
        arms |= {a: _record(plain + classifier_part * s + d) for a, s in shifted.items()}
        return readout_values(Replicate(arms, 2, plain=_record(plain)), RunConfig().hypothesis)

    born, stays, half = run(1.0), run(0.0), run(0.5)
    assert born["follow"] == pytest.approx(1.0) and stays["follow"] == pytest.approx(-1.0)
    assert born["follow_sham"] == pytest.approx(-1.0)  # the sham moved no phase
    assert born["follow_gain"] == pytest.approx(2.0) and stays["follow_gain"] == pytest.approx(0.0)
    assert born["share"] == pytest.approx(1.0) and stays["share"] == pytest.approx(0.0)
    assert half["share"] == pytest.approx(0.5)  # power shares: |c/2|^2 vs |c/2|^2
    assert born["share_sham"] == pytest.approx(0.0)


def test_control_strengths_make_one_calibration_row_each_and_keep_the_03_keys_at_strength_1():
    from s2snets.experiments.controls import PlantedClassifier, planted_tile
    from s2snets.experiments.hypothesis import control_rows

    config = _config()
    h = dataclasses.replace(config.hypothesis, controls=["additive", "zero_insertion", "none", "null_unpool"],
                            control_strengths=[0.1, 1.0, 3.0])  # fmt: skip
    rows = control_rows(h)
    assert [r[0] for r in rows] == ["additive@0.1", "additive", "additive@3", "zero_insertion@0.1", "zero_insertion",
                                    "zero_insertion@3", "none", "null_unpool"]  # fmt: skip
    config = dataclasses.replace(config, hypothesis=h)
    jobs = plan(config, grid_classifiers(config), {"alexnet_s/native": 2}, "base", fake_upstream(config))
    strengths = {(j.spec["control"], j.spec.get("strength", 1.0)) for j in jobs if j.spec["role"] == "control"}
    assert ("additive@0.1", 0.1) in strengths and ("additive", 1.0) in strengths and ("none", 1.0) in strengths
    assert all("strength" not in j.spec for j in jobs if j.spec.get("control") in ("additive", "none"))  # 0.3's key
    # the knob does what it says: a tenth of the additive lattice, a shallower zero insertion
    assert torch.allclose(planted_tile(2, "zero_insertion", scale=0.5), torch.tensor([[2.5, 0.5], [0.5, 0.5]]))
    x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    grads = []
    for scale in (0.1, 1.0):
        x.grad = None
        PlantedClassifier(_Linear8(), "additive", 2, 8, scale=scale)(x).sum().backward()
        grads.append(x.grad.clone())
    from s2snets.metrics.lattice import lattice_coefficients

    lattice = [lattice_coefficients(g[0, 0], 2).abs() for g in grads]  # the smoothing leaves nothing else there
    assert torch.allclose(lattice[0], 0.1 * lattice[1], rtol=1e-4) and float(lattice[1].max()) > 0


def test_a_null_control_is_recovered_by_either_answer_that_is_not_classifier_born():
    from s2snets.experiments.verdict import control_recovered

    null = CONTROLS["null_unpool"]
    assert null.recovered_by("no pattern") and null.recovered_by("decoder-born") and not null.recovered_by("classifier-born")
    assert control_recovered(null.truth, {"verdict": "decoder-born"}, null.accepts)
    assert not control_recovered(null.truth, {"verdict": "inconclusive"}, null.accepts)


class _Linear8(nn.Module):
    def forward(self, x):
        w = torch.linspace(-1, 1, 64).view(1, 1, 8, 8)
        return (x * w).sum((1, 2, 3))[:, None].repeat(1, 2)
