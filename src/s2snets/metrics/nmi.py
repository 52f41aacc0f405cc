"""Normalised mutual information between images, exact and batched.

For two images a, b quantised to L levels and seen as N paired samples, with counts n_i (levels of a), n_j
(levels of b), n_ij (joint):

    H(a) = log N - (1/N) sum_i n_i log n_i           (natural log)
    I(a; b) = H(a) + H(b) - H(a, b)
    nMI = I / avg(H(a), H(b)),  avg in {arithmetic, geometric, min, max}

exactly as ``sklearn.metrics.normalized_mutual_info_score``, edge cases included: both images constant -> 1,
one constant -> 0. Counting is exact (integer histograms); the sums are float64.

Two counting strategies give identical integers: a dense joint table per pair (fast when N >= L**2 / 4, e.g.
224 x 224 x 3 images) and a per-pixel gather into a reused table (fast for small images such as 32 x 32).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from s2snets.names import NMI_AVERAGES as AVERAGES


def quantize(x: Tensor, levels: int = 256) -> Tensor:
    """Images -> integer levels in [0, levels). uint8 input: floor(x * levels / 256); float input in [0, 1]:
    round(x * (levels - 1)), clipped. (B, ...) -> int64 (B, ...)."""
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if x.dtype == torch.uint8:
        q = x.long()
        return q if levels == 256 else (q * levels) // 256
    if x.is_floating_point():
        return (x.double().clamp(0, 1) * (levels - 1)).round().long()
    q = x.long()
    if int(q.min()) < 0 or int(q.max()) >= levels:
        raise ValueError(f"integer input must lie in [0, {levels})")
    return q


def _xlogx_table(n: int, device: torch.device) -> Tensor:
    k = torch.arange(n + 1, dtype=torch.float64, device=device)
    return torch.xlogy(k, k)


class _Workspace:
    """Buffers reused across chunks: fresh multi-megabyte allocations cost more than the counting itself on a CPU."""

    def __init__(self, rows: int, n: int, levels: int, dense: bool, device: torch.device):
        self.qa = torch.empty(0 if dense else rows, n, dtype=torch.int64, device=device)
        self.qb = torch.empty(0 if dense else rows, n, dtype=torch.int64, device=device)
        self.keys = torch.empty(rows, n, dtype=torch.int64, device=device)
        self.interleaved = torch.empty(rows, n, 2, dtype=torch.uint8, device=device)
        self.ones = torch.ones((), dtype=torch.int32, device=device).expand(rows, n)
        self.minus_ones = torch.full((), -1, dtype=torch.int32, device=device).expand(rows, n)
        cells = levels * levels
        self.joint = torch.zeros(rows, cells, dtype=torch.int32, device=device)
        self.joint_long = torch.empty(rows * cells if dense else 0, dtype=torch.int64, device=device)
        self.gathered = torch.empty(rows * cells if dense else rows * n, dtype=torch.float64, device=device)
        self.pixel_counts = torch.empty(0 if dense else rows, n, dtype=torch.int32, device=device)


def _count_terms(
    xa: Tensor, xb: Tensor, levels: int, lut: Tensor, dense: bool, ws: _Workspace
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per row: sum n log n over a's levels, b's levels and the joint cells, and whether a or b is constant.

    xa, xb: integer levels (B, N). Returns float64 (B,) x3 and bool (B,).
    """
    b, n = xa.shape
    keys, ones = ws.keys[:b], ws.ones[:b]
    if xa.dtype == torch.uint8 and levels == 256:
        # Interleave the bytes (b, a) and read them as one little-endian uint16: a * 256 + b in a single pass.
        pairs_u8 = torch.stack((xb, xa), -1, out=ws.interleaved[:b])
        keys.copy_(pairs_u8.view(torch.uint16).view(b, n))
    else:
        keys.copy_(xa).mul_(levels).add_(xb)  # joint cell index a * levels + b
    joint = ws.joint[:b]
    if dense:  # a full joint table per pair; marginals are its row and column sums
        joint.zero_().scatter_add_(1, keys, ones)
        idx = ws.joint_long[: joint.numel()].copy_(joint.view(-1))
        s_ab = torch.index_select(lut, 0, idx, out=ws.gathered[: idx.numel()]).view(b, -1).sum(1)
        table = joint.view(b, levels, levels)
        n_a, n_b = table.sum(2), table.sum(1)
    else:  # scatter into the all-zero table, read each pixel's cell count, zero the touched cells again
        joint.scatter_add_(1, keys, ones)
        counts = ws.pixel_counts[:b]
        torch.gather(joint, 1, keys, out=counts)
        joint.scatter_add_(1, keys, ws.minus_ones[:b])
        s_ab = ws.gathered[: b * n].view(b, n).copy_(counts).log_().sum(1)  # cell c: n_c pixels of log n_c
        qa, qb = ws.qa[:b].copy_(xa), ws.qb[:b].copy_(xb)
        n_a = torch.zeros(b, levels, dtype=torch.int32, device=xa.device).scatter_add_(1, qa, ones)
        n_b = torch.zeros(b, levels, dtype=torch.int32, device=xa.device).scatter_add_(1, qb, ones)
    constant = (n_a.amax(1) == n) | (n_b.amax(1) == n)
    return lut[n_a.long()].sum(1), lut[n_b.long()].sum(1), s_ab, constant


def nmi(a: Tensor, b: Tensor, levels: int = 256, average: str = "arithmetic", chunk: int | None = None) -> Tensor:
    """nMI of each pair (a[k], b[k]), uint8 or float in [0, 1].

    a, b: batches (B, C, H, W) or (B, H, W) -> float64 (B,) in [0, 1]; one pair of grayscale images (H, W) or of
    flat vectors (N,) -> a 0-dim tensor. (A batch of flat vectors is (B, 1, N); one RGB image, ``x.reshape(-1)``.) Float pixels outside [0, 1] (e.g. 0...255) are an error, not silently clipped.

    >>> import torch
    >>> x = torch.rand(32, 32)
    >>> float(nmi(x, x))
    1.0
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("a and b must be tensors")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got '{average}'")
    if not 2 <= levels <= 65536:
        raise ValueError(f"levels must be in 2...65536, got {levels}")
    if a.numel() == 0:
        raise ValueError("a and b are empty")
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point():
            lo, hi = float(t.min()), float(t.max())
            if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
                raise ValueError(
                    f"{name} holds float pixels in [{lo:g}, {hi:g}]; nmi expects [0, 1] (divide 0...255 images by 255) or uint8"
                )
        elif t.dtype != torch.uint8:
            raise ValueError(f"{name} has dtype {t.dtype}; nmi expects uint8 or float in [0, 1]")
    if a.ndim <= 2:  # one image (H, W) or one flat vector: a single pair
        return nmi(a.reshape(1, 1, -1), b.reshape(1, 1, -1), levels, average, chunk)[0]
    raw = a.dtype == torch.uint8 and b.dtype == torch.uint8 and levels == 256  # already levels: no conversion
    qa = a.flatten(1) if raw else quantize(a, levels).flatten(1)
    qb = b.flatten(1) if raw else quantize(b, levels).flatten(1)
    pairs, n = qa.shape
    device = qa.device
    lut = _xlogx_table(n, device)
    dense = n * 4 >= levels * levels
    chunk = chunk or (16 if dense else 64)
    ws = _Workspace(min(chunk, pairs), n, levels, dense, device)
    out = torch.empty(pairs, dtype=torch.float64, device=device)
    log_n = math.log(n)
    for start in range(0, pairs, chunk):
        s_a, s_b, s_ab, constant = _count_terms(qa[start : start + chunk], qb[start : start + chunk], levels, lut, dense, ws)
        h_a, h_b = log_n - s_a / n, log_n - s_b / n
        mi = (h_a + h_b - (log_n - s_ab / n)).clamp_min(0.0)
        mi = torch.where(constant, torch.zeros_like(mi), mi)  # sklearn: a constant labelling shares nothing
        if average == "arithmetic":
            norm = (h_a + h_b) / 2
        elif average == "geometric":
            norm = torch.sqrt(h_a * h_b)
        elif average == "min":
            norm = torch.minimum(h_a, h_b)
        else:
            norm = torch.maximum(h_a, h_b)
        value = torch.where(mi == 0, torch.zeros_like(mi), mi / norm.clamp_min(torch.finfo(torch.float64).eps))
        both_constant = (h_a == 0) & (h_b == 0)  # sklearn: two constant labellings are a perfect match
        out[start : start + chunk] = torch.where(both_constant, torch.ones_like(value), value)
    return out


def intra_nmi(originals: Tensor, reconstructions: Tensor, levels: int = 256, average: str = "arithmetic") -> Tensor:
    """nMI between each original and its reconstruction. (N, C, H, W) x2 -> float64 (N,)."""
    return nmi(originals, reconstructions, levels, average)


def sample_pairs(labels: Tensor, pairs: int, seed: int = 0, same_class: bool = True) -> Tensor:
    """``pairs`` random index pairs (i, j), i != j, of images of the same class (or of different classes).

    labels: int64 (N,) -> int64 (pairs, 2). Deterministic for a seed.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    out: list[Tensor] = []
    while sum(len(o) for o in out) < pairs:
        i = torch.randint(0, n, (pairs * 2,), generator=g)
        j = torch.randint(0, n, (pairs * 2,), generator=g)
        same = labels[i] == labels[j]
        keep = (i != j) & (same if same_class else ~same)
        out.append(torch.stack([i[keep], j[keep]], 1))
        if not keep.any() and len(out) > 50:
            raise ValueError("no valid pairs: every class has a single image" if same_class else "only one class")
    return torch.cat(out)[:pairs]


def inter_nmi(
    images: Tensor,
    labels: Tensor,
    pairs: int = 500,
    seed: int = 0,
    same_class: bool = True,
    levels: int = 256,
    average: str = "arithmetic",
) -> Tensor:
    """nMI between images of random pairs of *different* images (within a class or across classes).

    A pattern that is constant across reconstructions raises it above the originals' value. (N, C, H, W) -> (pairs,).
    """
    idx = sample_pairs(labels, pairs, seed, same_class)
    return nmi(images[idx[:, 0]], images[idx[:, 1]], levels, average)
