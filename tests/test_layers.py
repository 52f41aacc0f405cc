import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from s2snets.errors import ModelError
from s2snets.layers import (
    BlurPool,
    ResizeConv,
    SubPixel,
    TransposedUpsample,
    ZeroOrderHold,
    binomial_kernel,
    blur_pool,
    make_downsample,
    make_upsample,
    transposed_padding,
)


@settings(max_examples=12, deadline=None)
@given(scale=st.sampled_from([2, 3, 4]), channels=st.integers(1, 3), size=st.integers(3, 7), seed=st.integers(0, 99))
def test_subpixel_icnr_equals_nearest_resize_then_convolution(scale, channels, size, seed):
    torch.manual_seed(seed)
    layer = SubPixel(channels, scale, kernel=3)
    x = torch.randn(2, channels, size, size)
    out = layer(x)
    w0 = layer.conv.weight[:: scale * scale]  # the shared sub-kernel of each output channel
    # nearest-neighbour resize followed by a convolution (its kernel dilated by the scale) ...
    ref = F.conv2d(F.interpolate(x, scale_factor=scale, mode="nearest"), w0, dilation=scale, padding=scale)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # ... which is the same as resizing the low-resolution convolution: every s x s block is constant
    torch.testing.assert_close(
        out, F.interpolate(F.conv2d(x, w0, padding=1), scale_factor=scale, mode="nearest"), rtol=1e-5, atol=1e-5
    )


def test_popular_scale2_icnr_bug_would_fail_at_scale4():
    """A scale-2 initialisation used at scale 4 is not nearest-neighbour: our check can tell."""
    torch.manual_seed(0)
    layer = SubPixel(1, 4, icnr=False)
    sub = torch.randn(4, 1, 3, 3)  # initialised as if for scale 2: 4 distinct kernels repeated
    layer.conv.weight.data.copy_(sub.repeat_interleave(4, 0))
    out = layer(torch.randn(1, 1, 5, 5))
    blocks = out.unfold(2, 4, 4).unfold(3, 4, 4)
    assert (blocks.amax((-2, -1)) - blocks.amin((-2, -1))).abs().max() > 1e-3


@settings(max_examples=10, deadline=None)
@given(scale=st.sampled_from([2, 3, 4]), order=st.integers(1, 3), seed=st.integers(0, 99), value=st.floats(-3, 3))
def test_zero_order_hold_flat_for_any_weights(scale, order, seed, value):
    torch.manual_seed(seed)
    layer = ZeroOrderHold(2, scale, kernel=3, order=order)
    torch.nn.init.normal_(layer.up.conv.weight)  # any learned kernel, not only the initial one
    out = layer(torch.full((1, 2, 16, 16), value))
    m = scale * (order + 2)  # border effects of the padding reach this far
    interior = out[..., m:-m, m:-m]
    assert (interior - interior[..., :1, :1]).abs().max() < 1e-4


@settings(max_examples=10, deadline=None)
@given(scale=st.sampled_from([2, 3]), mode=st.sampled_from(["nearest", "bilinear"]), value=st.floats(-3, 3))
def test_resize_conv_flat_for_constant_input(scale, mode, value):
    layer = ResizeConv(3, scale, mode=mode)
    out = layer(torch.full((1, 3, 6, 6), value))
    assert out.shape == (1, 3, 6 * scale, 6 * scale)
    assert (out - out[..., :1, :1]).abs().max() < 1e-5


def test_transposed_k3_s2_overlap_is_2_to_1_and_4_to_1():
    conv1d = torch.nn.ConvTranspose1d(1, 1, 3, 2, bias=False)
    conv1d.weight.data.fill_(1)
    interior = conv1d(torch.ones(1, 1, 16))[0, 0, 2:-2]
    assert set(interior.tolist()) == {1.0, 2.0}
    layer = TransposedUpsample(1, 2, kernel=3)
    layer.conv.weight.data.fill_(1)
    layer.conv.bias.data.zero_()
    out = layer(torch.ones(1, 1, 8, 8))[0, 0, 2:-2, 2:-2]
    out = out.detach()
    assert out.shape[-1] > 4 and float(out.max() / out.min()) == 4.0
    assert set(out.unique().tolist()) == {1.0, 2.0, 4.0}


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 7), s=st.integers(1, 4), n=st.integers(1, 9))
def test_transposed_padding_gives_exact_scale(k, s, n):
    p, op = transposed_padding(k, s)
    if op >= s:
        return
    conv = torch.nn.ConvTranspose1d(1, 1, k, s, padding=p, output_padding=op)
    assert conv(torch.zeros(1, 1, n)).shape[-1] == s * n


def test_blur_pool_matches_explicit_binomial_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 11)
    for size, ref_row in [
        (1, [1.0]),
        (2, [1, 1]),
        (3, [1, 2, 1]),
        (4, [1, 3, 3, 1]),
        (5, [1, 4, 6, 4, 1]),
        (7, [1, 6, 15, 20, 15, 6, 1]),
    ]:
        row = torch.tensor(ref_row, dtype=torch.float32)
        kernel = torch.outer(row, row) / row.sum() ** 2
        assert torch.allclose(binomial_kernel(size), kernel)
        for stride in (1, 2, 3):
            lo, hi = (size - 1) // 2, size // 2
            padded = F.pad(x, (lo, hi, lo, hi), mode="reflect") if size > 1 else x
            ref = torch.stack([F.conv2d(padded[:, c : c + 1], kernel[None, None], stride=stride)[:, 0] for c in range(3)], 1)
            torch.testing.assert_close(blur_pool(x, size, stride), ref)
            torch.testing.assert_close(BlurPool(size, stride)(x), ref)


def test_registries_build_every_layer_and_keep_shapes():
    x = torch.randn(2, 4, 8, 8)
    for name in ("strided_conv", "max_pool", "avg_pool", "blur_pool"):
        assert make_downsample(name, 4)(x).shape == (2, 4, 4, 4)
    for name in ("transposed", "resize_conv", "subpixel", "zero_order_hold"):
        out = make_upsample(name, 4, 2)(x)
        assert out.shape == (2, 4, 16, 16)
        out.sum().backward()
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    assert torch.equal(make_upsample("unpool", 4)(pooled, indices=idx).amax((-2, -1)), pooled.amax((-2, -1)))


def test_registries_take_a_name_or_a_class():
    from s2snets.layers import make_downsample, make_upsample
    from s2snets.layers.upsample import ResizeConv

    by_name, by_class = make_upsample("resize_conv", 4), make_upsample(ResizeConv, 4)
    assert type(by_name) is type(by_class) is ResizeConv

    class Halve(nn.Module):  # a user's own downsampling layer, built as cls(in, out, stride, kernel)
        def __init__(self, c_in, c_out, stride, kernel):
            super().__init__()
            self.stride = stride

        def forward(self, x):
            return x[..., :: self.stride, :: self.stride]

    assert make_downsample(Halve, 3, stride=2)(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 4, 4)
    with pytest.raises(ModelError, match="nn.Module subclass"):
        make_upsample(int, 4)
    with pytest.raises(ModelError, match="pass an nn.Module class"):
        make_downsample("nope", 4)


def test_blur_pool_kernel_built_under_inference_mode_still_trains():
    from s2snets.layers import blur_pool

    with torch.inference_mode():
        blur_pool(torch.zeros(1, 2, 8, 8, dtype=torch.float64), 5)  # the first call builds and caches the kernel
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    blur_pool(x, 5).sum().backward()  # the cached kernel is a normal tensor: saved for backward without error
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_the_builders_refuse_sizes_torch_would_fail_on_only_at_the_first_forward():
    import numpy as np

    from s2snets.errors import ModelError
    from s2snets.layers import make_downsample, make_upsample

    with pytest.raises(ModelError, match="make_upsample needs whole numbers >= 1; got channels=0"):
        make_upsample("transposed", 0)
    with pytest.raises(ModelError, match=r"got scale=1.5"):
        make_upsample("resize_conv", 8, 1.5)
    with pytest.raises(ModelError, match="upsampling 'transposed': .*unexpected keyword argument 'stride'"):
        make_upsample("transposed", 8, stride=2)
    with pytest.raises(ModelError, match="make_downsample needs whole numbers >= 1; got stride=0"):
        make_downsample("max_pool", 8, stride=0)
    with pytest.raises(ModelError, match="in_channels=8.5"):
        make_downsample("strided_conv", 8.5)
    assert make_downsample("blur_pool", np.int64(4))(torch.zeros(1, 4, 8, 8)).shape == (1, 4, 4, 4)  # numpy ints are ints
