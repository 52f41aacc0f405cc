"""Exact overlap maps of up- and down-sampling layers (Odena, Dumoulin, Olah 2016), 1-D and 2-D.

A layer is a ``Geometry`` per axis: kernel k, stride s, padding p, dilation d. Input position i and tap t meet
output position o = i*s - p + t*d.

* Forward pass of a transposed convolution (upsampling): output o receives one contribution per (i, t) meeting
  it: ``scatter_taps``. Uneven when k is not divisible by s; a stack multiplies the counts along paths.
* Gradient pass of a strided convolution or pooling (downsampling): d out / d in is a transposed convolution, so
  input i receives one gradient contribution per output window covering it: again ``scatter_taps``, applied from
  the output back to the input. k < s leaves inputs with zero contributions ("skips inputs").

2-D maps are the outer product of the per-axis 1-D maps (the layers are separable in their count structure); the
max/min ratio of a 2-D map is the product of the axes' ratios (2:1 in 1-D becomes 4:1 in 2-D for k=3, s=2).

Taps carry weights. Learned convolutions use the *count model* (every tap weighs 1: the idealised map of a layer
whose weights are not known in advance); layers with fixed filters (blur pool, average pool, zero-order hold, a
frozen depthwise kernel) carry their actual filter, so a binomial [1, 2, 1] / 4 at stride 2 comes out even, as
autograd says it is. Evenness is decided by the *phase sums*: input phase r = (i + p) mod s receives
sum_{t : t*d = r (mod s)} w_t per output window; equal sums are even, a zero sum skips inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Geometry:
    """One axis of a sampling layer. ``kind``: conv | pool | transposed | upsample."""

    kind: str
    kernel: int
    stride: int
    padding: int = 0
    dilation: int = 1
    output_padding: int = 0
    weights: tuple[float, ...] | None = None  # per-tap weights (fixed filters); None: the count model, all 1

    def __post_init__(self) -> None:
        if self.weights is not None and len(self.weights) != self.kernel:
            raise ValueError(f"{len(self.weights)} tap weights for a kernel of {self.kernel}")

    @property
    def span(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    @property
    def taps(self) -> tuple[float, ...]:
        return self.weights if self.weights is not None else (1.0,) * self.kernel

    @property
    def phase_sums(self) -> tuple[float, ...]:
        """Total tap weight that lands on each of the ``stride`` phases of the input (gradient) or output (forward)."""
        sums = [0.0] * self.stride
        for t, w in enumerate(self.taps):
            sums[(t * self.dilation) % self.stride] += abs(w)
        return tuple(sums)

    @property
    def uneven(self) -> bool:
        """Some phases get more (weighted) contributions than others: k = 3 at s = 2 with equal taps, not [1, 2, 1]."""
        sums = self.phase_sums
        return self.stride > 1 and min(sums) > 0 and max(sums) > min(sums) * (1 + 1e-9)

    @property
    def skips(self) -> bool:
        """Some phase gets nothing: those inputs are never read (and get no gradient), e.g. k < s."""
        return self.stride > 1 and min(self.phase_sums) == 0

    def forward_length(self, n: int) -> int:
        if self.kind in ("transposed", "upsample"):
            return (n - 1) * self.stride - 2 * self.padding + self.span + self.output_padding
        return (n + 2 * self.padding - self.span) // self.stride + 1


def scatter_taps(counts: Tensor, g: Geometry, out_length: int, circular: bool = False) -> Tensor:
    """Each position i of ``counts`` (L_in,) adds counts[i] to o = i*s - p + t*d for every tap t. -> (out_length,).

    ``circular``: positions wrap around (an idealised infinite, periodic signal: the pattern without its edges).
    """
    out = torch.zeros(out_length, dtype=counts.dtype)
    base = torch.arange(len(counts)) * g.stride - g.padding
    for t, w in enumerate(g.taps):
        o = base + t * g.dilation
        if circular:
            out.index_add_(0, o % out_length, counts * w)
        else:
            ok = (o >= 0) & (o < out_length)
            out.index_add_(0, o[ok], counts[ok] * w)
    return out


def gather_taps(counts: Tensor, g: Geometry, out_length: int, circular: bool = False) -> Tensor:
    """Each output o sums counts[i] over i = o*s - p + t*d inside the input (zero padding, or wrapping around
    with ``circular``). -> (out_length,)."""
    out = torch.zeros(out_length, dtype=counts.dtype)
    base = torch.arange(out_length) * g.stride - g.padding
    for t, w in enumerate(g.taps):
        i = base + t * g.dilation
        if circular:
            out += counts[i % len(counts)] * w
        else:
            ok = (i >= 0) & (i < len(counts))
            out[ok] += counts[i[ok]] * w
    return out


def adaptive_windows(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """[start, end) of each output window of an adaptive pooling from n_in to n_out positions (PyTorch's rule)."""
    return [((j * n_in) // n_out, -((-(j + 1) * n_in) // n_out)) for j in range(n_out)]


def transposed_overlap_1d(layers: list[Geometry], length: int) -> Tensor:
    """Overlap counts at the output of a stack of transposed convolutions fed ``length`` positions. -> (L_out,)."""
    counts = torch.ones(length, dtype=torch.float64)
    for g in layers:
        counts = scatter_taps(counts, g, g.forward_length(len(counts)))
    return counts


def gradient_overlap_1d(layers: list[Geometry], length: int) -> Tensor:
    """Gradient contributions at each input position of a stack of strided convolutions/poolings applied to
    ``length`` positions, with a uniform gradient at the output. -> (length,)."""
    lengths = [length]
    for g in layers:
        lengths.append(g.forward_length(lengths[-1]))
    if lengths[-1] < 1:
        raise ValueError(f"the stack reduces {length} positions to nothing")
    counts = torch.ones(lengths[-1], dtype=torch.float64)
    for g, n_in in zip(reversed(layers), reversed(lengths[:-1])):
        counts = scatter_taps(counts, g, n_in)
    return counts


def overlap_2d(rows: Tensor, cols: Tensor) -> Tensor:
    """2-D overlap map from the per-axis 1-D maps: outer product. (H,), (W,) -> (H, W)."""
    return torch.outer(rows, cols)


def interior(counts: Tensor) -> Tensor:
    """The central half of a 1-D map, away from padding effects at the borders."""
    n = len(counts)
    lo = n // 4
    return counts[lo : max(n - lo, lo + 1)]


def overlap_ratio(counts: Tensor) -> float:
    """max / min of the interior of a 1-D map (inf when some interior position gets nothing)."""
    c = interior(counts)
    lo = float(c.min())
    return float("inf") if lo == 0 else float(c.max()) / lo


def overlap_period(counts: Tensor) -> int:
    """Smallest period of the interior of a 1-D map (1 = even); 0 if none is found within half its length."""
    c = interior(counts)
    for p in range(1, max(len(c) // 2, 1) + 1):
        if torch.allclose(c[p:], c[: len(c) - p]):
            return p
    return 0


# ----------------------------------------------------------------------------------------------- lattice periods
EVEN_TOLERANCE = 1e-9  # relative non-DC power below which a map counts as even
DOMINANT_SHARE = 0.5  # a lattice is dominant when it holds at least this share of the non-DC power


def phase_profile(counts: Tensor, period: int) -> Tensor:
    """Mean of a 1-D map's interior over each phase i mod P: (L,) -> (P,). The period-P part of the map."""
    c = interior(counts.double())
    start = len(counts) // 4  # interior() starts here: phases stay aligned with the map's own positions
    phase = (torch.arange(len(c)) + start) % period
    return torch.zeros(period, dtype=torch.float64).index_add_(0, phase, c) / torch.bincount(phase, minlength=period).clamp_min(1)


def lattice_shares_1d(counts: Tensor) -> dict[int, float]:
    """Share of a 1-D map's variance explained by its phase mod P, for P = 2 .. a quarter of the interior.

    (L,) -> {P: share in [0, 1]} on the interior (central half), ascending P; empty for an even map. On a periodic
    map whose length P divides, this is exactly the DFT's share of the non-DC power on the period-P lattice; unlike
    the DFT it is not fooled by borders or by lengths that strides do not divide (224 -> 55 -> 27 ...).
    """
    c = interior(counts.double())
    total = float(((c - c.mean()) ** 2).mean())
    scale = float(c.square().mean()) or 1.0
    if len(c) < 4 or total <= EVEN_TOLERANCE * scale:
        return {}
    out = {}
    start = len(counts) // 4
    for p in range(2, max(2, len(c) // 2) + 1):
        phase = (torch.arange(len(c)) + start) % p
        means = phase_profile(counts, p)
        out[p] = min(1.0, float(((means[phase] - c.mean()) ** 2).mean()) / total)
    return out


def dominant_period(counts: Tensor, min_share: float = DOMINANT_SHARE) -> tuple[int, float]:
    """The smallest period whose lattice holds at least ``min_share`` of the non-DC power, and that share.

    (1, 0.0) for an even map. A map alternating 0.7 / 1.0 under a slow modulation has dominant period 2 even though
    its exact period is longer: what makes a visible checkerboard is where the power sits, not the repeat length.
    """
    for p, share in lattice_shares_1d(counts).items():
        if share >= min_share:
            return p, share
    return 1, 0.0


LAYER_LIMIT = 1000  # largest kernel, stride, padding or dilation a layer spec may give (and 64 layers at most)


def parse_layers(spec: str, direction: str = "forward") -> list[Geometry]:
    """``"k,s[,p[,d]];..."`` -> the layers of an overlap stack. ``direction``: "forward" (transposed convolutions;
    default padding (max(k - s, 0) + 1) // 2, an exact s-times upsampling) or "gradient" (strided convolutions seen
    from their input; default padding (k - 1) // 2). ValueError naming the spec and the accepted form otherwise."""
    if direction not in ("forward", "gradient"):
        raise ValueError(f"direction must be 'forward' or 'gradient', got {direction!r}")
    layers = []
    specs = spec.split(";")
    if len(specs) > 64:
        raise ValueError(f"'{spec[:40]}...' has {len(specs)} layers; at most 64")
    for one in specs:
        try:
            parts = [int(v) for v in one.split(",")]
        except ValueError:
            raise ValueError(f"'{one}' must be integers k,s[,p[,d]]") from None
        if (not 2 <= len(parts) <= 4 or parts[0] < 1 or parts[1] < 1 or any(v < 0 for v in parts[2:])
                or (len(parts) == 4 and parts[3] < 1) or max(parts) > LAYER_LIMIT):  # fmt: skip
            raise ValueError(f"'{one}' must be k,s[,p[,d]] with k, s, d >= 1, p >= 0, each at most {LAYER_LIMIT}")
        k, s, p, d = (parts + [None, None])[:4]
        pad = p if p is not None else (max(k - s, 0) + 1) // 2 if direction == "forward" else (k - 1) // 2
        layers.append(Geometry("transposed" if direction == "forward" else "conv", k, s, pad, d or 1))
    return layers
