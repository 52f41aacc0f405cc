"""Upsampling layers, by name: unpool, transposed, resize_conv, subpixel, zero_order_hold.

Every module keeps the channel count and is called as ``layer(x, indices=None, output_size=None)``: ``unpool``
needs the encoder's max-pool indices, the others ignore them. Shapes: (B, C, H, W) -> (B, C, s*H, s*W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2snets.errors import ModelError, is_count
from s2snets.names import check_registry


# ----------------------------------------------------------------------------------------------- unpool
class MaxUnpool(nn.Module):
    """Max-unpooling with the encoder's pooling indices (SegNet; the paper's choice). Needs ``indices``."""

    def __init__(self, channels: int = 0, scale: int = 2):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor, indices: Tensor | None = None, output_size: list[int] | None = None) -> Tensor:
        if indices is None:
            raise ModelError("unpool needs the encoder's max-pool indices")
        return F.max_unpool2d(x, indices, self.scale, self.scale, output_size=output_size)


# ----------------------------------------------------------------------------------------------- transposed
def transposed_padding(kernel: int, stride: int) -> tuple[int, int]:
    """(padding, output_padding) that make ConvTranspose2d(kernel, stride) map H to exactly stride * H.

    out = (H - 1) s - 2p + k + op = s H  <=>  2p - op = k - s, with 0 <= op < s.
    """
    diff = kernel - stride
    if diff >= 0:
        pad = (diff + 1) // 2
        return pad, 2 * pad - diff
    return 0, -diff


class TransposedUpsample(nn.Module):
    """ConvTranspose2d(C, C, kernel, stride) sized for exactly ``stride`` x: uneven overlap when kernel % stride != 0."""

    def __init__(self, channels: int, scale: int = 2, kernel: int = 3):
        super().__init__()
        pad, out_pad = transposed_padding(kernel, scale)
        if out_pad >= scale:
            raise ModelError(f"kernel {kernel} is too small for stride {scale}")
        self.conv = nn.ConvTranspose2d(channels, channels, kernel, scale, padding=pad, output_padding=out_pad)

    def forward(self, x: Tensor, indices: Tensor | None = None, output_size: list[int] | None = None) -> Tensor:
        # Exactly s x, then cropped or edge-padded to output_size (odd sizes after pooling need one more row).
        return _crop_or_pad(self.conv(x), output_size)


# ----------------------------------------------------------------------------------------------- resize-conv
def resize_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None, scale: int, mode: str = "nearest", pad_mode: str = "reflect"
) -> Tensor:
    """Resize by ``scale`` (nearest or bilinear), pad (reflect by default), stride-1 convolution (Odena et al. 2016)."""
    up = F.interpolate(x, scale_factor=scale, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    k = weight.shape[-1]
    lo, hi = (k - 1) // 2, k // 2
    return F.conv2d(F.pad(up, (lo, hi, lo, hi), mode=pad_mode), weight, bias)


class ResizeConv(nn.Module):
    """Nearest/bilinear resize + padding + stride-1 k x k convolution. A constant input gives a flat output."""

    def __init__(self, channels: int, scale: int = 2, kernel: int = 3, mode: str = "nearest", pad_mode: str = "reflect"):
        super().__init__()
        self.scale, self.mode, self.pad_mode = scale, mode, pad_mode
        self.conv = nn.Conv2d(channels, channels, kernel)

    def forward(self, x: Tensor, indices: Tensor | None = None, output_size: list[int] | None = None) -> Tensor:
        out = resize_conv(x, self.conv.weight, self.conv.bias, self.scale, self.mode, self.pad_mode)
        return _crop_or_pad(out, output_size)


# ----------------------------------------------------------------------------------------------- sub-pixel
def icnr_(weight: Tensor, scale: int, init=nn.init.kaiming_normal_) -> Tensor:
    """ICNR (Aitken et al. 2017) in place, correct for every integer scale >= 2.

    ``weight``: (C * scale**2, C_in, k, k) of the convolution before PixelShuffle(scale). PixelShuffle sends input
    channel c * s**2 + j to output channel c, so each block of s**2 consecutive kernels is set to one kernel: then
    conv + PixelShuffle equals nearest-neighbour upsampling of a convolution with the sub-kernel.
    """
    out_ch = weight.shape[0]
    if scale < 2 or out_ch % (scale * scale):
        raise ModelError(f"ICNR needs out_channels divisible by scale**2 = {scale * scale}, got {out_ch}")
    sub = torch.empty(out_ch // (scale * scale), *weight.shape[1:], dtype=weight.dtype, device=weight.device)
    init(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale * scale, dim=0))
    return weight


class SubPixel(nn.Module):
    """Convolution to C * s**2 channels + PixelShuffle(s), ICNR-initialised; optional blur (Aitken et al. 2017)."""

    def __init__(
        self, channels: int, scale: int = 2, kernel: int = 3, icnr: bool = True, blur: bool = False, pad_mode: str = "zeros"
    ):
        super().__init__()
        self.scale, self.blur = scale, blur
        self.conv = nn.Conv2d(channels, channels * scale * scale, kernel, padding=kernel // 2, padding_mode=pad_mode)
        if icnr:
            icnr_(self.conv.weight, scale)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, indices: Tensor | None = None, output_size: list[int] | None = None) -> Tensor:
        out = F.pixel_shuffle(self.conv(x), self.scale)
        if self.blur:  # Aitken et al.: replicate-pad by one, 2x2 average, stride 1
            out = F.avg_pool2d(F.pad(out, (1, 0, 1, 0), mode="replicate"), 2, stride=1)
        return _crop_or_pad(out, output_size)


# ----------------------------------------------------------------------------------------------- zero-order hold
def zero_order_hold(x: Tensor, scale: int, order: int = 1) -> Tensor:
    """Smooth an s x-upsampled signal with the s x s box (zero-order hold) kernel, ``order`` times (Sugawara et al.).

    Each pass averages the s**2 sub-pixel phases, so a signal of period s (the checkerboard of a stride-s transposed
    convolution on a flat input) becomes flat. Replicate padding keeps the size: (B, C, H, W) -> (B, C, H, W).
    """
    b, c, h, w = x.shape
    lo, hi = (scale - 1) // 2, scale // 2
    box = torch.full((1, 1, scale, scale), 1.0 / (scale * scale), dtype=x.dtype, device=x.device)
    y = x.reshape(b * c, 1, h, w)
    for _ in range(order):
        y = F.conv2d(F.pad(y, (lo, hi, lo, hi), mode="replicate"), box)
    return y.reshape(b, c, h, w)


class ZeroOrderHold(nn.Module):
    """Transposed convolution (kernel k, stride s) followed by fixed zero-order-hold smoothing of ``order`` >= 1.

    Artifact-free for every value of the learned kernel, not only at initialisation.
    """

    def __init__(self, channels: int, scale: int = 2, kernel: int = 3, order: int = 1):
        super().__init__()
        if order < 1:
            raise ModelError("zero-order hold needs order >= 1")
        self.scale, self.order = scale, order
        self.up = TransposedUpsample(channels, scale, kernel)

    def forward(self, x: Tensor, indices: Tensor | None = None, output_size: list[int] | None = None) -> Tensor:
        return zero_order_hold(self.up(x, output_size=output_size), self.scale, self.order)


def _crop_or_pad(x: Tensor, output_size: list[int] | None) -> Tensor:
    """Crop or pad the last two dims to ``output_size`` (odd sizes after pooling)."""
    if output_size is None:
        return x
    h, w = output_size[-2], output_size[-1]
    x = x[..., :h, :w]
    if x.shape[-2] < h or x.shape[-1] < w:
        x = F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), mode="replicate")
    return x


UPSAMPLE = {
    "unpool": MaxUnpool,
    "transposed": TransposedUpsample,
    "resize_conv": ResizeConv,
    "subpixel": SubPixel,
    "zero_order_hold": ZeroOrderHold,
}
check_registry("upsample", UPSAMPLE)


def make_upsample(name: str | type[nn.Module], channels: int, scale: int = 2, **kwargs) -> nn.Module:
    """An upsampling layer by name (see ``UPSAMPLE``) or from a class, built as ``cls(channels, scale, **kwargs)``.

    A class of your own must keep the channel count and take ``forward(x, indices=None, output_size=None)``, as the
    registered layers do (SegNet's decoder passes the pooling indices and the encoder's size).

    >>> make_upsample("transposed", 8)(torch.zeros(1, 8, 4, 4)).shape
    torch.Size([1, 8, 8, 8])
    >>> make_upsample(ResizeConv, 8).__class__.__name__
    'ResizeConv'
    """
    bad = {k: v for k, v in {"channels": channels, "scale": scale}.items() if not is_count(v)}
    if bad:  # torch builds such layers and fails (or returns empty tensors) only at the first forward
        raise ModelError(f"make_upsample needs whole numbers >= 1; got {', '.join(f'{k}={v!r}' for k, v in bad.items())}")
    if isinstance(name, type):
        if not issubclass(name, nn.Module):
            raise ModelError(f"an upsampling class must be an nn.Module subclass, got {name.__name__}")
        return name(channels, scale, **kwargs)
    if name not in UPSAMPLE:
        raise ModelError(f"unknown upsampling '{name}'; choose one of {', '.join(UPSAMPLE)} or pass an nn.Module class")
    try:
        return UPSAMPLE[name](channels, scale, **kwargs)
    except TypeError as exc:  # an option this layer does not take
        raise ModelError(f"upsampling '{name}': {exc}") from None
