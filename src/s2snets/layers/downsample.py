"""Downsampling layers, by name: strided_conv, max_pool, avg_pool, blur_pool.

``blur_pool`` follows Zhang (2019), "Making Convolutional Networks Shift-Invariant Again": low-pass with a
binomial filter, then subsample. Binomial filters of size 1-7 (size 1 is plain subsampling), any stride, reflect
padding.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2snets.errors import ModelError, is_count


def binomial_kernel(size: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised 2-D binomial filter: outer product of row ``size - 1`` of Pascal's triangle. (size, size), sums to 1."""
    if not 1 <= size <= 7:
        raise ModelError(f"blur filter size must be 1..7, got {size}")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=dtype)
    k2 = torch.outer(row, row)
    return k2 / k2.sum()


@functools.lru_cache(maxsize=64)
def _kernel_on(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``binomial_kernel`` built once per (size, dtype, device): a blur pool in a training loop reuses it. Made outside
    inference mode, so a kernel first built under ``torch.inference_mode`` can still be saved for a backward pass."""
    with torch.inference_mode(False):
        return binomial_kernel(size, dtype).to(device)


def blur_pool(x: Tensor, filter_size: int = 3, stride: int = 2, pad_mode: str = "reflect") -> Tensor:
    """Blur each channel with a binomial filter, then keep every ``stride``-th sample.

    (B, C, H, W) -> (B, C, ceil(H / stride), ceil(W / stride)) for the "same" padding used here.
    """
    c, h, w = x.shape[-3:]
    kernel = _kernel_on(filter_size, x.dtype, x.device)
    lo, hi = (filter_size - 1) // 2, filter_size // 2  # asymmetric for even sizes, as in antialiased-cnns
    if filter_size > 1:
        mode = pad_mode if min(h, w) > max(lo, hi) else "replicate"
        x = F.pad(x, (lo, hi, lo, hi), mode=mode)
    # One depthwise convolution (groups = C): ten times faster on a CPU than folding channels into the batch.
    return F.conv2d(x, kernel[None, None].expand(c, 1, filter_size, filter_size), stride=stride, groups=c)


class BlurPool(nn.Module):
    """Module twin of ``blur_pool``; channel-agnostic (the filter is the same for every channel)."""

    def __init__(self, filter_size: int = 3, stride: int = 2, pad_mode: str = "reflect"):
        super().__init__()
        binomial_kernel(filter_size)  # validate early
        self.filter_size, self.stride, self.pad_mode = filter_size, stride, pad_mode

    def forward(self, x: Tensor) -> Tensor:
        return blur_pool(x, self.filter_size, self.stride, self.pad_mode)

    def extra_repr(self) -> str:
        return f"filter_size={self.filter_size}, stride={self.stride}, pad_mode={self.pad_mode}"


def make_downsample(
    name: str | type[nn.Module],
    in_channels: int,
    out_channels: int | None = None,
    stride: int = 2,
    kernel: int | None = None,
) -> nn.Module:
    """A downsampling layer by name, or from a class built as ``cls(in_channels, out_channels, stride, kernel)``.

    Pools keep the channel count; ``strided_conv`` maps in -> out channels. ``kernel`` defaults to 3 for
    convolutions, ``stride`` for pools, 3 for the blur filter.

    >>> make_downsample("blur_pool", 4)(torch.zeros(1, 4, 8, 8)).shape
    torch.Size([1, 4, 4, 4])
    """
    out_channels = out_channels or in_channels
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "stride": stride, "kernel": kernel or 1}
    bad = {k: v for k, v in sizes.items() if not is_count(v)}
    if bad:  # torch builds such layers and fails (or returns empty tensors) only at the first forward
        raise ModelError(f"make_downsample needs whole numbers >= 1; got {', '.join(f'{k}={v!r}' for k, v in bad.items())}")
    if isinstance(name, type):
        if not issubclass(name, nn.Module):
            raise ModelError(f"a downsampling class must be an nn.Module subclass, got {name.__name__}")
        return name(in_channels, out_channels, stride, kernel)
    if name not in DOWNSAMPLE:
        raise ModelError(f"unknown downsampling '{name}'; choose one of {', '.join(DOWNSAMPLE)} or pass an nn.Module class")
    if name != "strided_conv" and out_channels != in_channels:
        raise ModelError(f"'{name}' keeps the channel count; use strided_conv to change {in_channels} -> {out_channels}")
    return DOWNSAMPLE[name](in_channels, out_channels, stride, kernel)


DOWNSAMPLE = {
    "strided_conv": lambda c_in, c_out, s, k: nn.Conv2d(c_in, c_out, k or 3, s, padding=((k or 3) - 1) // 2),
    "max_pool": lambda c_in, c_out, s, k: nn.MaxPool2d(k or s, s, padding=((k or s) - 1) // 2),
    "avg_pool": lambda c_in, c_out, s, k: nn.AvgPool2d(k or s, s, padding=((k or s) - 1) // 2),
    "blur_pool": lambda c_in, c_out, s, k: BlurPool(k or 3, s),
}
