import math

import pytest
import torch
import torch.nn.functional as F

from s2snets.metrics.geometry import register_geometry, single
from s2snets.metrics.lint import lint, lint_model
from s2snets.metrics.overlap import (
    Geometry,
    dominant_period,
    gradient_overlap_1d,
    overlap_2d,
    overlap_period,
    overlap_ratio,
    transposed_overlap_1d,
)
from s2snets.models import build_classifier, build_segnet


def brute_transposed(layers, length):
    """Reference: transposed convolutions of all-ones kernels on an all-ones input, layer by layer."""
    x = torch.ones(1, 1, length, dtype=torch.float64)
    for g in layers:
        x = F.conv_transpose1d(
            x,
            torch.ones(1, 1, g.kernel, dtype=torch.float64),
            stride=g.stride,
            padding=g.padding,
            dilation=g.dilation,
            output_padding=g.output_padding,
        )
    return x[0, 0]


def brute_gradient(layers, length):
    """Reference: autograd of a stack of all-ones strided convolutions with a uniform output gradient."""
    x = torch.ones(1, 1, length, dtype=torch.float64, requires_grad=True)
    y = x
    for g in layers:
        y = F.conv1d(y, torch.ones(1, 1, g.kernel, dtype=torch.float64), stride=g.stride, padding=g.padding, dilation=g.dilation)
    y.sum().backward()
    return x.grad[0, 0]


def test_distill_numbers():
    c = transposed_overlap_1d([Geometry("transposed", 3, 2)], 16)
    assert overlap_ratio(c) == 2.0 and overlap_period(c) == 2
    assert overlap_ratio(c) ** 2 == 4.0
    c2 = overlap_2d(c, c)
    inner = c2[4:-4, 4:-4]
    assert float(inner.max() / inner.min()) == 4.0
    even = transposed_overlap_1d([Geometry("transposed", 4, 2, 1)], 16)
    assert overlap_ratio(even) == 1.0 and overlap_period(even) == 1
    assert Geometry("conv", 1, 2).skips and not Geometry("conv", 4, 2).uneven and Geometry("conv", 3, 2).uneven


@pytest.mark.parametrize(
    "stack",
    [
        [(3, 2, 0, 1)],
        [(3, 2, 1, 1), (3, 2, 1, 1)],
        [(4, 2, 1, 1), (3, 2, 0, 1), (5, 3, 2, 1)],
        [(3, 2, 0, 2), (2, 2, 0, 1)],
    ],
)
def test_stacks_agree_with_brute_force(stack):
    layers = [Geometry("transposed", k, s, p, d) for k, s, p, d in stack]
    assert torch.equal(transposed_overlap_1d(layers, 11), brute_transposed(layers, 11))
    down = [Geometry("conv", k, s, p, d) for k, s, p, d in stack]
    assert torch.equal(gradient_overlap_1d(down, 40), brute_gradient(down, 40))


def test_stacked_deconvs_compound():
    two = transposed_overlap_1d([Geometry("transposed", 3, 2), Geometry("transposed", 3, 2)], 16)
    assert overlap_period(two) == 4  # artifacts on two scales: periods 2 and 4


def findings(name, size):
    report = lint_model(build_classifier(name, 10, 3), torch.zeros(1, 3, size, size), name)
    return report, {layer.name: layer for layer in report.findings}


def test_lint_resnet50_names_its_known_sites():
    report, found = findings("resnet50", 224)
    assert report.method == "fx"
    shortcut = found["layer2.0.downsample.0"]
    assert shortcut.skips and shortcut.skip_fraction == pytest.approx(0.75)  # skips three of every four inputs
    for name in ("conv1", "maxpool", "layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2"):
        assert found[name].uneven
    assert {"layer3.0.downsample.0", "layer4.0.downsample.0"} <= set(found)
    # The composed map repeats every 4 pixels, but most of its non-DC power alternates pixel to pixel: period 2.
    assert report.input_gradient.ratio > 1.5 and report.input_gradient.period == (4, 4)
    assert report.predicted_periods == [2] and report.input_gradient.dominant[0][1] > 0.5


def test_lint_alexnet_vgg16_inception_v3():
    _, found = findings("alexnet", 224)
    assert found["features.0"].uneven and found["features.0"].geometry[0].kernel == 11
    assert {"features.2", "features.5", "features.12"} <= set(found)
    report, found = findings("vgg16", 224)
    assert not found and len(report.layers) == 5 and report.input_gradient.period == (1, 1)
    report, found = findings("inception_v3", 299)
    assert {"Conv2d_1a_3x3.conv", "maxpool1", "Mixed_6a.branch3x3.conv", "Mixed_7a.branch3x3_2.conv"} <= set(found)
    assert any("max_pool2d" in name for name in found)  # functional pools inside the modules are found too


def test_lint_segnet_forward_pass():
    rep = lint_model(build_segnet("small", 1, "transposed"), torch.zeros(1, 1, 32, 32))
    assert rep.forward_output is not None and rep.forward_output.ratio > 1 and rep.forward_output.period[0] > 1
    assert all(layer.uneven for layer in rep.findings) and len(rep.findings) == 3
    clean = lint_model(build_segnet("small", 1, "resize_conv"), torch.zeros(1, 1, 32, 32))
    assert clean.forward_output.period == (1, 1) and not clean.findings


def test_lint_falls_back_to_hooks():
    class Dynamic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, 2, 1)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                x = x * 2
            return self.conv(x)

    rep = lint_model(Dynamic(), torch.ones(1, 1, 16, 16))
    assert rep.method.startswith("hooks") and rep.findings[0].name == "conv" and rep.warnings


def test_lint_refuses_what_is_not_a_module():
    from s2snets.errors import InputError
    from s2snets.metrics.lint import lint

    with pytest.raises(InputError, match="model must be an nn.Module, got function"):
        lint(lambda x: x, 32)


# ----------------------------------------------------------------------------------------------- weight-aware taps
def brute_weighted_gradient(weights, stride, length):
    """Reference: autograd of one strided 1-D convolution with the given taps, uniform output gradient."""
    x = torch.ones(1, 1, length, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(weights, dtype=torch.float64).view(1, 1, -1)
    F.conv1d(x, w, stride=stride).sum().backward()
    return x.grad[0, 0]


@pytest.mark.parametrize(
    "weights,stride,even", [((0.25, 0.5, 0.25), 2, True), ((1, 3, 3, 1), 2, True), ((1, 1, 1), 2, False), ((1, 2, 1), 3, False)]
)
def test_fixed_taps_match_autograd(weights, stride, even):
    g = Geometry("pool", len(weights), stride, 0, weights=tuple(float(w) for w in weights))
    assert torch.allclose(gradient_overlap_1d([g], 48), brute_weighted_gradient(weights, stride, 48))
    assert g.uneven is (not even) and not g.skips


def test_blur_pool_lints_even_like_autograd():
    from s2snets.layers.downsample import BlurPool

    model = torch.nn.Sequential(BlurPool(3, 2))
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    model(x).sum().backward()
    inner = x.grad[0, 0, 4:-4, 4:-4]
    assert float(inner.max() - inner.min()) < 1e-6  # autograd: flat
    report = lint(model, 32, 1)
    assert not report.findings and report.input_gradient.even and report.predicted_periods == []
    blur = lint(build_classifier("resnet_s", 10, 1, "blur_pool"), 32, 1)
    assert blur.layers and not blur.findings and blur.input_gradient.even


def test_dominant_period_is_where_the_power_sits():
    i = torch.arange(64, dtype=torch.float64)
    alternating = 1 + 0.15 * (-1) ** i * (1 + 0.5 * torch.cos(2 * math.pi * i / 16))
    assert overlap_period(alternating) == 16  # exact repeat length
    p, share = dominant_period(alternating)
    assert p == 2 and share > 0.5
    assert dominant_period(torch.ones(32, dtype=torch.float64)) == (1, 0.0)
    assert dominant_period(1 + torch.cos(2 * math.pi * i / 8)) == (8, pytest.approx(1.0))


def test_alexnet_s_predicts_period_2_with_its_share():
    report = lint(build_classifier("alexnet_s", 10, 1), 32, 1)
    (ph, sh), (pw, sw) = report.input_gradient.dominant
    assert (ph, pw) == (2, 2) and sh > 0.5 and report.predicted_periods == [2]
    assert "dominant period 2x2" in str(report)


# ----------------------------------------------------------------------------------------------- open registry
def _net(pool):
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, 1, 1), pool, torch.nn.Conv2d(8, 8, 3, 1, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )


def test_third_party_blur_pools_recognised_by_structure():
    timm = pytest.importorskip("timm")
    kornia = pytest.importorskip("kornia")
    for pool in (timm.layers.BlurPool2d(8, 3, 2), kornia.filters.BlurPool2D(3, 2), kornia.filters.MaxBlurPool2D(3, 2, 2)):
        report = lint(_net(pool), 32, 1)
        assert report.complete and len(report.layers) == 1 and report.layers[0].geometry[0].stride == 2, type(pool)
        assert not report.findings and report.input_gradient.even, type(pool)


def test_antialiased_cnns_blur_pool_with_padding_child():
    aa = pytest.importorskip("antialiased_cnns")
    report = lint(_net(aa.BlurPool(8, filt_size=3, stride=2)), 32, 1)
    assert report.complete and len(report.layers) == 1 and report.input_gradient.even


class _Halve(torch.nn.Module):
    def forward(self, x):
        return x[..., ::2, ::2]


class _DynamicHalve(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # torch.fx cannot trace this: the hooks fallback runs
            x = x * 2
        return x[..., ::2, ::2]


@pytest.mark.parametrize("layer", [_Halve, _DynamicHalve])
def test_unknown_size_change_is_a_finding_not_even(layer):
    report = lint(_net(layer()), 32, 1)
    assert not report.complete and "16x16" in report.unanalysed[0] and "INCOMPLETE" in str(report)


def test_registered_custom_layer_is_analysed():
    class Subsample(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                x = x * 1
            return x[..., ::2, ::2]

    register_geometry(Subsample, lambda m: single("Subsample", "pool", 1, 2))
    report = lint(_net(Subsample()), 32, 1)
    assert report.complete and report.layers[0].op == "Subsample" and report.layers[0].skips
    assert report.layers[0].skip_fraction == pytest.approx(0.75)
    with pytest.raises(TypeError):
        register_geometry(int, lambda m: None)
