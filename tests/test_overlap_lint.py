import pytest
import torch
import torch.nn.functional as F

from s2snets.metrics.lint import lint_model
from s2snets.metrics.overlap import (
    Geometry,
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
    assert report.input_gradient.ratio > 1.5 and 4 in report.predicted_periods


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
