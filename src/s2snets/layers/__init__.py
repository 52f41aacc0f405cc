"""Up- and down-sampling layers: small modules, each with a functional twin, picked by name from a registry."""

from s2snets.layers.downsample import DOWNSAMPLE, BlurPool, binomial_kernel, blur_pool, make_downsample
from s2snets.layers.upsample import (
    UPSAMPLE,
    MaxUnpool,
    ResizeConv,
    SubPixel,
    TransposedUpsample,
    ZeroOrderHold,
    icnr_,
    make_upsample,
    transposed_padding,
    zero_order_hold,
)

__all__ = [
    "DOWNSAMPLE",
    "UPSAMPLE",
    "BlurPool",
    "MaxUnpool",
    "ResizeConv",
    "SubPixel",
    "TransposedUpsample",
    "ZeroOrderHold",
    "binomial_kernel",
    "blur_pool",
    "icnr_",
    "make_downsample",
    "make_upsample",
    "transposed_padding",
    "zero_order_hold",
]
