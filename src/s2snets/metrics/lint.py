"""A lint for uneven overlap in any model: every sampling layer, and the composed maps of the whole graph.

The model is traced with torch.fx (shapes from one forward pass); where tracing fails, forward hooks record the
sampling layers in execution order and they are composed as a chain (marked approximate). What each layer does to
the grid comes from the open registry in ``s2snets.metrics.geometry`` (``register_geometry``): learned
convolutions and max pools by the count model (the idealised map), fixed filters (blur pools, average pools, frozen
depthwise kernels) by their real taps.

Per layer it reports uneven overlap, skipped inputs and the layer's own max/min ratio in 2-D. For the whole model it
propagates 1-D maps along the graph, per axis, circularly (the pattern without its borders):

* input gradient: a uniform gradient at the output(s), carried back through every node (scatter for convolutions
  and pools, gather for transposed convolutions and upsampling, unchanged through element-wise nodes, summed where
  branches join): how much gradient each input pixel receives;
* forward output (for image-to-image models): ones at the input carried forward: the overlap pattern of the output.

Each map's **dominant lattice period** is the smallest period P whose frequency lattice (multiples of L / P) holds
at least half of the map's non-DC power: a map that alternates 0.7 / 1.0 under a slow modulation predicts period 2
with its power share, whatever its exact repeat length. Any node that changes the spatial size and is not
understood is a finding ("not analysed"), and the report says its prediction is incomplete.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from s2snets.errors import InputError, ModelError
from s2snets.metrics.geometry import Geometry, Sampling, fixed_filter, module_geometry, pair, registered, single
from s2snets.metrics.overlap import (
    adaptive_windows,
    dominant_period,
    gather_taps,
    gradient_overlap_1d,
    lattice_shares_1d,
    overlap_period,
    overlap_ratio,
    scatter_taps,
    transposed_overlap_1d,
)
from s2snets.metrics.spectrum import lattice_energy

ADAPTIVE = "adaptive"


@dataclass
class SamplingLayer:
    """One layer that changes the grid, with what it alone does to the overlap."""

    name: str
    sampling: Sampling

    @property
    def op(self) -> str:
        return self.sampling.op

    @property
    def geometry(self) -> tuple[Geometry, Geometry]:
        """The (H, W) geometry of the strided stage (the first stage when none is strided)."""
        for stage in self.sampling.stages:
            if stage[0].stride > 1 or stage[1].stride > 1:
                return stage
        return self.sampling.stages[0]

    def own_map(self, axis: int) -> Tensor:
        """The layer's own 1-D overlap map (forward for upsampling, gradient for downsampling), borders included."""
        return self._own_maps[axis]

    @functools.cached_property
    def _own_maps(self) -> tuple[Tensor, Tensor]:
        return self._build_map(0), self._build_map(1)

    def _build_map(self, axis: int) -> Tensor:
        stages = self.sampling.axis(axis)
        stride = math.prod(g.stride for g in stages)
        n = 8 * stride * max(max(g.span for g in stages), stride)
        if self.sampling.kind == "up":
            return transposed_overlap_1d(stages, n)
        return gradient_overlap_1d(stages, n * stride)

    def axis_ratio(self, axis: int) -> float:
        return overlap_ratio(self.own_map(axis))

    @property
    def uneven(self) -> bool:
        return any(1 + 1e-9 < self.axis_ratio(a) < math.inf for a in (0, 1)) and not self.skips

    @property
    def skips(self) -> bool:
        return any(self.axis_ratio(a) == math.inf for a in (0, 1))

    @property
    def skip_fraction(self) -> float:
        """Share of 2-D input positions that get nothing (never read; no gradient)."""
        keep = 1.0
        for a in (0, 1):
            m = self.own_map(a)
            inner = m[len(m) // 4 : len(m) - len(m) // 4]
            keep *= float((inner > 0).double().mean())
        return 1 - keep

    @property
    def ratio(self) -> float:
        """The layer's own 2-D max/min overlap ratio (forward for upsampling, gradient for downsampling)."""
        return self.axis_ratio(0) * self.axis_ratio(1)

    def finding(self) -> str:
        g = self.geometry[0]
        if self.skips:
            return f"skips inputs: {self.skip_fraction:.0%} never read"
        if self.uneven:
            if g.weights is None:
                return f"uneven overlap (k={g.span} not divisible by s={g.stride})"
            return "uneven overlap (fixed filter's phases differ)"
        return "even" + (" (fixed filter)" if g.weights is not None else "")

    def to_dict(self) -> dict:
        gh, gw = self.geometry
        ratio = self.ratio
        return {
            "name": self.name,
            "op": self.op,
            "kind": gh.kind,
            "kernel": [gh.kernel, gw.kernel],
            "stride": [gh.stride, gw.stride],
            "padding": [gh.padding, gw.padding],
            "dilation": [gh.dilation, gw.dilation],
            "weights": "fixed filter" if gh.weights is not None else "count model",
            "uneven": self.uneven,
            "skips": self.skips,
            "skip_fraction": self.skip_fraction,
            "ratio": ratio if math.isfinite(ratio) else "inf",
            "finding": self.finding(),
        }


@dataclass
class MapSummary:
    """A composed map, per axis: rows (H,) and cols (W,); the 2-D map is their outer product."""

    rows: Tensor  # (H,)
    cols: Tensor  # (W,)

    @property
    def period(self) -> tuple[int, int]:
        """Exact repeat length per axis (1 = even, 0 = none within half the length): the fundamental period."""
        return overlap_period(self.rows), overlap_period(self.cols)

    @property
    def dominant(self) -> tuple[tuple[int, float], tuple[int, float]]:
        """Per axis: (dominant lattice period, its share of the non-DC power); (1, 0.0) for an even axis."""
        return dominant_period(self.rows), dominant_period(self.cols)

    @property
    def even(self) -> bool:
        return all(p == 1 for p, _ in self.dominant)

    @property
    def ratio(self) -> float:
        return overlap_ratio(self.rows) * overlap_ratio(self.cols)

    @property
    def map2d(self) -> Tensor:
        return torch.outer(self.rows, self.cols)

    def lattice_shares(self) -> dict[int, float]:
        """2-D lattice energy of the composed map for P = 2, 4, 8, ... up to its size."""
        m = self.map2d
        size = min(m.shape)
        return {p: float(lattice_energy(m, p)) for p in (2, 4, 8, 16, 32) if p <= size}

    def __repr__(self) -> str:
        return f"MapSummary({len(self.rows)}x{len(self.cols)}, {self})"

    def __str__(self) -> str:
        if self.even:
            return "even"
        (ph, sh), (pw, sw) = self.dominant
        return f"dominant period {ph}x{pw} (power share {sh:.0%} / {sw:.0%})"

    def to_dict(self) -> dict:
        r = self.ratio
        (ph, sh), (pw, sw) = self.dominant
        return {
            "dominant_period": [ph, pw],
            "dominant_share": [sh, sw],
            "period": list(self.period),
            "ratio": r if math.isfinite(r) else "inf",
            "lattice_shares": {"rows": lattice_shares_1d(self.rows), "cols": lattice_shares_1d(self.cols)},
        }


@dataclass
class LintReport:
    """What ``lint`` found. ``str(report)`` is the readable table; ``to_dict()`` the JSON form."""

    model: str
    input_size: tuple[int, int]
    method: str  # "fx" or "hooks (approximate: branches composed as a chain)"
    layers: list[SamplingLayer]
    input_gradient: MapSummary | None
    forward_output: MapSummary | None
    warnings: list[str] = field(default_factory=list)
    unanalysed: list[str] = field(default_factory=list)  # size-changing nodes the registry does not know

    @property
    def findings(self) -> list[SamplingLayer]:
        return [layer for layer in self.layers if layer.uneven or layer.skips]

    @property
    def complete(self) -> bool:
        """False when some size-changing operation was not analysed: then 'even' is not a verdict."""
        return not self.unanalysed

    @property
    def predicted_periods(self) -> list[int]:
        """Dominant lattice periods of the input gradient (and output, if any), both axes, ascending."""
        periods: set[int] = set()
        for summary in (self.input_gradient, self.forward_output):
            if summary is not None:
                periods.update(p for p, _ in summary.dominant if p > 1)
        return sorted(periods)

    def to_dict(self) -> dict:
        """JSON-able: every layer, the composed maps' summaries, the prediction."""
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "method": self.method,
            "layers": [layer.to_dict() for layer in self.layers],
            "findings": [layer.name for layer in self.findings],
            "input_gradient": self.input_gradient.to_dict() if self.input_gradient else None,
            "forward_output": self.forward_output.to_dict() if self.forward_output else None,
            "predicted_periods": self.predicted_periods,
            "complete": self.complete,
            "unanalysed": self.unanalysed,
            "warnings": self.warnings,
        }

    def __repr__(self) -> str:
        grad = str(self.input_gradient) if self.input_gradient else "n/a"
        return (
            f"LintReport({self.model!r}, {self.input_size[0]}x{self.input_size[1]}, {len(self.layers)} sampling layers, "
            f"{len(self.findings)} findings, input gradient {grad}, predicted periods {self.predicted_periods}"
            + ("" if self.complete else f", INCOMPLETE: {len(self.unanalysed)} not analysed")
            + ")"
        )

    def __str__(self) -> str:
        return self.table()

    def table(self) -> str:
        """The human-readable report: one line per sampling layer, the composed maps, the prediction."""
        lines = [
            f"{self.model}: {len(self.layers)} sampling layers at input {self.input_size[0]}x{self.input_size[1]} "
            f"(traced with {self.method})",
            f"  {'layer':<34}{'op':<18}{'k':>3}{'s':>3}{'p':>3}  {'finding':<46}{'ratio 2-D':>9}",
        ]
        for layer in self.layers:
            g = layer.geometry[0]
            ratio = "inf" if layer.ratio == math.inf else f"{layer.ratio:.2f}:1"
            lines.append(
                f"  {layer.name[:33]:<34}{layer.op[:17]:<18}{g.kernel:>3}{g.stride:>3}{g.padding:>3}  "
                f"{layer.finding()[:45]:<46}{ratio:>9}"
            )
        for label, summary in (("input gradient", self.input_gradient), ("forward output", self.forward_output)):
            if summary is not None:
                r = summary.ratio
                lines.append(f"  {label}: {summary}, max/min {'inf' if r == math.inf else f'{r:.3f}'}")
        for item in self.unanalysed:
            lines.append(f"  not analysed: {item}")
        verdict = f"predicted artifact periods: {self.predicted_periods or 'none'}"
        if not self.complete:
            verdict += " -- INCOMPLETE: size-changing operations above were not analysed (describe them with register_geometry)"
        lines.append(f"  findings: {len(self.findings)} layer(s) with uneven overlap or skipped inputs; {verdict}")
        lines += [f"  note: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.table())}</pre>"


# ----------------------------------------------------------------------------------------------- functional calls
def _function_geometry(node: fx.Node, shapes: dict[str, Any]) -> Sampling | None:
    target, args, kwargs = node.target, node.args, node.kwargs

    def arg(i: int, name: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(name, default)

    name = getattr(target, "__name__", str(target))
    if target in (F.max_pool2d, torch.max_pool2d) or name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
        k = arg(1, "kernel_size", 1)
        return single(
            name, "pool", k, arg(2, "stride", None) or k, arg(3, "padding", 0), arg(4, "dilation", 1), note="count model"
        )
    if target in (F.avg_pool2d, torch._C._nn.avg_pool2d) or name == "avg_pool2d":
        k = pair(arg(1, "kernel_size", 1))
        return fixed_filter(name, torch.ones(k) / (k[0] * k[1]), arg(2, "stride", None) or k, arg(3, "padding", 0))
    if target in (F.conv2d, torch.conv2d):
        w = shapes.get(getattr(arg(1, "weight", None), "name", ""))
        if w is None:
            return None
        p = arg(4, "padding", 0)
        p = (0, 0) if isinstance(p, str) else p
        return single("conv2d", "conv", (int(w[2]), int(w[3])), arg(3, "stride", 1), p, arg(5, "dilation", 1), note="count model")
    if target is F.interpolate:
        sf = arg(2, "scale_factor", None)
        if sf:
            factor = int(sf if not isinstance(sf, tuple | list) else sf[0])
            return single("interpolate", "upsample", factor, factor) if factor >= 2 else None
    if target in (F.pixel_shuffle, torch.pixel_shuffle):
        r = int(arg(1, "upscale_factor", 2))
        return single("pixel_shuffle", "upsample", r, r)
    return None


class _Tracer(fx.Tracer):
    """Registered layers are analysed as one unit, never traced into."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return registered(m) or super().is_leaf_module(m, qualname)


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


# ----------------------------------------------------------------------------------------------- propagation
def _stage_lengths(stages: list[Geometry], n_in: int, n_out: int) -> list[int]:
    """Lengths before each stage and after the last: n_in, ..., n_out (intermediate ones from the strides)."""
    lengths = [n_in]
    for g in stages[:-1]:
        n = lengths[-1]
        lengths.append(n * g.stride if g.kind in ("transposed", "upsample") else max(1, -(-n // g.stride)))
    return lengths + [n_out]


def _backward_rule(sampling: Sampling | str, axis: int, upstream: Tensor, n_in: int) -> Tensor:
    if sampling == ADAPTIVE:
        out = torch.zeros(n_in, dtype=torch.float64)
        for j, (a, b) in enumerate(adaptive_windows(n_in, len(upstream))):
            out[a:b] += upstream[j]
        return out
    assert isinstance(sampling, Sampling)
    stages = sampling.axis(axis)
    lengths = _stage_lengths(stages, n_in, len(upstream))
    counts = upstream
    for g, n in zip(reversed(stages), reversed(lengths[:-1])):
        counts = (
            scatter_taps(counts, g, n, circular=True) if g.kind in ("conv", "pool") else gather_taps(counts, g, n, circular=True)
        )
    return counts


def _forward_rule(sampling: Sampling | str, axis: int, counts: Tensor, n_out: int) -> Tensor:
    if sampling == ADAPTIVE:
        return torch.stack([counts[a:b].sum() for a, b in adaptive_windows(len(counts), n_out)])
    assert isinstance(sampling, Sampling)
    stages = sampling.axis(axis)
    lengths = _stage_lengths(stages, len(counts), n_out)
    for g, n in zip(stages, lengths[1:]):
        counts = (
            gather_taps(counts, g, n, circular=True) if g.kind in ("conv", "pool") else scatter_taps(counts, g, n, circular=True)
        )
    return counts


def _resize(counts: Tensor, n: int) -> Tensor:
    """Uniform stand-in where the graph changes the size in a way the lint does not model (reported as such)."""
    return torch.full((n,), float(counts.mean()) if len(counts) else 1.0, dtype=torch.float64)


INPUT_FORMS = "an int (side), (H, W), (C, H, W), (N, C, H, W) or an example tensor / array of one of those shapes"


def example_input(model: nn.Module, input: object = 32, in_channels: int | None = None) -> Tensor:
    """The (1, C, H, W) zeros ``lint`` traces with, from any of ``INPUT_FORMS`` (torchinfo, fvcore and
    ``torch.export`` users pass an example tensor or an NCHW shape). Channels: from the input when it has them, else
    ``in_channels``, else the first convolution's (3 if there is none). InputError for anything else."""
    shape: tuple
    if isinstance(input, Tensor) or hasattr(input, "__array__") and hasattr(input, "shape"):
        shape = tuple(int(v) for v in input.shape)  # type: ignore[attr-defined]
        if len(shape) not in (2, 3, 4):
            raise InputError(f"an example input of shape {shape} is not an image batch; give {INPUT_FORMS}")
    elif isinstance(input, bool) or not isinstance(input, int | tuple | list | torch.Size):
        raise InputError(f"input {input!r} is not a size; give {INPUT_FORMS}")
    else:
        shape = (input,) if isinstance(input, int) else tuple(input)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in shape) or len(shape) not in (1, 2, 3, 4):
            raise InputError(f"input {input!r} is not a size; give {INPUT_FORMS}")
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    if any(v < 1 for v in shape) or max(shape[-2:]) > 8192:
        raise InputError(f"input size {shape} must be positive and at most 8192 pixels a side; give {INPUT_FORMS}")
    h, w = shape[-2:]
    channels = shape[-3] if len(shape) >= 3 else in_channels
    if channels is None:
        first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
        channels = first.in_channels if first is not None else 3
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return torch.zeros(1, channels, h, w, device=device)


def lint(model: nn.Module, input: object = 32, in_channels: int | None = None, name: str | None = None) -> LintReport:
    """Lint ``model`` for uneven overlap. ``input``: an int, (H, W), (C, H, W), (N, C, H, W), or an example tensor
    or numpy array of one of those shapes (its channels are used); ``in_channels`` when the input has none.

        >>> import torch, torchvision
        >>> report = lint(torchvision.models.resnet18(), (1, 3, 64, 64))
        >>> report.input_size, report.predicted_periods
        ((64, 64), [2])
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    return lint_model(model, example_input(model, input, in_channels), name or type(model).__name__)


def lint_model(model: nn.Module, example: Tensor, name: str = "model") -> LintReport:
    """Lint ``model`` for uneven overlap, tracing it with ``example`` (1, C, H, W)."""
    was_training = model.training
    model = model.eval()
    try:
        return _lint_fx(model, example, name)
    finally:
        model.train(was_training)


def _lint_fx(model: nn.Module, example: Tensor, name: str) -> LintReport:
    try:
        graph = _Tracer().trace(model)
        gm = fx.GraphModule(model, graph)
        from torch.fx.passes.shape_prop import ShapeProp

        # ShapeProp prints a traceback of its own before it re-raises: the hooks path below reports the error.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
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

    geometry: dict[fx.Node, Sampling | str] = {}
    layers: list[SamplingLayer] = []
    unanalysed: list[str] = []
    for node in nodes:
        found: Sampling | None = None
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        if module is not None:
            found = module_geometry(module)
        elif node.op == "call_function":
            found = _function_geometry(node, shapes)
        label = str(node.target) if module is not None else f"{node.name} ({getattr(node.target, '__name__', node.target)})"
        if found is None and isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            geometry[node] = ADAPTIVE
            continue
        if found is not None:
            geometry[node] = found
            if found.kind != "same":
                layers.append(SamplingLayer(label, found))
            continue
        inputs = [s for s in _tensor_inputs(node) if sizes.get(s)]
        if node.op in ("call_module", "call_function", "call_method") and sizes.get(node) and inputs:
            before, after = sizes[inputs[0]], sizes[node]
            if before != after:
                unanalysed.append(f"{label}, spatial {before[0]}x{before[1]} -> {after[0]}x{after[1]}")

    input_node = next(n for n in nodes if n.op == "placeholder")
    in_size = sizes[input_node] or (example.shape[-2], example.shape[-1])
    backward = [_propagate_backward(nodes, sizes, geometry, axis) for axis in (0, 1)]
    gradient = MapSummary(
        backward[0].get(input_node, torch.ones(in_size[0], dtype=torch.float64)),
        backward[1].get(input_node, torch.ones(in_size[1], dtype=torch.float64)),
    )
    output_node = next(n for n in nodes if n.op == "output")
    outs = [n for n in _tensor_inputs(output_node) if sizes.get(n)]
    forward_output = None
    if outs:
        fwd = [_propagate_forward(nodes, sizes, geometry, input_node, axis) for axis in (0, 1)]
        forward_output = MapSummary(fwd[0][outs[0]], fwd[1][outs[0]])
    return LintReport(name, tuple(in_size), "fx", layers, gradient, forward_output, _model_notes(layers), unanalysed)


def _model_notes(layers: list[SamplingLayer]) -> list[str]:
    notes = {layer.sampling.note for layer in layers if layer.sampling.note and layer.sampling.note != "fixed filter"}
    out = [n for n in sorted(notes) if not n.startswith("count model") and n != "max pool: count model; blur: fixed filter"]
    if any(n.startswith("count model") or n.startswith("max pool") for n in notes):
        out.insert(
            0, "learned convolutions and max pools use the count model: the idealised map (trained weights may even it out)"
        )
    return out


def _propagate_backward(nodes: list[fx.Node], sizes: dict, geometry: dict, axis: int) -> dict[fx.Node, Tensor]:
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
        inputs = _tensor_inputs(node)
        for src in inputs:
            src_size = sizes.get(src)
            if not src_size:
                continue
            n_in = src_size[axis]
            if upstream is None:
                contribution = torch.ones(n_in, dtype=torch.float64)
            elif node in geometry and src is inputs[0]:
                contribution = _backward_rule(geometry[node], axis, upstream, n_in)
            elif len(upstream) == n_in:
                contribution = upstream
            else:
                contribution = _resize(upstream, n_in)  # reported in ``unanalysed``
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
            maps[node] = _forward_rule(geometry[node], axis, maps[srcs[0]], n_out)
            continue
        total = torch.zeros(n_out, dtype=torch.float64)
        for s in srcs:
            m = maps[s]
            total += m if len(m) == n_out else _resize(m, n_out)
        maps[node] = total
    return maps


def _lint_with_hooks(model: nn.Module, example: Tensor, name: str, why: str) -> LintReport:
    """Fallback: registered layers in execution order with their sizes, composed as a chain; every module whose
    size change no registered descendant explains is reported as not analysed."""
    calls: list[tuple[str, nn.Module, tuple[int, int], tuple[int, int] | None]] = []
    inside_registered = _names_inside_registered(model)
    hooks = []

    def record(mod_name: str):
        def hook(mod: nn.Module, inp: tuple, out: Any) -> None:
            x = inp[0] if inp and isinstance(inp[0], Tensor) else None
            if x is not None and x.ndim == 4:
                out_t = out[0] if isinstance(out, tuple | list) else out
                out_size = tuple(out_t.shape[-2:]) if isinstance(out_t, Tensor) and out_t.ndim == 4 else None
                calls.append((mod_name, mod, tuple(x.shape[-2:]), out_size))  # type: ignore[arg-type]

        return hook

    for mod_name, m in model.named_modules():
        if mod_name and mod_name not in inside_registered:
            hooks.append(m.register_forward_hook(record(mod_name)))
    try:
        with torch.no_grad():
            out = model(example)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(
            f"{name} cannot run on an input of shape {tuple(example.shape)}: {first}; check the input size and channels"
        ) from None
    finally:
        for h in hooks:
            h.remove()
    # Forward hooks fire when a module returns, so registered layers (never traced into) come in execution order.
    sampled = [(n, m, module_geometry(m), i, o) for n, m, i, o in calls if registered(m)]
    sampled = [(n, m, g, i, o) for n, m, g, i, o in sampled if g is not None]
    layers = [SamplingLayer(n, g) for n, _, g, _, _ in sampled if g.kind != "same"]
    changed = {n for n, _, i, o in calls if o is not None and i != o}
    unanalysed = [
        f"{n} ({type(m).__name__}), spatial {i[0]}x{i[1]} -> {o[0]}x{o[1]}"
        for n, m, i, o in calls
        if n in changed
        and not registered(m)
        and not isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
        and not any(c.startswith(n + ".") for c in changed)
    ]
    maps = []
    for axis in (0, 1):
        last = sampled[-1] if sampled else None
        counts = torch.ones(last[4][axis] if last and last[4] else example.shape[-2 + axis], dtype=torch.float64)
        for _, _, g, i, o in reversed(sampled):
            n_out = o[axis] if o else len(counts)
            counts = _backward_rule(g, axis, counts if len(counts) == n_out else _resize(counts, n_out), i[axis])
        maps.append(counts if sampled else torch.ones(example.shape[-2 + axis], dtype=torch.float64))
    forward = None
    if isinstance(out, Tensor) and out.ndim == 4:
        fwd = []
        for axis in (0, 1):
            counts = torch.ones(example.shape[-2 + axis], dtype=torch.float64)
            for _, _, g, i, o in sampled:
                counts = counts if len(counts) == i[axis] else _resize(counts, i[axis])
                counts = _forward_rule(g, axis, counts, o[axis] if o else i[axis])
            fwd.append(counts if len(counts) == out.shape[-2 + axis] else _resize(counts, out.shape[-2 + axis]))
        forward = MapSummary(fwd[0], fwd[1])
    return LintReport(
        name,
        (example.shape[-2], example.shape[-1]),
        "hooks (approximate: branches composed as a chain)",
        layers,
        MapSummary(maps[0], maps[1]),
        forward,
        [why, *_model_notes(layers)],
        unanalysed,
    )


def _names_inside_registered(model: nn.Module) -> set[str]:
    inside: set[str] = set()
    for name, m in model.named_modules():
        if name and registered(m):
            inside.update(f"{name}.{child}" for child, _ in m.named_modules() if child)
    return inside
