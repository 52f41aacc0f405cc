import pytest
import torch
from torch import nn
from torchvision.models import vgg16

from s2snets.errors import ModelError
from s2snets.layers import UPSAMPLE
from s2snets.models import CLASSIFIERS, build_classifier, build_segnet, downsampling_sites
from s2snets.models.classifiers import DOWNSAMPLE_KINDS, MIN_INPUT, DownsampleSite


def test_paper_encoder_matches_torchvision_vgg16_features():
    ours = [m.weight.shape for m in build_segnet("paper", 3).encoder.modules() if isinstance(m, nn.Conv2d)]
    ref = [m.weight.shape for m in vgg16().features if isinstance(m, nn.Conv2d)]
    assert ours == ref and len(ours) == 13
    net = build_segnet("paper", 3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.encoder.modules()) == 13
    assert isinstance(net.decoder.head, nn.Conv2d) and net.decoder.head.kernel_size == (1, 1)


def test_from_vgg16_copies_the_conv_weights():
    ref = vgg16()
    net = build_segnet("paper", 3, "unpool").load_vgg16(ref.state_dict())
    convs = [m for m in net.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert torch.equal(convs[0].weight, ref.features[0].weight) and torch.equal(convs[-1].weight, ref.features[28].weight)


@pytest.mark.parametrize("size", [32, 224, 256])
def test_paper_output_shape_equals_input(size):
    net = build_segnet("paper", 3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, size, size)).shape == (1, 3, size, size)


@pytest.mark.parametrize("upsample", list(UPSAMPLE))
def test_segnet_every_upsampling_forward_backward(upsample):
    net = build_segnet("small", 1, upsample)
    x = torch.randn(2, 1, 32, 32)
    out = net(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert build_segnet("small", 1, upsample)(torch.randn(1, 1, 28, 28)).shape == (1, 1, 28, 28)


def test_frozen_encoder_mode():
    net = build_segnet("tiny", 1).freeze_encoder()
    net.train()
    assert not net.encoder.training and net.decoder.training
    net(torch.randn(2, 1, 16, 16)).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.decoder.parameters())


SMALL = ["alexnet_s", "vgg_s", "resnet_s", "inception_s"]


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("kind", DOWNSAMPLE_KINDS)
def test_small_families_every_downsampling(name, kind):
    native = build_classifier(name, 10, 1)
    model = build_classifier(name, 10, 1, kind)
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert x.grad is not None
    sites = downsampling_sites(native)
    assert sites, "every family downsamples somewhere"
    replaced = [m for m in model.modules() if isinstance(m, DownsampleSite)]
    unchanged = downsampling_sites(model)
    assert len(replaced) + len(unchanged) == len(sites)  # each site rewritten or kept, none lost or added
    site_names = {n for n, _ in sites}

    def keep(mdl):
        return {n: type(m) for n, m in mdl.named_modules() if n and not any(n == s or n.startswith(s + ".") for s in site_names)}

    assert keep(model) == keep(native)  # nothing else changed
    if kind != "native":
        for m in replaced:
            assert m.kind == kind
        kinds = {"max_pool": nn.MaxPool2d, "avg_pool": nn.AvgPool2d}
        if kind in kinds:
            assert not any(isinstance(m, nn.Conv2d) and m.stride[0] > 1 for m in model.modules())


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg16_bn", "resnet50", "inception_v3"])
def test_torchvision_zoo_forward_backward_at_smallest_input(name):
    model = build_classifier(name, 7, 3)
    size = MIN_INPUT[name]
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    out.sum().backward()


def test_torchvision_in_channels_and_downsample():
    model = build_classifier("resnet50", 5, 1, "blur_pool", input_size=64)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    assert not any(isinstance(m, nn.Conv2d) and m.stride[0] > 1 for m in model.modules())


def test_user_factory_and_errors():
    model = build_classifier("torch.nn:Identity")
    assert isinstance(model, nn.Identity)
    with pytest.raises(ModelError, match="unknown classifier"):
        build_classifier("lenet")
    with pytest.raises(ModelError, match="cannot import"):
        build_classifier("no.such.module:make")
    with pytest.raises(ModelError, match="unknown downsampling"):
        build_classifier("vgg_s", downsample="wavelet")
    assert set(SMALL) <= set(CLASSIFIERS)
