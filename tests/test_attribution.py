"""The grid diagnostic on real Captum saliency maps of torchvision models (random weights: their gradient grids
come from the architecture, which is what the lint predicts)."""

import math

import pytest
import torch
import torchvision

import s2snets
from s2snets.errors import InputError


def _saliency(model, x, target=3):
    captum_attr = pytest.importorskip("captum.attr")
    return captum_attr.Saliency(model).attribute(x, target=target, abs=False)


@pytest.mark.parametrize("name,period", [("alexnet", 4), ("resnet18", 2)])
def test_finds_the_grid_of_a_strided_model_at_the_linted_period_and_removes_it_faithfully(name, period):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=10).eval()
    x = torch.rand(8, 3, 224, 224)
    saliency = _saliency(model, x)
    diagnosis = s2snets.grid_diagnostic(saliency, model=model)
    assert diagnosis.dominant_period == period and period in diagnosis.predicted_periods and diagnosis.layers
    logits = model(x)
    with s2snets.smoothed_backward(model):
        assert torch.equal(model(x), logits)  # the prediction explained is the same
        fixed = _saliency(model, x)
    # The smoothing is a surrogate: 8 maps at 224 px still detect a residual grid (AlexNet: x3 at P=4, from x50;
    # ResNet-18: x43 at P=2, from x128), which the calibrated test sees and the old phase-scrambled floor did not.
    after = s2snets.grid_diagnostic(fixed)
    print(name, "strength before", diagnosis.strength, "after smoothed_backward", after.strength)
    assert after.strength[period] < diagnosis.strength[period] / 2
    # remove_grid(P) removes the period-P grid; a coarser one (AlexNet's pools: 8; ResNet's maxpool: 4) remains.
    assert s2snets.grid_diagnostic(s2snets.remove_grid(saliency, period)).dominant_period not in (None, period)
    assert len(model._forward_pre_hooks) == 0 and all(not m._forward_pre_hooks for m in model.modules())


def test_says_no_grid_for_a_model_without_uneven_strides_and_takes_every_map_form():
    torch.manual_seed(0)
    model = torchvision.models.vgg11(num_classes=10).eval()
    saliency = _saliency(model, torch.rand(8, 3, 224, 224))
    assert not s2snets.grid_diagnostic(saliency).has_grid
    for form, layout in ((saliency[0, 0], None), (saliency[0], "CHW"), (saliency.numpy(), None)):
        assert set(s2snets.grid_diagnostic(form, layout=layout).strength) == {2, 4, 8}
    with pytest.raises(s2snets.S2SNetsError, match="attribution"):
        s2snets.grid_diagnostic("not a map")
    with pytest.raises(s2snets.S2SNetsError, match="model must be an nn.Module"), s2snets.smoothed_backward(len):
        pass
    for flat in (torch.zeros(2, 3, 32, 32), torch.full((32, 32), 0.7)):  # no answer (was: a grid of strength inf)
        with pytest.raises(s2snets.S2SNetsError, match="constant in every map: nothing to diagnose"):
            s2snets.grid_diagnostic(flat)


def test_the_howto_runs():
    pytest.importorskip("captum.attr")
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "howto-saliency-grid.md"
    failures, tried = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried >= 10 and failures == 0


# --- The grid test on one map (issue 35, part 3) --------------------------------------------------------------------


def _input_gradient(model, x, target=3):
    """A plain autograd input gradient (what Captum's Saliency computes with abs=False): (N, C, H, W)."""
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return x.grad.detach()


@pytest.fixture(scope="module")
def alexnet_maps():
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None, num_classes=10).eval()
    return model, _input_gradient(model, torch.rand(8, 3, 224, 224))


def test_one_saliency_map_of_a_strided_model_shows_its_grid_at_the_linted_period(alexnet_maps):
    model, saliency = alexnet_maps
    one = s2snets.grid_diagnostic(saliency[:1], model=model)  # (1, C, H, W): was "no grid", every strength x1.0
    assert one.form == "NCHW" and one.maps == 1
    assert one.dominant_period == 4 == one.predicted_periods[0]
    assert one.p_value[4] < 1e-10 and one.strength[4] > 10
    assert s2snets.grid_diagnostic(saliency[0].sum(0)).dominant_period == 4  # (H, W): the same from one 2-D map
    batch = s2snets.grid_diagnostic(saliency)
    assert batch.maps == 8 and batch.dominant_period == 4 and batch.p_value[4] < one.p_value[4]  # more maps, more evidence


def test_a_stack_of_maps_is_read_as_n_maps_and_says_so(alexnet_maps):
    _, saliency = alexnet_maps
    stack = saliency.sum(1)  # (8, H, W): what pytorch-grad-cam returns
    read = s2snets.grid_diagnostic(stack)
    assert (read.form, read.maps) == ("NHW", 8) and read.dominant_period == 4
    as_batch = s2snets.grid_diagnostic(stack[:, None])  # the same maps as (N, 1, H, W): the same test, exactly
    assert as_batch.form == "NCHW" and as_batch.p_value == read.p_value and as_batch.strength == read.strength
    as_channels = s2snets.grid_diagnostic(stack, layout="CHW")  # the caller can still say it is one 8-channel map
    assert (as_channels.form, as_channels.maps) == ("CHW", 1)
    assert "8 maps read as NHW" in repr(read) and read.to_dict()["form"] == "NHW"


def test_one_map_of_a_model_without_uneven_strides_and_of_white_noise_shows_none():
    torch.manual_seed(1)
    vgg = torchvision.models.vgg11(weights=None, num_classes=10).eval()
    saliency = _input_gradient(vgg, torch.rand(1, 3, 224, 224))
    diagnosis = s2snets.grid_diagnostic(saliency)
    assert not diagnosis.has_grid and diagnosis.dominant_period is None and min(diagnosis.p_value.values()) > 0.01
    noise = torch.randn(224, 224, generator=torch.Generator().manual_seed(0))
    assert not s2snets.grid_diagnostic(noise).has_grid


def test_the_answer_does_not_depend_on_the_maps_scale(alexnet_maps):
    _, saliency = alexnet_maps
    noise = torch.randn(2, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for maps in (noise, saliency[:1].double()):  # no grid, and a grid
        answers = [s2snets.grid_diagnostic(maps * scale) for scale in (1e-300, 1.0, 1e160)]  # was: "x inf" at both ends
        assert len({a.dominant_period for a in answers}) == 1
        for a in answers[::2]:
            for p in a.p_value:
                assert a.p_value[p] == pytest.approx(answers[1].p_value[p], rel=1e-9, abs=1e-300)
                assert a.strength[p] == pytest.approx(answers[1].strength[p], rel=1e-9)
    assert s2snets.grid_diagnostic(-7.0 * noise).p_value == s2snets.grid_diagnostic(noise).p_value


def test_every_map_form_is_read_and_named():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(4, 3, 32, 32, generator=g)
    cases = [
        (maps[0, 0], None, "HW", 1),
        (maps[0, 0].numpy(), None, "HW", 1),
        (maps[0], "CHW", "CHW", 1),
        (maps[:, 0], None, "NHW", 4),
        (maps[:2, 0], None, "NHW", 2),
        (maps[:1, 0], None, "NHW", 1),  # (1, H, W): one map either way
        (maps[0].numpy(), "NHW", "NHW", 3),
        (maps, None, "NCHW", 4),
        (maps.numpy().astype("float16"), None, "NCHW", 4),
        (maps[:, 0].to(torch.int64), None, "NHW", 4),
    ]
    for attribution, layout, form, n in cases:
        diagnosis = s2snets.grid_diagnostic(attribution, layout=layout)
        assert (diagnosis.form, diagnosis.maps) == (form, n), (tuple(attribution.shape), layout)
        assert set(diagnosis.strength) == set(diagnosis.p_value) == {2, 4, 8}
    with pytest.raises(InputError, match="ambiguous.*layout='NHW' or layout='CHW'"):
        s2snets.grid_diagnostic(maps[0])  # (3, H, W): three CAMs or one RGB attribution
    constant_one = maps[:, 0].clone()
    constant_one[1] = 0.0
    assert s2snets.grid_diagnostic(constant_one).maps == 3  # a map without information is left out, and counted


def test_the_test_is_calibrated_on_lattice_free_maps_and_matches_a_hand_computed_f_test():
    """An independent reference: the period-2 test of one 16 x 16 map by hand (numpy's FFT, the F distribution),
    and the per-map p-values of 400 white-noise and smooth maps, which must be uniform under the null."""
    import numpy as np
    from scipy import stats

    from s2snets.metrics.lattice_significance import lattice_peak_tests

    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 16, generator=g, dtype=torch.float64)
    power = np.abs(np.fft.fft2(z.numpy() - z.numpy().mean())) ** 2
    log_p = []
    for u, v in ((0, 8), (8, 0), (8, 8)):  # the period-2 bins: real (1 degree of freedom each)
        if u == 0 or v == 0:  # on an axis: its axis neighbours within 6, conjugate pairs once
            ref = [(0, j) if u == 0 else (j, 0) for j in range(2, 8)]
        else:  # off the axes: the 7 x 7 square around it, conjugate pairs once
            ref = {min((a, b), ((-a) % 16, (-b) % 16)) for a in range(5, 12) for b in range(5, 12)} - {(8, 8)}
        ratio = power[u, v] / np.mean([power[a, b] for a, b in ref])
        log_p.append(stats.f.logsf(ratio, 1, 2 * len(ref)))
    by_hand = stats.chi2.sf(-2 * sum(log_p), 6)
    assert lattice_peak_tests(z[None], (2,))[2].p_value == pytest.approx(by_hand, rel=1e-9)

    smooth = torch.nn.functional.avg_pool2d(torch.randn(200, 1, 71, 71, generator=g, dtype=torch.float64), 8, 1)[:, 0]
    for maps in (torch.randn(200, 64, 64, generator=g, dtype=torch.float64), smooth):
        for result in lattice_peak_tests(maps, (2, 4, 8)).values():
            p = np.array(result.map_p_values)
            assert stats.binom.sf((p < 0.05).sum() - 1, len(p), 0.05) > 1e-3  # not more false positives than 5 %
            assert stats.kstest(p, "uniform").pvalue > 1e-4 or (p < 0.05).mean() < 0.05  # uniform, or conservative


def test_a_planted_lattice_is_found_in_one_map_and_sooner_in_eight():
    g = torch.Generator().manual_seed(2)
    tile = torch.randn(4, 4, generator=g, dtype=torch.float64)
    lattice = (tile - tile.mean()).repeat(32, 32) / (tile - tile.mean()).square().mean().sqrt()
    noise = torch.randn(8, 128, 128, generator=g, dtype=torch.float64)
    assert s2snets.grid_diagnostic(noise[0] + 0.1 * lattice).dominant_period == 4  # additive, 10 % of the RMS
    assert s2snets.grid_diagnostic(noise[0] * (1 + 0.1 * lattice)).dominant_period == 4  # multiplicative, 10 % depth
    weak = noise + 0.03 * lattice  # 3 % of the RMS: 8 maps find it (p ~ 1e-4), their first alone does not
    assert not s2snets.grid_diagnostic(weak[0]).has_grid and s2snets.grid_diagnostic(weak).dominant_period == 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"threshold": math.nan}, "threshold is the grid test's significance level"),
        ({"threshold": math.inf}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 1.5}, "no longer a strength cut-off"),
        ({"threshold": True}, "threshold"),
        ({"threshold": "0.01"}, "threshold"),
        ({"periods": (2.0,)}, "periods must be ints >= 2"),
        ({"periods": (True,)}, "periods must be ints >= 2"),
        ({"periods": (1,)}, "periods must be ints >= 2"),
        ({"periods": (3,)}, "period 3 does not divide the maps' 32 x 32 pixels"),
        ({"periods": (32,)}, "at least 2 repeats"),
        ({"periods": ()}, "periods is empty"),
        ({"periods": (2, 4, 8, 16)}, "too small to test periods"),
        ({"periods": 4}, "periods must be a tuple"),
        ({"layout": "HWC"}, "layout must be one of HW, CHW, NHW, NCHW"),
        ({"layout": "NCHW"}, "has 2 dimensions, layout 'NCHW' 4"),
    ],
)
def test_invalid_arguments_are_one_line_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        s2snets.grid_diagnostic(torch.randn(32, 32), **kwargs)


@pytest.mark.parametrize(
    "attribution,match",
    [
        (torch.full((32, 32), math.nan), "1024 NaN or infinite values"),
        (torch.tensor([[math.inf] + [0.0] * 31] * 32), "NaN or infinite"),
        (torch.zeros(0, 32, 32), "empty"),
        (torch.zeros(2, 3, 0, 0), "empty"),
        (torch.zeros(2, 3, 2, 2), "under 4 pixels"),
        (torch.zeros(5), "is not"),
        (torch.zeros(1, 1, 1, 32, 32), "is not"),
        (torch.randn(32, 32, dtype=torch.complex64), "complex"),
        (torch.randn(31, 31), r"no period of \(2, 4, 8\) divides the maps' 31 x 31 pixels.*\[\.\.\., :24, :24\]"),
        ("not a map", "attribution must be"),
    ],
)
def test_maps_that_cannot_be_tested_are_refused(attribution, match):
    with pytest.raises(InputError, match=match):
        s2snets.grid_diagnostic(attribution)
