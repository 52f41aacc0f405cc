"""What a layer does to the spatial grid: an open registry from module types to sampling geometry.

``module_geometry(m)`` returns a ``Sampling``: the op's name and its stages, each a (H-axis, W-axis) pair of
``Geometry`` applied in order (a max-blur-pool is a stride-1 max pool, then a strided blur). Learned convolutions
and max pools use the count model (every tap weighs 1: the idealised map, stated as such in the lint); layers with
fixed filters carry their actual taps, so the lint propagates their real weights.

Built in: torch's convolutions, transposed convolutions, pools, ``Upsample`` and ``PixelShuffle``; this project's
layers; frozen depthwise convolutions with one shared filter; and, recognised by structure without importing them,
blur-pool layers of other libraries: a fixed 2-D filter buffer (``filt``, ``kernel`` or ``filter``) and an integer
``stride`` > 1, as timm's ``BlurPool2d``, kornia's ``BlurPool2D`` / ``MaxBlurPool2D`` (with ``max_pool_size``) and
antialiased-cnns' ``BlurPool`` have.

Describe your own layer once and every lint understands it::

    >>> import torch
    >>> from s2snets.metrics.geometry import Geometry, Sampling, register_geometry
    >>> class Halve(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x[..., ::2, ::2]
    >>> register_geometry(Halve, lambda m: Sampling("Halve", ((Geometry("pool", 1, 2),) * 2,)))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from s2snets.layers.downsample import BlurPool, binomial_kernel
from s2snets.layers.upsample import MaxUnpool, ResizeConv, SubPixel, TransposedUpsample, ZeroOrderHold
from s2snets.metrics.overlap import Geometry

Pair = tuple[Geometry, Geometry]


@dataclass(frozen=True)
class Sampling:
    """A layer's effect on the grid: ``stages`` applied in order, each a (H axis, W axis) geometry pair."""

    op: str
    stages: tuple[Pair, ...]
    note: str = ""  # e.g. "count model" for learned weights, "fixed filter" for real taps

    @property
    def stride(self) -> tuple[int, int]:
        sh = sw = 1
        for gh, gw in self.stages:
            sh, sw = sh * gh.stride, sw * gw.stride
        return sh, sw

    @property
    def kind(self) -> str:
        """'down' (conv/pool stages), 'up' (transposed/upsample stages) or 'same' (stride 1 everywhere)."""
        if self.stride == (1, 1):
            return "same"
        return "up" if self.stages[-1][0].kind in ("transposed", "upsample") else "down"

    def axis(self, i: int) -> list[Geometry]:
        return [stage[i] for stage in self.stages]


GeometryFn = Callable[[nn.Module], "Sampling | None"]
_BY_TYPE: dict[type, GeometryFn] = {}
_BY_STRUCTURE: list[GeometryFn] = []


def register_geometry(module_type: type, fn: GeometryFn) -> None:
    """Tell the lint what ``module_type`` (and its subclasses) does to the grid.

    ``fn(module) -> Sampling`` (or None: the module keeps the grid position by position). A registered module is
    analysed as one unit and not traced into. Registering a type again replaces the earlier entry.
    """
    if not isinstance(module_type, type) or not issubclass(module_type, nn.Module):
        raise TypeError(f"register_geometry needs an nn.Module subclass, got {module_type!r}")
    _BY_TYPE[module_type] = fn


def registered(m: nn.Module) -> bool:
    """Whether the registry knows ``m`` (by type or by structure): the lint then treats it as one unit."""
    return any(cls in _BY_TYPE for cls in type(m).__mro__) or any(fn(m) is not None for fn in _BY_STRUCTURE)


def module_geometry(m: nn.Module) -> Sampling | None:
    """The module's ``Sampling``, or None if it is unknown or keeps the grid."""
    for cls in type(m).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls](m)
    for fn in _BY_STRUCTURE:
        found = fn(m)
        if found is not None:
            return found
    return None


def pair(v: Any) -> tuple[int, int]:
    if isinstance(v, tuple | list):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def single(op: str, kind: str, k: Any, s: Any, p: Any = 0, d: Any = 1, op_pad: Any = 0, note: str = "") -> Sampling:
    """A one-stage Sampling from PyTorch-style (int or pair) arguments."""
    k2, s2, p2, d2, o2 = pair(k), pair(s), pair(p), pair(d), pair(op_pad)
    return Sampling(op, (tuple(Geometry(kind, k2[i], s2[i], p2[i], d2[i], o2[i]) for i in range(2)),), note)  # type: ignore[arg-type]


def fixed_filter(op: str, filt: Tensor, stride: Any, padding: Any = None, note: str = "fixed filter") -> Sampling:
    """A strided fixed 2-D filter (kh, kw) as real taps per axis: its row and column marginals, normalised so their
    outer product is the filter when it is separable (binomial, box); otherwise the marginals approximate it."""
    f = filt.detach().double().cpu()
    f = f.reshape(-1, *f.shape[-2:])[0]
    total = float(f.sum()) or 1.0
    rows, cols = f.sum(1) / total, f.sum(0)
    if not torch.allclose(torch.outer(rows, cols), f, rtol=1e-4, atol=1e-8):
        note += " (not separable: approximated by its marginals)"
    s = pair(stride)
    kh, kw = f.shape
    p = pair(padding) if padding is not None else ((kh - 1) // 2, (kw - 1) // 2)
    gh = Geometry("pool", kh, s[0], p[0], weights=tuple(rows.tolist()))
    gw = Geometry("pool", kw, s[1], p[1], weights=tuple(cols.tolist()))
    return Sampling(op, ((gh, gw),), note)


# ----------------------------------------------------------------------------------------------- torch's modules
def _conv(m: nn.Conv2d) -> Sampling:
    if isinstance(m.padding, str):
        pad = tuple((m.dilation[i] * (m.kernel_size[i] - 1)) // 2 for i in range(2)) if m.padding == "same" else (0, 0)
    else:
        pad = pair(m.padding)
    frozen_depthwise = (
        m.groups == m.in_channels == m.out_channels and not m.weight.requires_grad and m.bias is None and m.weight.shape[0] > 0
    )
    if frozen_depthwise and bool((m.weight == m.weight[:1]).all()):
        return fixed_filter("Conv2d (frozen depthwise)", m.weight[0, 0], m.stride, pad)
    return single("Conv2d", "conv", m.kernel_size, m.stride, pad, m.dilation, note="count model")


def _avg_pool(m: nn.AvgPool2d) -> Sampling:
    k = pair(m.kernel_size)
    return fixed_filter("AvgPool2d", torch.ones(k) / (k[0] * k[1]), m.stride or m.kernel_size, m.padding)


def _max_pool(m: nn.MaxPool2d) -> Sampling:
    s = m.stride if m.stride is not None else m.kernel_size
    return single("MaxPool2d", "pool", m.kernel_size, s, m.padding, m.dilation, note="count model (gradient goes to the argmax)")


def _upsample(m: nn.Upsample) -> Sampling | None:
    sf = m.scale_factor
    factor = int(sf if not isinstance(sf, tuple) else sf[0]) if sf else 0
    return single("Upsample", "upsample", factor, factor) if factor >= 2 else None


register_geometry(
    nn.ConvTranspose2d,
    lambda m: single(
        "ConvTranspose2d", "transposed", m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding, "count model"
    ),
)
register_geometry(nn.Conv2d, _conv)
register_geometry(nn.MaxPool2d, _max_pool)
register_geometry(nn.AvgPool2d, _avg_pool)
register_geometry(nn.Upsample, _upsample)
register_geometry(nn.PixelShuffle, lambda m: single("PixelShuffle", "upsample", m.upscale_factor, m.upscale_factor))


# ----------------------------------------------------------------------------------------------- by structure
FILTER_BUFFERS = ("filt", "kernel", "filter")


def _blur_by_structure(m: nn.Module) -> Sampling | None:
    """Any module with a fixed 2-D filter buffer and an integer stride > 1 is a blur pool (timm, kornia, antialiased-cnns)."""
    padding_layers = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d)
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) or any(not isinstance(c, padding_layers) for c in m.children()):
        return None  # only padding may sit inside (antialiased-cnns pads with a child module)
    stride = getattr(m, "stride", None)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 2:
        return None
    buffers = dict(m.named_buffers(recurse=False))
    filt = next((buffers[n] for n in FILTER_BUFFERS if n in buffers), None)
    if filt is None or not filt.is_floating_point() or filt.ndim < 2 or min(filt.shape[-2:]) < 1:
        return None
    name = type(m).__name__
    blur = fixed_filter(name, filt, stride)
    max_pool = getattr(m, "max_pool_size", None)  # kornia's MaxBlurPool2D: max pool at stride 1 first
    if isinstance(max_pool, int) and max_pool > 1:
        mp = Geometry("pool", max_pool, 1, 0)
        return Sampling(name, ((mp, mp), blur.stages[0]), "max pool: count model; blur: fixed filter")
    return blur


_BY_STRUCTURE.append(_blur_by_structure)


def _register_own_layers() -> None:
    register_geometry(BlurPool, lambda m: fixed_filter("BlurPool", binomial_kernel(m.filter_size, torch.float64), m.stride))
    register_geometry(MaxUnpool, lambda m: single("MaxUnpool", "upsample", m.scale, m.scale))
    register_geometry(TransposedUpsample, lambda m: _conv_transposed_of(m.conv, "TransposedUpsample"))

    # Zero-order hold and resize-conv are flat by construction: their net effect is a hold of ``scale``.
    def hold(m: nn.Module) -> Sampling:
        return single(type(m).__name__, "upsample", m.scale, m.scale)

    for cls in (ZeroOrderHold, ResizeConv, SubPixel):
        register_geometry(cls, hold)


def _conv_transposed_of(conv: nn.ConvTranspose2d, name: str) -> Sampling:
    inner = module_geometry(conv)
    assert inner is not None
    return Sampling(name, inner.stages, inner.note)


_register_own_layers()
