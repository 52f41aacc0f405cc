"""Normalised mutual information between images, exact and batched.

For two images a, b quantised to L levels and seen as N paired samples, with counts n_i (levels of a), n_j
(levels of b), n_ij (joint):

    H(a) = log N - (1/N) sum_i n_i log n_i           (natural log)
    I(a; b) = H(a) + H(b) - H(a, b)
    nMI = I / avg(H(a), H(b)),  avg in {arithmetic, geometric, min, max}

exactly as ``sklearn.metrics.normalized_mutual_info_score``, edge cases included: both images constant -> 1,
one constant -> 0. Counting is exact (integer histograms); the sums are float64.

On the CPU the counts come from compiled loops (``s2snets.metrics.joint_counts``, numba), pairs spread over
``torch.get_num_threads()`` threads; on other devices (CUDA) from tensor operations in two strategies with identical
integers: a dense joint table per pair (fast when N >= L**2 / 4, e.g. 224 x 224 x 3 images) and a per-pixel gather
into a reused table (fast for small images such as 32 x 32). ``backend`` picks one explicitly.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from s2snets.errors import is_count
from s2snets.metrics.count_layout import SPARSE_TABLE_CELLS, dense_layout, layout
from s2snets.metrics.inputs import as_tensor
from s2snets.names import NMI_AVERAGES as AVERAGES
from s2snets.names import NMI_BACKENDS as BACKENDS


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


def _xlogx_table(n: int, device: torch.device, numpy: bool = False) -> Tensor:
    """k log k for k = 0..n, float64: every entropy term is a sum of these over counts (``numpy``: as an array on
    the CPU, for the compiled loops)."""
    cache = _cache()
    key = ("lut", n, str(device), numpy)
    if key not in cache:
        k = torch.arange(n + 1, dtype=torch.float64, device=device)
        cache.clear() if len(cache) > 8 else None
        cache[key] = torch.xlogy(k, k).numpy() if numpy else torch.xlogy(k, k)
    return cache[key]


_local = threading.local()


@functools.cache
def _compiled_available() -> bool:
    """numba is installed (checked without importing it: numba and LLVM load only when a CPU nMI is computed)."""
    return importlib.util.find_spec("numba") is not None


_joint_counts = None


def _kernels():
    """The compiled loops (``joint_counts``), imported on first use: numba and LLVM load only when a CPU nMI is
    computed; later calls pay one global read, not an import statement's look-up."""
    global _joint_counts
    if _joint_counts is None:
        from s2snets.metrics import joint_counts

        _joint_counts = joint_counts
    return _joint_counts


def _cache() -> dict:
    """Per-thread cache of look-up tables and workspaces: a call on one pair must not pay for a 1-MB table."""
    if not hasattr(_local, "cache"):
        _local.cache = {}
    return _local.cache


class _Workspace:
    """Buffers reused across chunks and calls: fresh multi-megabyte allocations cost more than the counting."""

    def __init__(self, rows: int, n: int, levels: int, dense: bool, device: torch.device):
        self.keys = torch.empty(rows, n, dtype=torch.int64, device=device)
        self.keys32 = torch.empty(rows, n, dtype=torch.int32, device=device)
        self.b32 = torch.empty(rows, n, dtype=torch.int32, device=device)
        # Contiguous, not expanded: scatter_add_ takes a slower path for a stride-0 source.
        self.ones = torch.ones(rows, n, dtype=torch.int32, device=device)
        self.minus_ones = torch.full((0 if dense else rows, n), -1, dtype=torch.int32, device=device)
        cells = levels * levels
        self.joint = torch.zeros(rows, cells, dtype=torch.int32, device=device)
        self.gathered = torch.empty(rows * cells if dense else rows * n, dtype=torch.float64, device=device)
        self.pixel_counts = torch.empty(0 if dense else rows, n, dtype=torch.int32, device=device)
        self.marginal = torch.zeros(0 if dense else rows, levels, dtype=torch.int32, device=device)

    @staticmethod
    def get(rows: int, n: int, levels: int, dense: bool, device: torch.device) -> _Workspace:
        cache = _cache()
        key = ("ws", rows, n, levels, dense, str(device))
        if key not in cache:
            for old in [k for k in cache if k[0] == "ws"]:  # one workspace per thread: bounded memory
                del cache[old]
            cache[key] = _Workspace(rows, n, levels, dense, device)
        return cache[key]


def _count_terms(xa: Tensor, xb: Tensor, levels: int, lut: Tensor, dense: bool, ws: _Workspace, out: Tensor) -> None:
    """Per row, into ``out[:, :3]`` (B, 3) float64: sum n log n over a's levels, b's levels and the joint cells.

    xa, xb: integer levels (B, N), uint8 or int64.
    """
    b, n = xa.shape
    keys, ones = ws.keys[:b], ws.ones[:b]
    # The joint cell a * levels + b, computed in int32 (vectorised; int64 multiplies are not on x86) and widened
    # once for scatter_add_, which takes int64 indices only.
    if levels * levels <= 2**31:
        keys.copy_(ws.keys32[:b].copy_(xa).mul_(levels).add_(ws.b32[:b].copy_(xb)))
    else:  # more than 46,340 levels: the cell index needs int64 arithmetic
        keys.copy_(xa).mul_(levels).add_(ws.b32[:b].copy_(xb))
    joint = ws.joint[:b]
    if dense:  # a full joint table per pair; marginals are its row and column sums
        joint.zero_().scatter_add_(1, keys, ones)
        out[:, 2] = torch.index_select(lut, 0, joint.view(-1), out=ws.gathered[: joint.numel()]).view(b, -1).sum(1)
        table = joint.view(b, levels, levels)
        n_a, n_b = table.sum(2, dtype=torch.int32), table.sum(1, dtype=torch.int32)
    else:  # scatter into the all-zero table, read each pixel's cell count, zero the touched cells again
        joint.scatter_add_(1, keys, ones)
        counts = ws.pixel_counts[:b]
        torch.gather(joint, 1, keys, out=counts)
        joint.scatter_add_(1, keys, ws.minus_ones[:b])
        out[:, 2] = ws.gathered[: b * n].view(b, n).copy_(counts).log_().sum(1)  # cell c: n_c pixels of log n_c
        n_a = ws.marginal[:b].zero_().scatter_add_(1, keys.copy_(xa), ones).clone()
        n_b = ws.marginal[:b].zero_().scatter_add_(1, keys.copy_(xb), ones)
    out[:, 0] = torch.index_select(lut, 0, n_a.view(-1)).view(b, -1).sum(1)
    out[:, 1] = torch.index_select(lut, 0, n_b.view(-1)).view(b, -1).sum(1)


def _sorted_terms(xa: Tensor, xb: Tensor, levels: int, lut: Tensor, out: Tensor) -> None:
    """``_count_terms`` without a table, for many levels (a 65,536-level table would be 17 GB per pair): the keys of
    all rows, offset by row, sorted and counted once. xa, xb (B, N) int64 -> out[:, :3] (B, 3); memory O(B N)."""
    rows = xa.shape[0]
    row = torch.arange(rows, device=xa.device)[:, None]
    for column, (keys, span) in enumerate(((xa, levels), (xb, levels), (xa * levels + xb, levels * levels))):
        values, counts = torch.unique((keys + row * span).view(-1), return_counts=True)
        out[:, column] = torch.zeros(rows, dtype=torch.float64, device=xa.device).index_add_(0, values // span, lut[counts])


def _torch_terms(qa: Tensor, qb: Tensor, levels: int, raw: bool, chunk: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Entropy terms (P, 3) and constancy flags (P,), (P,) with tensor operations, on any device."""
    pairs, n = qa.shape
    device = qa.device
    lut = _xlogx_table(n, device)
    dense = dense_layout(n, levels)
    if not dense and levels * levels > SPARSE_TABLE_CELLS:
        count = lambda xa, xb, out: _sorted_terms(xa.long(), xb.long(), levels, lut, out)  # noqa: E731
        chunk = chunk or 64
    else:
        # Dense: a 256 KB joint table per pair; on the CPU a chunk of 3 pairs at 224x224x3 keeps the ~11 MB workspace
        # small. On a GPU each chunk is a few kernel launches and a sync: chunks of ~100 pairs (~0.4 GB) keep it busy.
        if device.type == "cpu":
            chunk = chunk or (max(1, min(16, (1 << 19) // n)) if dense else 64)
        else:
            chunk = chunk or (max(1, (1 << 24) // n) if dense else max(64, min(1024, (1 << 24) // n)))
        ws = _Workspace.get(min(chunk, pairs), n, levels, dense, device)
        count = lambda xa, xb, out: _count_terms(xa, xb, levels, lut, dense, ws, out)  # noqa: E731
    terms = torch.zeros(pairs, 3, dtype=torch.float64, device=device)
    flat_a, flat_b = torch.zeros(pairs, dtype=torch.bool, device=device), torch.zeros(pairs, dtype=torch.bool, device=device)
    for start in range(0, pairs, chunk):
        xa, xb = qa[start : start + chunk], qb[start : start + chunk]
        if not raw:
            xa, xb = quantize(xa, levels), quantize(xb, levels)
        fa, fb = (x.amin(1) == x.amax(1) for x in (xa, xb))  # two vectorised passes; aminmax(dim) is far slower
        flat_a[start : start + chunk], flat_b[start : start + chunk] = fa, fb
        todo = ~(fa | fb)  # a constant image shares nothing: its nMI is known without counting
        if bool(todo.all()):
            count(xa, xb, terms[start : start + chunk])
        elif bool(todo.any()):
            part = torch.empty(int(todo.sum()), 3, dtype=torch.float64, device=device)
            count(xa[todo], xb[todo], part)
            terms[start : start + chunk][todo] = part
    return terms, flat_a, flat_b


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _executor(threads: int) -> ThreadPoolExecutor:
    """One pool for the process, grown when more threads are asked for."""
    global _pool
    if _pool is None or _pool[0] < threads:
        if _pool is not None:
            _pool[1].shutdown(wait=False)
        _pool = (threads, ThreadPoolExecutor(threads, thread_name_prefix="s2snets-nmi"))
    return _pool[1]


def _compiled_workspace(n: int, levels: int):
    """This thread's buffers for the compiled loops (one per thread: bounded memory)."""
    joint_counts = _kernels()
    cache = _cache()
    ws = cache.get("joint_counts")
    if ws is None or ws.key[:2] != (n, levels):
        ws = cache["joint_counts"] = joint_counts.Workspace(n, levels, layout(n, levels))
    return ws


def _compiled_rows(xa: np.ndarray, xb: np.ndarray, levels: int, lut: np.ndarray, terms: np.ndarray, flat: np.ndarray) -> None:
    """One thread's share: the rows of xa, xb counted into terms and flat with this thread's workspace."""
    joint_counts = _kernels()
    joint_counts.count_terms(xa, xb, levels, lut, _compiled_workspace(xa.shape[1], levels), terms, flat)


def _compiled_nmi(qa: Tensor, qb: Tensor, levels: int, raw: bool, chunk: int | None, average: str) -> Tensor:
    """nMI from the compiled loops. A call that fits one chunk on one thread (one pair per call, as scikit-learn
    users call it) is counted and finished in one compiled call: its fixed cost is one dispatch, not a dozen."""
    joint_counts = _kernels()
    pairs, n = qa.shape
    code = AVERAGES.index(average)
    if pairs * n <= (chunk or 1 << 22) and (pairs == 1 or torch.get_num_threads() == 1):
        out = np.empty(pairs, np.float64)
        lut, ws, log_n = _one_call_setup(n, levels)
        joint_counts.nmi_in_one_call(_compiled_input(qa, levels, raw), _compiled_input(qb, levels, raw), levels, lut, ws, log_n,
                                     code, out)  # fmt: skip
        return torch.from_numpy(out)
    terms, flat = _compiled_terms(qa, qb, levels, raw, chunk)
    out = np.empty(len(terms), np.float64)
    joint_counts.finish(terms, flat, n, math.log(n), code, out)
    return torch.from_numpy(out)


def _compiled_input(x: Tensor, levels: int, raw: bool) -> np.ndarray:
    """Rows (R, N) as the numpy array the compiled loops read: uint8 levels as they are; float32/float64 pixels as
    they are (quantised row by row inside the loops: no float64 or int64 copy, which cost 15-30x the count itself);
    bfloat16 and float16 as their 16-bit patterns (uint16 and int16, decoded by the loops: half the bytes of a
    float32 copy); other integer levels through ``quantize``."""
    if raw:
        return x.contiguous().numpy()
    if not x.is_floating_point():
        return quantize(x, levels).contiguous().numpy()
    if x.dtype == torch.bfloat16:
        return x.contiguous().view(torch.int16).numpy().view(np.uint16)
    if x.dtype == torch.float16:
        return x.contiguous().view(torch.int16).numpy()
    return (x if x.dtype in (torch.float32, torch.float64) else x.float()).contiguous().numpy()  # float8: exact


def _read_in_place(x: Tensor, raw: bool) -> bool:
    """Whether ``_compiled_input`` hands x to the loops without a copy."""
    return x.is_contiguous() and (raw or x.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16))


def _compiled_terms(qa: Tensor, qb: Tensor, levels: int, raw: bool, chunk: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Entropy terms (P, 3) and constancy flags (P, 2) from the compiled loops, rows spread over threads."""
    pairs, n = qa.shape
    lut = _xlogx_table(n, qa.device, numpy=True)
    terms = np.zeros((pairs, 3), np.float64)
    flat = np.zeros((pairs, 2), np.bool_)
    # Only a quantised or non-contiguous chunk is copied: at most ~32 MB of int64 per image set at a time. Inputs the
    # loops read as they are need no chunks: one split over the threads, without a wait for the slowest at each chunk's
    # end (15 % of the 2-thread time at 224 x 224 x 3).
    chunk = chunk or (pairs if _read_in_place(qa, raw) and _read_in_place(qb, raw) else max(1, (1 << 22) // n))
    threads = max(1, min(torch.get_num_threads(), pairs))
    for start in range(0, pairs, chunk):
        na, nb = _compiled_input(qa[start : start + chunk], levels, raw), _compiled_input(qb[start : start + chunk], levels, raw)
        t, f = terms[start : start + chunk], flat[start : start + chunk]
        rows = len(na)
        if threads == 1 or rows == 1:
            _compiled_rows(na, nb, levels, lut, t, f)
            continue
        bounds = np.linspace(0, rows, min(threads, rows) + 1).astype(int)
        jobs = [
            _executor(threads).submit(_compiled_rows, na[lo:hi], nb[lo:hi], levels, lut, t[lo:hi], f[lo:hi])
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
        for job in jobs:
            job.result()
    return terms, flat


def nmi(
    a: Tensor, b: Tensor, levels: int = 256, average: str = "arithmetic", chunk: int | None = None, backend: str = "auto"
) -> Tensor:
    """nMI of each pair (a[k], b[k]), uint8 or float in [0, 1].

    a, b: tensors, numpy arrays (or lists of numbers, as scikit-learn takes), batches (B, C, H, W) or (B, H, W) -> float64 (B,) in [0, 1]; one pair of grayscale images (H, W) or of
    flat vectors (N,) -> a 0-dim tensor. (A batch of flat vectors is (B, 1, N); one RGB image, ``x.reshape(-1)``.)
    Float pixels outside [0, 1] (e.g. 0...255) are an error, not silently clipped. Exact (scikit-learn's
    ``normalized_mutual_info_score`` on the quantised levels, to float64 rounding); memory is bounded by ``chunk``
    pairs at a time, whatever B. ``backend``: 'numba' (compiled loops, CPU tensors), 'torch' (tensor operations,
    any device) or 'auto' (numba for CPU tensors where it is installed, else torch).

    >>> import torch
    >>> x = torch.rand(32, 32)
    >>> float(nmi(x, x))
    1.0
    """
    one = _one_pair_fast(a, b, levels, average, backend) if chunk is None else None
    if one is not None:
        return one
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    _check_arguments(a, b, levels, average, chunk, backend)
    if a.ndim <= 2:  # one image (H, W) or one flat vector: a single pair
        return _nmi_rows(a.reshape(1, -1), b.reshape(1, -1), levels, average, chunk, backend)[0]
    return _nmi_rows(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), levels, average, chunk, backend)


def _check_arguments(a: Tensor, b: Tensor, levels: int, average: str, chunk: int | None, backend: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"a and b must be on one device, got {a.device} and {b.device}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got '{average}'")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got '{backend}'")
    if backend == "numba" and (a.device.type != "cpu" or not _compiled_available()):
        raise ValueError("backend='numba' needs CPU tensors and numba installed; use backend='torch' or 'auto'")
    if not is_count(levels, 2) or levels > 65536:
        raise ValueError(f"levels must be an int in 2...65536, got {levels!r}")
    if a.numel() == 0:
        raise ValueError("a and b are empty")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for name, t in (("a", a), ("b", b)):
        if t.layout != torch.strided:
            raise ValueError(f"{name} is a {t.layout} tensor; nmi takes dense images (x.to_dense())")
        if not t.is_floating_point() and t.dtype != torch.uint8:
            raise ValueError(f"{name} has dtype {t.dtype}; nmi expects uint8 or float in [0, 1]")


def _one_call_setup(n: int, levels: int) -> tuple:
    """(k log k table, workspace, log n) of one compiled call on pairs of n pixels, cached per thread under one key:
    a per-call path pays one dictionary look-up for them, not three."""
    cache = _cache()
    setup = cache.get(("one_call", n, levels))
    if setup is None:
        setup = (_xlogx_table(n, torch.device("cpu"), numpy=True), _compiled_workspace(n, levels), math.log(n))
        cache[("one_call", n, levels)] = setup
    return setup


def _one_pair_fast(a, b, levels: int, average: str, backend: str) -> Tensor | None:
    """The per-call path scikit-learn users take: one pair (H, W) or (N,) of CPU tensors (uint8, float32, float64,
    bfloat16, float16) or numpy arrays (uint8, float32, float64, float16), contiguous, straight into one compiled call whose
    fixed arguments this thread prepared once for the size and options (``_one_call_plan``). Every check here is an
    attribute read, since at 32 x 32 the count itself takes about 7 us; None sends the call down the general path,
    which checks everything and names what is wrong (float pixels outside [0, 1] are found by the compiled loop, then
    named there)."""
    if type(a) is Tensor and type(b) is Tensor:
        if a.ndim > 2 or not (a.is_cpu and b.is_cpu) or a.requires_grad or b.requires_grad:
            return None
        if a.dtype is not b.dtype or a.shape != b.shape or not (a.is_contiguous() and b.is_contiguous()):
            return None
        n = a.numel()
        plan = _one_call_plan(a.dtype, n, levels, average, backend)
        if plan is None:
            return None
        out = np.empty(1, np.float64)
        counted = plan[0](a.data_ptr(), b.data_ptr(), n, *plan[1], out)  # the tensors' memory: no numpy views
    elif type(a) is np.ndarray and type(b) is np.ndarray:
        if a.ndim > 2 or a.dtype != b.dtype or a.shape != b.shape or not (_plain(a) and _plain(b)):
            return None
        plan = _one_call_plan(a.dtype, a.size, levels, average, backend)
        if plan is None:
            return None
        out = np.empty(1, np.float64)
        read_a, read_b = (a.view(np.int16), b.view(np.int16)) if a.dtype == np.float16 else (a, b)  # numba has no
        counted = plan[0](read_a.reshape(1, -1), read_b.reshape(1, -1), *plan[1], out)  # float16 arrays: read its bits
    else:
        return None
    if not counted:
        _check_pixel_range(as_tensor(a, "a"), as_tensor(b, "b"))  # raises the message that names the range
        raise ValueError("float pixels outside [0, 1]")
    return torch.from_numpy(out.reshape(()))


def _plain(x: np.ndarray) -> bool:
    """C-contiguous and writeable: the arrays the compiled loops were compiled for (a read-only one would compile
    another version of them)."""
    flags = x.flags
    return flags.c_contiguous and flags.writeable


_ONE_CALL_DTYPES = {torch.uint8: False, torch.float32: True, torch.float64: True, torch.bfloat16: True, torch.float16: True,
                    np.dtype(np.uint8): False, np.dtype(np.float32): True, np.dtype(np.float64): True,
                    np.dtype(np.float16): True}  # fmt: skip
_READ_AS = {torch.bfloat16: np.uint16(0), torch.float16: np.int16(0)}  # 16-bit floats: their bits (``_compiled_input``)


def _one_call_plan(dtype, n: int, levels: int, average: str, backend: str) -> tuple | None:
    """(compiled kernel, its fixed arguments) for one pair of n pixels of ``dtype`` — read at two addresses for a
    torch dtype, as two arrays for a numpy one — or None where the per-call path does not apply (bad options go to the general path, which names
    them). Cached per thread, since the kernels write into this thread's workspace."""
    plans = getattr(_local, "plans", None)
    if plans is None:
        plans = _local.plans = {}
    key = (dtype, n, levels, average, backend)
    try:
        plan = plans.get(key)
    except TypeError:  # an unhashable option: the general path names it
        return None
    if plan is None and key not in plans:
        plan = plans[key] = _new_plan(dtype, n, levels, average, backend)
        if len(plans) > 16:  # sizes and options a process cycles through: bounded, each holds its workspace
            del plans[next(iter(plans))]
    return plan


def _new_plan(dtype, n: int, levels: int, average: str, backend: str) -> tuple | None:
    is_float = _ONE_CALL_DTYPES.get(dtype)
    if is_float is None or backend not in ("auto", "numba") or average not in AVERAGES or n == 0 or type(levels) is not int:
        return None
    if not 2 <= levels <= 65536 or (levels != 256 and not is_float) or not _compiled_available():
        return None  # uint8 at other than 256 levels is re-quantised first: the general path
    joint_counts = _kernels()
    lut, ws, log_n = _one_call_setup(n, levels)
    fixed = (levels, lut, joint_counts.KINDS.index(ws.key[2]), ws.table, ws.col, ws.cells, ws.marginals, ws.keys, ws.qa, ws.qb, log_n,
             AVERAGES.index(average))  # fmt: skip
    if isinstance(dtype, np.dtype):
        return (joint_counts.nmi_of_floats if is_float else joint_counts.nmi_of_levels), fixed
    sample = _READ_AS[dtype] if dtype in _READ_AS else np.dtype(str(dtype).removeprefix("torch.")).type(0)  # read as
    return (joint_counts.floats_at if is_float else joint_counts.levels_at), (sample, *fixed)


def _check_pixel_range(a: Tensor, b: Tensor) -> None:
    """Float pixels outside [0, 1] (or NaN) are an error, never clipped. (The compiled loops check while they
    quantise, in the same pass; this names the range when they find one.)"""
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point():
            lo, hi = (float(v) for v in torch.aminmax(t.detach()))
            if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
                raise ValueError(
                    f"{name} holds float pixels in [{lo:g}, {hi:g}]; nmi expects [0, 1] (divide 0...255 images by 255) or uint8"
                )


def _nmi_rows(qa: Tensor, qb: Tensor, levels: int, average: str, chunk: int | None, backend: str) -> Tensor:
    """nMI of each row pair of (P, N) pixels, arguments checked: float64 (P,) on their device."""
    raw = qa.dtype == torch.uint8 and qb.dtype == torch.uint8 and levels == 256  # already levels: no conversion
    qa, qb, n = qa.detach(), qb.detach(), qa.shape[1]
    if backend == "numba" or (backend == "auto" and qa.device.type == "cpu" and _compiled_available()):
        if qa.is_floating_point() != qb.is_floating_point():  # float pixels beside integer levels: the loops read one
            _check_pixel_range(qa, qb)  # kind per call, so both sides become levels first (clipping nothing: checked)
            qa, qb = quantize(qa, levels), quantize(qb, levels)
        try:
            return _compiled_nmi(qa, qb, levels, raw, chunk, average)
        except ValueError:
            _check_pixel_range(qa, qb)  # raises the message that names the range
            raise
    _check_pixel_range(qa, qb)
    terms, flat_a, flat_b = _torch_terms(qa, qb, levels, raw, chunk)
    return _finish(terms, flat_a, flat_b, n, average)


def _finish(terms: Tensor, flat_a: Tensor, flat_b: Tensor, n: int, average: str) -> Tensor:
    """nMI from the entropy terms (P, 3) and constancy flags, float64 (P,); ``joint_counts.finish`` is its compiled
    twin (the same operations in the same order)."""
    s_a, s_b, s_ab = terms[:, 0], terms[:, 1], terms[:, 2]
    constant = flat_a | flat_b
    log_n = math.log(n)
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
    both_constant = flat_a & flat_b  # sklearn: two constant labellings are a perfect match
    return torch.where(both_constant, torch.ones_like(value), value)


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
    chunk: int | None = None,
) -> Tensor:
    """nMI between images of random pairs of *different* images (within a class or across classes).

    A pattern that is constant across reconstructions raises it above the originals' value. (N, C, H, W) -> (pairs,).
    The pairs are gathered ``chunk`` at a time (default: about 32 MB of images per side), so 50,000 pairs of
    224 x 224 x 3 images need no 15 GB copy. Images and labels: tensors or numpy arrays.
    """
    images, labels = as_tensor(images, "images"), as_tensor(labels, "labels").reshape(-1)
    if images.ndim < 2 or len(labels) != len(images):
        raise ValueError(f"inter_nmi needs images (N, ...) and N labels, got {tuple(images.shape)} and {len(labels)} labels")
    idx = sample_pairs(labels, pairs, seed, same_class)
    per_image = images[0].numel() * images.element_size()
    chunk = chunk or max(1, (1 << 25) // per_image)
    out = torch.empty(len(idx), dtype=torch.float64)
    idx = idx.to(images.device)
    first = second = None
    for start in range(0, len(idx), chunk):
        part = idx[start : start + chunk]
        # index_select into reused buffers: a row copy per image (4x faster than x[idx], no fresh pages per chunk)
        first = torch.index_select(images, 0, part[:, 0], out=first[: len(part)] if first is not None else None)
        second = torch.index_select(images, 0, part[:, 1], out=second[: len(part)] if second is not None else None)
        out[start : start + chunk] = nmi(first, second, levels, average).cpu()
    return out
