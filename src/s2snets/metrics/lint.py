"""A lint for uneven overlap in any model: every sampling layer, and the composed maps of the whole graph.

The model is traced with torch.fx (shapes from one forward pass); where tracing fails, forward hooks record the
sampling layers in execution order and they are composed as a chain (marked approximate). Per layer it reports
uneven overlap (kernel not divisible by stride), skipped inputs (kernel smaller than stride) and the layer's own
max/min overlap ratio in 2-D. For the whole model it propagates exact 1-D count maps along the graph, per axis:

* input gradient: a uniform gradient at the output(s), carried back through every node (scatter for convolutions
  and pools, gather for transposed convolutions and upsampling, unchanged through element-wise nodes, summed where
  branches join): the map of how much gradient each input pixel receives, its period and max/min ratio;
* forward output (for image-to-image models): ones at the input carried forward: the overlap pattern of the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from s2snets.layers.downsample import BlurPool
from s2snets.layers.upsample import MaxUnpool, ResizeConv, SubPixel, TransposedUpsample, ZeroOrderHold
from s2snets.metrics.overlap import (
    Geometry,
    adaptive_windows,
    gather_taps,
    gradient_overlap_1d,
    overlap_period,
    overlap_ratio,
    scatter_taps,
    transposed_overlap_1d,
)

LEAF_LAYERS = (BlurPool, MaxUnpool, ResizeConv, SubPixel, TransposedUpsample, ZeroOrderHold)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, tuple | list):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


@dataclass
class SamplingLayer:
    name: str
    op: str
    geometry: tuple[Geometry, Geometry]  # (H axis, W axis)

    @property
    def uneven(self) -> bool:
        return any(g.uneven for g in self.geometry)

    @property
    def skips(self) -> bool:
        return any(g.skips for g in self.geometry)

    @property
    def skip_fraction(self) -> float:
        """Share of 2-D input positions never read: 1 - prod(span/stride) for skipping axes."""
        keep = 1.0
        for g in self.geometry:
            keep *= min(1.0, g.span / g.stride) if g.stride > 1 else 1.0
        return 1 - keep

    @property
    def ratio(self) -> float:
        """The layer's own 2-D max/min overlap ratio (forward for upsampling, gradient for downsampling)."""
        r = 1.0
        for g in self.geometry:
            n = 8 * g.stride * max(g.span, g.stride)
            upsampling = g.kind in ("transposed", "upsample")
            r *= overlap_ratio(transposed_overlap_1d([g], n) if upsampling else gradient_overlap_1d([g], n))
        return r

    def as_dict(self) -> dict:
        gh, gw = self.geometry
        return {
            "name": self.name,
            "op": self.op,
            "kind": gh.kind,
            "kernel": [gh.kernel, gw.kernel],
            "stride": [gh.stride, gw.stride],
            "padding": [gh.padding, gw.padding],
            "dilation": [gh.dilation, gw.dilation],
            "uneven": self.uneven,
            "skips": self.skips,
            "skip_fraction": self.skip_fraction,
            "ratio": self.ratio if math.isfinite(self.ratio) else "inf",
            "gradient_period" if gh.kind in ("conv", "pool") else "output_period": max(gh.stride, gw.stride)
            if (self.uneven or self.skips)
            else 1,
        }


@dataclass
class MapSummary:
    rows: Tensor  # (H,)
    cols: Tensor  # (W,)

    @property
    def period(self) -> tuple[int, int]:
        return overlap_period(self.rows), overlap_period(self.cols)

    @property
    def ratio(self) -> float:
        return overlap_ratio(self.rows) * overlap_ratio(self.cols)

    @property
    def map2d(self) -> Tensor:
        return torch.outer(self.rows, self.cols)

    def as_dict(self) -> dict:
        r = self.ratio
        return {"period": list(self.period), "ratio": r if math.isfinite(r) else "inf"}


@dataclass
class LintReport:
    model: str
    input_size: tuple[int, int]
    method: str  # "fx" or "hooks (approximate: branches composed as a chain)"
    layers: list[SamplingLayer]
    input_gradient: MapSummary | None
    forward_output: MapSummary | None
    warnings: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[SamplingLayer]:
        return [layer for layer in self.layers if layer.uneven or layer.skips]

    @property
    def predicted_periods(self) -> list[int]:
        """Artifact periods the graph predicts at the input gradient (and output, if any), ascending."""
        periods: set[int] = set()
        for summary in (self.input_gradient, self.forward_output):
            if summary is not None:
                periods.update(p for p in summary.period if p > 1)
        return sorted(periods)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "method": self.method,
            "layers": [layer.as_dict() for layer in self.layers],
            "findings": [layer.name for layer in self.findings],
            "input_gradient": self.input_gradient.as_dict() if self.input_gradient else None,
            "forward_output": self.forward_output.as_dict() if self.forward_output else None,
            "predicted_periods": self.predicted_periods,
            "warnings": self.warnings,
        }


# ----------------------------------------------------------------------------------------------- geometry
def module_geometry(m: nn.Module) -> tuple[str, tuple[Geometry, Geometry]] | None:
    """The sampling geometry of a module, or None if it keeps the spatial layout position by position."""
    if isinstance(m, nn.ConvTranspose2d):
        k, s, p, d, op = (_pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding))
        return "ConvTranspose2d", tuple(Geometry("transposed", k[i], s[i], p[i], d[i], op[i]) for i in range(2))  # type: ignore[return-value]
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str):
            pad = tuple((m.dilation[i] * (m.kernel_size[i] - 1)) // 2 for i in range(2)) if m.padding == "same" else (0, 0)
        else:
            pad = _pair(m.padding)
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        return "Conv2d", tuple(Geometry("conv", k[i], s[i], pad[i], d[i]) for i in range(2))  # type: ignore[return-value]
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        k, p = _pair(m.kernel_size), _pair(m.padding)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        return type(m).__name__, tuple(Geometry("pool", k[i], s[i], p[i], d[i]) for i in range(2))  # type: ignore[return-value]
    if isinstance(m, BlurPool):
        kb, sb = m.filter_size, m.stride
        return "BlurPool", (Geometry("pool", kb, sb, (kb - 1) // 2),) * 2  # type: ignore[return-value]
    if isinstance(m, MaxUnpool):
        return "MaxUnpool", (Geometry("upsample", m.scale, m.scale),) * 2  # type: ignore[return-value]
    if isinstance(m, TransposedUpsample | ZeroOrderHold):
        conv = m.conv if isinstance(m, TransposedUpsample) else m.up.conv
        name, geo = module_geometry(conv)  # type: ignore[misc]
        if isinstance(m, ZeroOrderHold):  # the box smoothing evens the overlap: model it as its net effect
            return "ZeroOrderHold", (Geometry("upsample", m.scale, m.scale),) * 2  # type: ignore[return-value]
        return "TransposedUpsample", geo
    if isinstance(m, ResizeConv | SubPixel):
        return type(m).__name__, (Geometry("upsample", m.scale, m.scale),) * 2  # type: ignore[return-value]
    if isinstance(m, nn.Upsample):
        factor = int(m.scale_factor if not isinstance(m.scale_factor, tuple) else m.scale_factor[0]) if m.scale_factor else 0
        if factor >= 2:
            return "Upsample", (Geometry("upsample", factor, factor),) * 2  # type: ignore[return-value]
    if isinstance(m, nn.PixelShuffle):
        r = m.upscale_factor
        return "PixelShuffle", (Geometry("upsample", r, r),) * 2  # type: ignore[return-value]
    return None


def _function_geometry(node: fx.Node, shapes: dict[str, Any]) -> tuple[str, tuple[Geometry, Geometry]] | None:
    target, args, kwargs = node.target, node.args, node.kwargs

    def arg(i: int, name: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(name, default)

    if target in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d, torch._C._nn.avg_pool2d):
        k = _pair(arg(1, "kernel_size", 1))
        s = _pair(arg(2, "stride", None) or k)
        p = _pair(arg(3, "padding", 0))
        return target.__name__, tuple(Geometry("pool", k[i], s[i], p[i]) for i in range(2))  # type: ignore[return-value]
    if target in (F.conv2d, torch.conv2d):
        w = shapes.get(getattr(arg(1, "weight", None), "name", ""))
        if w is None:
            return None
        s, p, d = _pair(arg(3, "stride", 1)), arg(4, "padding", 0), _pair(arg(5, "dilation", 1))
        p = (0, 0) if isinstance(p, str) else _pair(p)
        return "conv2d", tuple(Geometry("conv", int(w[2 + i]), s[i], p[i], d[i]) for i in range(2))  # type: ignore[return-value]
    if target in (F.interpolate,):
        sf = arg(2, "scale_factor", None)
        if sf:
            factor = int(sf if not isinstance(sf, tuple | list) else sf[0])
            return "interpolate", (Geometry("upsample", factor, factor),) * 2  # type: ignore[return-value]
    if target in (F.pixel_shuffle, torch.pixel_shuffle):
        r = int(arg(1, "upscale_factor", 2))
        return "pixel_shuffle", (Geometry("upsample", r, r),) * 2  # type: ignore[return-value]
    return None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_LAYERS) or super().is_leaf_module(m, qualname)


def _spatial(meta: Any) -> tuple[int, int] | None:
    if isinstance(meta, tuple | list) and meta and not hasattr(meta, "shape"):  # (values, indices): the values' shape
        meta = meta[0]
    if getattr(meta, "dtype", torch.float32) in (torch.int64, torch.int32, torch.bool):
        return None  # pooling indices and masks carry no gradient
    shape = getattr(meta, "shape", None)
    if shape is not None and len(shape) == 4:
        return int(shape[2]), int(shape[3])
    return None


def _tensor_inputs(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) if n.op != "get_attr" else None)
    return list(dict.fromkeys(found))


def _backward_rule(geo: Geometry | str, upstream: Tensor, n_in: int) -> Tensor:
    if geo == "adaptive":
        out = torch.zeros(n_in, dtype=torch.float64)
        for j, (a, b) in enumerate(adaptive_windows(n_in, len(upstream))):
            out[a:b] += upstream[j]
        return out
    if geo.kind in ("conv", "pool"):
        return scatter_taps(upstream, geo, n_in, circular=True)
    return gather_taps(upstream, geo, n_in, circular=True)


def _forward_rule(geo: Geometry | str, counts: Tensor, n_out: int) -> Tensor:
    if geo == "adaptive":
        return torch.stack([counts[a:b].sum() for a, b in adaptive_windows(len(counts), n_out)])
    if geo.kind in ("conv", "pool"):
        return gather_taps(counts, geo, n_out, circular=True)
    return scatter_taps(counts, geo, n_out, circular=True)


def _resize(counts: Tensor, n: int) -> Tensor:
    """Uniform stand-in where the graph changes the size in a way the lint does not model."""
    return torch.full((n,), float(counts.mean()) if len(counts) else 1.0, dtype=torch.float64)


def lint_model(model: nn.Module, example: Tensor, name: str = "model") -> LintReport:
    """Lint ``model`` for uneven overlap, tracing it with ``example`` (1, C, H, W)."""
    model = model.eval()
    try:
        graph = _Tracer().trace(model)
        gm = fx.GraphModule(model, graph)
        from torch.fx.passes.shape_prop import ShapeProp

        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:  # tracing fails on data-dependent control flow; fall back to hooks
        return _lint_with_hooks(model, example, name, f"torch.fx could not trace the model ({type(exc).__name__}); used hooks")
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    sizes: dict[fx.Node, tuple[int, int] | None] = {}
    shapes: dict[str, Any] = {}
    for node in nodes:
        meta = node.meta.get("tensor_meta")
        sizes[node] = _spatial(meta)
        if node.op == "get_attr":  # weights reached through attributes (module.weight), e.g. of functional convs
            try:
                shapes[node.name] = tuple(gm.get_parameter(str(node.target)).shape)
            except AttributeError:
                pass
        elif getattr(meta, "shape", None) is not None:
            shapes[node.name] = tuple(meta.shape)

    geometry: dict[fx.Node, tuple[str, tuple[Geometry, Geometry]]] = {}
    layers: list[SamplingLayer] = []
    for node in nodes:
        found = None
        if node.op == "call_module":
            found = module_geometry(modules[str(node.target)])
        elif node.op == "call_function":
            found = _function_geometry(node, shapes)
        if (
            found is None
            and node.op == "call_module"
            and isinstance(modules[str(node.target)], nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
        ):
            geometry[node] = ("adaptive", ("adaptive", "adaptive"))  # type: ignore[assignment]
        if found is not None:
            geometry[node] = found
            label = str(node.target) if node.op == "call_module" else f"{node.name} ({found[0]})"
            if any(g.stride > 1 for g in found[1]):
                layers.append(SamplingLayer(label, found[0], found[1]))

    warnings: list[str] = []
    input_node = next(n for n in nodes if n.op == "placeholder")
    in_size = sizes[input_node] or (example.shape[-2], example.shape[-1])
    backward = [_propagate_backward(nodes, sizes, geometry, axis, warnings) for axis in (0, 1)]
    gradient = MapSummary(
        backward[0].get(input_node, torch.ones(in_size[0])), backward[1].get(input_node, torch.ones(in_size[1]))
    )
    output_node = next(n for n in nodes if n.op == "output")
    outs = [n for n in _tensor_inputs(output_node) if sizes.get(n)]
    forward_output = None
    if outs:
        fwd = [_propagate_forward(nodes, sizes, geometry, input_node, axis) for axis in (0, 1)]
        forward_output = MapSummary(fwd[0][outs[0]], fwd[1][outs[0]])
    return LintReport(name, tuple(in_size), "fx", layers, gradient, forward_output, sorted(set(warnings)))


def _propagate_backward(
    nodes: list[fx.Node], sizes: dict, geometry: dict, axis: int, warnings: list[str]
) -> dict[fx.Node, Tensor]:
    maps: dict[fx.Node, Tensor] = {}
    output_node = nodes[-1]
    for n in _tensor_inputs(output_node):
        if sizes.get(n):
            maps[n] = torch.ones(sizes[n][axis], dtype=torch.float64)
    for node in reversed(nodes):
        if node.op in ("output", "placeholder", "get_attr"):
            continue
        own = sizes.get(node)
        upstream = maps.get(node)
        if upstream is None:
            if not _reaches_output(node):
                continue
            # Below a non-spatial head (flatten -> linear -> logits) the gradient is taken as uniform.
            upstream = torch.ones(own[axis], dtype=torch.float64) if own else None
        for src in _tensor_inputs(node):
            src_size = sizes.get(src)
            if not src_size:
                continue
            n_in = src_size[axis]
            if upstream is None:
                contribution = torch.ones(n_in, dtype=torch.float64)
            elif node in geometry and src is _tensor_inputs(node)[0]:
                contribution = _backward_rule(geometry[node][1][axis], upstream, n_in)
            elif len(upstream) == n_in:
                contribution = upstream
            else:
                contribution = _resize(upstream, n_in)
                warnings.append(f"size change at '{node.name}' not modelled; treated as uniform")
            maps[src] = maps[src] + contribution if src in maps else contribution.clone()
    return maps


def _reaches_output(node: fx.Node) -> bool:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n.op == "output":
            return True
        if n in seen:
            continue
        seen.add(n)
        stack.extend(n.users)
    return False


def _propagate_forward(
    nodes: list[fx.Node], sizes: dict, geometry: dict, input_node: fx.Node, axis: int
) -> dict[fx.Node, Tensor]:
    maps: dict[fx.Node, Tensor] = {input_node: torch.ones(sizes[input_node][axis], dtype=torch.float64)}
    for node in nodes:
        if node.op in ("placeholder", "output", "get_attr") or not sizes.get(node):
            continue
        n_out = sizes[node][axis]
        srcs = [s for s in _tensor_inputs(node) if s in maps]
        if not srcs:
            continue
        if node in geometry:
            maps[node] = _forward_rule(geometry[node][1][axis], maps[srcs[0]], n_out)
            continue
        total = torch.zeros(n_out, dtype=torch.float64)
        for s in srcs:
            m = maps[s]
            total += m if len(m) == n_out else _resize(m, n_out)
        maps[node] = total
    return maps


def _lint_with_hooks(model: nn.Module, example: Tensor, name: str, why: str) -> LintReport:
    """Fallback: sampling modules in execution order with their input sizes, composed as a chain."""
    calls: list[tuple[str, nn.Module, tuple[int, int]]] = []
    hooks = []
    for mod_name, m in model.named_modules():
        if module_geometry(m) is not None:
            hooks.append(
                m.register_forward_pre_hook(lambda mod, inp, n=mod_name: calls.append((n, mod, tuple(inp[0].shape[-2:]))))
            )
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in hooks:
            h.remove()
    layers = []
    for mod_name, m, _ in calls:
        op, geo = module_geometry(m)  # type: ignore[misc]
        if any(g.stride > 1 for g in geo):
            layers.append(SamplingLayer(mod_name, op, geo))
    maps = []
    for axis in (0, 1):
        chain = [(module_geometry(m)[1][axis], size[axis]) for _, m, size in calls]  # type: ignore[index]
        counts = torch.ones(
            max(1, chain[-1][0].forward_length(chain[-1][1])) if chain else example.shape[-2 + axis], dtype=torch.float64
        )
        for geo, n_in in reversed(chain):
            counts = _backward_rule(
                geo, counts if len(counts) == geo.forward_length(n_in) else _resize(counts, geo.forward_length(n_in)), n_in
            )
        maps.append(counts if chain else torch.ones(example.shape[-2 + axis], dtype=torch.float64))
    forward = None
    if isinstance(out, Tensor) and out.ndim == 4:
        fwd = []
        for axis in (0, 1):
            counts = torch.ones(example.shape[-2 + axis], dtype=torch.float64)
            for _, m, size in calls:
                geo = module_geometry(m)[1][axis]  # type: ignore[index]
                counts = counts if len(counts) == size[axis] else _resize(counts, size[axis])
                counts = _forward_rule(geo, counts, geo.forward_length(size[axis]))
            fwd.append(counts if len(counts) == out.shape[-2 + axis] else _resize(counts, out.shape[-2 + axis]))
        forward = MapSummary(fwd[0], fwd[1])
    return LintReport(
        name,
        (example.shape[-2], example.shape[-1]),
        "hooks (approximate: branches composed as a chain)",
        layers,
        MapSummary(maps[0], maps[1]),
        forward,
        [why],
    )
