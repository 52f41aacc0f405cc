"""The entropy terms of many image pairs, counted exactly by compiled loops (numba), one pass per pair.

For each row r of two integer arrays a, b (R, N) with values in [0, levels) this writes

    out[r] = (sum_i n_i log n_i, sum_j n_j log n_j, sum_ij n_ij log n_ij)      (float64, natural log)
    flat[r] = (a[r] is constant, b[r] is constant)

where n_i, n_j, n_ij are the exact integer counts of a's levels, b's levels and the joint cells. A constant row
is flagged and not counted: its nMI is known without counting (see ``s2snets.metrics.nmi``).

Why compiled loops: the exact count of a 224 x 224 x 3 pair is 150,528 increments of a 65,536-cell table; in
tensor operations it needs a key tensor, its int64 copy, a scatter and a table-wide gather, each a full pass over
memory (about 300 us per pair on one core). One loop that increments the table and one that reads it back take
about half that, and release the GIL, so pairs spread over threads.

Three layouts of the same count, chosen by the sizes (all give identical integers):

* dense (N >= levels**2 / 4 and at most 2**24 cells, e.g. 224 x 224 x 3 at 256 levels): each pixel's joint cell
  first, in one vectorised pass (float pixels are quantised in it), then a full joint table counted from them and
  read cell by cell; the marginals are its row and column sums.
* sparse (a table of at most 2**20 cells, e.g. 32 x 32 at 256 levels): the same table, read back pixel by pixel, each
  cell once (it is zeroed when read), so the work is O(N), not O(levels**2).
* sorted (otherwise: more levels, e.g. 65,536): the joint keys are sorted and counted in runs; memory O(N), no
  table.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, types  # a dependency; nmi imports this module only where numba is installed
from numba.extending import intrinsic, overload


def _compile(fn):
    # cache=True keeps the machine code in __pycache__ (or numba's user cache), so only the first process compiles.
    return njit(nogil=True, cache=True, boundscheck=False)(fn)


@_compile
def _is_constant(x, r):  # pragma: no cover - compiled
    # min and max over the whole row: a reduction the compiler vectorises (2 us for 150,528 bytes), where a loop
    # that stops at the first difference runs one value at a time (70 us for a constant row).
    lo = x[r, 0]
    hi = lo
    for i in range(x.shape[1]):
        v = x[r, i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo == hi


@_compile
def _flag_constant(a, b, r, flat):  # pragma: no cover - compiled
    """Record whether row r of a and of b is constant; True when either is (its nMI needs no count)."""
    flat[r, 0] = _is_constant(a, r)
    flat[r, 1] = _is_constant(b, r)
    return flat[r, 0] or flat[r, 1]


NARROW = (types.uint16, types.int16)  # the bits of bfloat16 and of float16 pixels (numpy has no bfloat16 and
# numba no float16 arrays): the compiled loops read such images at 2 bytes a pixel, without a float32 copy


def _has_half_conversion() -> bool:
    """Whether the CPU numba compiles for converts float16 in hardware (x86 F16C, every 64-bit ARM). Elsewhere LLVM
    would call a runtime helper that the JIT may not find, so the loops decode the bits themselves."""
    import platform

    from llvmlite import binding
    from numba.core import config

    chosen = getattr(config, "CPU_FEATURES", None)  # NUMBA_CPU_FEATURES, as numba itself reads it
    features = chosen if chosen is not None else binding.get_host_cpu_features().flatten()
    return platform.machine().lower() in ("aarch64", "arm64") or "+f16c" in features.split(",")


HALF_IN_HARDWARE = _has_half_conversion()


def _decode_narrow(builder, x, kind, hardware=HALF_IN_HARDWARE):
    """IR: the float32 of 16 bits. bfloat16 (uint16) is a float32's upper half: exact. float16 (int16): the CPU's
    conversion (8 to an instruction with F16C: 1.7x faster than the decode below), or its exponent and significand
    moved into float32's lower bits and scaled by 2**112 (the difference of the exponent biases), exact for normal and
    subnormal values. That decode does not keep the sign: a negative value (its sign lands in the exponent), inf and
    NaN all become values above 1, which every caller refuses as outside [0, 1]; -0 is read as +0."""
    i32 = ir.IntType(32)
    if kind == types.uint16:
        return builder.bitcast(builder.shl(builder.zext(x, i32), ir.Constant(i32, 16)), ir.FloatType())
    if hardware:
        return builder.fpext(builder.bitcast(x, ir.HalfType()), ir.FloatType())
    word = builder.zext(x, i32)
    word = builder.select(builder.icmp_unsigned("==", word, ir.Constant(i32, 0x8000)), ir.Constant(i32, 0), word)
    moved = builder.bitcast(builder.shl(word, ir.Constant(i32, 13)), ir.FloatType())
    return builder.fmul(moved, ir.Constant(ir.FloatType(), 2.0**112))


@intrinsic
def _pixel(typingctx, value):  # pragma: no cover - compiled
    """A float pixel as float64: float32 widened exactly, float64 as it is, and the bits of a bfloat16 (uint16) or a
    float16 (int16) decoded (``_decode_narrow``), so such images are read at 2 bytes a pixel."""
    if not (isinstance(value, types.Float) or value in NARROW):
        return None

    def codegen(context, builder, signature, args):
        (x,) = args
        double = context.get_value_type(types.float64)
        if value in NARROW:
            return builder.fpext(_decode_narrow(builder, x, value), double)
        return x if value == types.float64 else builder.fpext(x, double)

    return types.float64(value), codegen


def _narrow_intrinsic(hardware: bool):
    def narrow(typingctx, bits):  # pragma: no cover - compiled
        if bits not in NARROW:
            return None

        def codegen(context, builder, signature, args):
            return _decode_narrow(builder, args[0], bits, hardware)

        return types.float32(bits), codegen

    narrow.__name__ = narrow.__qualname__ = "narrow_in_hardware" if hardware else "narrow_in_software"
    return intrinsic(narrow)


_narrow = _narrow_intrinsic(HALF_IN_HARDWARE)  # a 16-bit float's bits as float32, in [0, 1] exactly
_narrow_in_software = _narrow_intrinsic(False)  # the decode of CPUs without the conversion (tested on every CPU)


@intrinsic
def _float32_bits(typingctx, value):  # pragma: no cover - compiled
    """A float32's bits as uint32: for x >= +0 they grow with x, and every negative or NaN lies above 1.0's."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(value), codegen


@_compile
def _joint_cells(ar, br, levels, cells):  # pragma: no cover - compiled
    """cells[i] = a[i] * levels + b[i]: the joint cell of each pixel, in one vectorised pass before the count (the
    count loop then reads one array and does no arithmetic: 20-30% faster than computing the cell inside it).
    Returns (a constant, b constant), from a min and max taken in the same pass."""
    lo_a = hi_a = ar[0]
    lo_b = hi_b = br[0]
    if levels == 256:
        for i in range(ar.shape[0]):
            x, y = ar[i], br[i]
            lo_a, hi_a, lo_b, hi_b = min(lo_a, x), max(hi_a, x), min(lo_b, y), max(hi_b, y)
            cells[i] = (np.uint16(x) << 8) | np.uint16(y)
    else:
        for i in range(ar.shape[0]):
            x, y = ar[i], br[i]
            lo_a, hi_a, lo_b, hi_b = min(lo_a, x), max(hi_a, x), min(lo_b, y), max(hi_b, y)
            cells[i] = np.uint32(x) * levels + np.uint32(y)
    return lo_a == hi_a, lo_b == hi_b


@_compile
def _float_cells(xa, xb, scale, levels, cells):  # pragma: no cover - compiled
    """The joint cells of float pixels, quantised as ``nmi.quantize`` does (round(x * scale) in float64, half to
    even) in the same vectorised pass. True when every pixel lay in [0, 1]; otherwise (NaN included) cells holds
    garbage and must not be counted."""
    ok = True
    if levels == 256:
        for i in range(xa.shape[0]):
            v, u = _pixel(xa[i]), _pixel(xb[i])
            ok &= (v >= 0.0) & (v <= 1.0) & (u >= 0.0) & (u <= 1.0)
            cells[i] = (np.uint16(np.uint8(np.rint(v * scale))) << 8) | np.uint16(np.uint8(np.rint(u * scale)))
    else:
        for i in range(xa.shape[0]):
            v, u = _pixel(xa[i]), _pixel(xb[i])
            ok &= (v >= 0.0) & (v <= 1.0) & (u >= 0.0) & (u <= 1.0)
            cells[i] = np.uint32(np.rint(v * scale)) * levels + np.uint32(np.rint(u * scale))
    return ok


@_compile
def _narrow_cells(xa, xb, scale, levels, cells):  # pragma: no cover - compiled
    """``_float_cells`` of 16-bit float pixels (bfloat16 as uint16, float16 as int16 bits) in float32 arithmetic,
    eight pixels to a vector where float64 holds four. Exact, because the dense layout has at most 2**24 cells, so
    scale < 2**12: a bfloat16 (8-bit significand) or float16 (11-bit) times it needs at most 23 bits, which float32
    holds without rounding, and round half to even then gives quantize's level. The [0, 1] test is one unsigned
    maximum of the float32 bits of x + 0 (-0 becomes +0; negatives, NaN and values above 1 lie above 1.0's bits)
    instead of four comparisons. In cache, 37 us for a 224 x 224 x 3 bfloat16 pair against 97 us widened to float64."""
    s = np.float32(scale)
    zero = np.float32(0)
    top = np.uint32(0)
    if levels == 256:
        for i in range(xa.shape[0]):
            v, u = _narrow(xa[i]), _narrow(xb[i])
            top = max(top, max(_float32_bits(v + zero), _float32_bits(u + zero)))
            # a * 256 + b < 2**16 is exact in float32 too: one conversion to an integer instead of two
            cells[i] = np.uint16(np.int32(np.rint(v * s) * np.float32(256) + np.rint(u * s)))
    else:
        for i in range(xa.shape[0]):
            v, u = _narrow(xa[i]), _narrow(xb[i])
            top = max(top, max(_float32_bits(v + zero), _float32_bits(u + zero)))
            cells[i] = np.uint32(np.rint(v * s)) * levels + np.uint32(np.rint(u * s))
    return top <= _float32_bits(np.float32(1))


def pixel_cells(xa, xb, scale, levels, cells):
    """The joint cells of float pixels (dense layout): ``_narrow_cells`` when both sides are 16-bit floats' bits,
    otherwise ``_float_cells`` (float64 arithmetic; a pair of two dtypes too). True when every pixel lay in [0, 1].
    Chosen by the compiler from the array types."""
    if xa.dtype in (np.uint16, np.int16) and xb.dtype in (np.uint16, np.int16):
        return _narrow_cells(xa, xb, scale, levels, cells)
    return _float_cells(xa, xb, scale, levels, cells)


@overload(pixel_cells, jit_options={"nogil": True})  # inlined into the cached callers
def _pixel_cells_of_type(xa, xb, scale, levels, cells):  # pragma: no cover - compiled
    kernel = _narrow_cells if xa.dtype in NARROW and xb.dtype in NARROW else _float_cells
    return lambda xa, xb, scale, levels, cells: kernel(xa, xb, scale, levels, cells)


@_compile
def _constant_parts(cells, levels):  # pragma: no cover - compiled
    """(a constant, b constant) of joint cells a * levels + b. At 256 levels one OR of every cell's difference from
    the first, in a pass of its own (in cache, 16 cells to a vector), costs less than a min and max inside the float
    loop, whose vectors hold 4 pixels; other level counts take the quotient and remainder."""
    if levels == 256:
        first = cells[0]
        differ = first ^ first
        for i in range(cells.shape[0]):
            differ |= cells[i] ^ first
        return (differ >> 8) == 0, (differ & 255) == 0
    a0, b0 = cells[0] // levels, cells[0] % levels
    same_a = same_b = True
    for i in range(cells.shape[0]):
        same_a &= cells[i] // levels == a0
        same_b &= cells[i] % levels == b0
    return same_a, same_b


@_compile
def _read_back(table, col, lut, levels):  # pragma: no cover - compiled
    """(sum n_i log n_i, sum n_j log n_j, sum n_ij log n_ij) of a full joint table, which it leaves all zero.
    Integer pass (vectorised): a's counts are row sums, b's counts column sums. Float pass: four partial sums, so the
    adds do not wait on one another (one running sum costs an add's latency per cell: 65,536 x 4 cycles)."""
    s_a = 0.0
    for x in range(levels):
        base = x * levels
        row = 0
        for y in range(levels):
            k = table[base + y]
            row += k
            col[y] += k
        s_a += lut[row]
    cells = levels * levels
    p0 = p1 = p2 = p3 = 0.0
    for c in range(0, cells - 3, 4):
        p0 += lut[table[c]]
        p1 += lut[table[c + 1]]
        p2 += lut[table[c + 2]]
        p3 += lut[table[c + 3]]
    for c in range(cells - cells % 4, cells):
        p0 += lut[table[c]]
    table[:] = 0
    s_b = 0.0
    for y in range(levels):
        s_b += lut[col[y]]
        col[y] = 0
    return s_a, s_b, (p0 + p1) + (p2 + p3)


@_compile
def _count_cells(cells, flat_a, flat_b, levels, lut, table, col, out, flat, r):  # pragma: no cover - compiled
    """Count row r's joint cells into the table and read it back into out[r]; flat[r] = (flat_a, flat_b). A
    constant row is not counted: its nMI needs no count, and its long runs of one cell are the count's slowest case
    (each increment waits for the previous one: 500 us for a 224 x 224 x 3 pair against 8 us for the check)."""
    flat[r, 0], flat[r, 1] = flat_a, flat_b
    if flat_a or flat_b:
        return
    for i in range(cells.shape[0]):
        table[cells[i]] += 1
    if levels == 256:  # a constant the compiler folds into the read-back loops
        out[r, 0], out[r, 1], out[r, 2] = _read_back(table, col, lut, 256)
    else:
        out[r, 0], out[r, 1], out[r, 2] = _read_back(table, col, lut, levels)


@_compile
def _dense(a, b, levels, lut, out, flat, table, col, cells):  # pragma: no cover - compiled
    for r in range(a.shape[0]):
        flat_a, flat_b = _joint_cells(a[r], b[r], levels, cells)
        _count_cells(cells, flat_a, flat_b, levels, lut, table, col, out, flat, r)


@_compile
def _sparse(a, b, levels, lut, out, flat, table, marginals):  # pragma: no cover - compiled
    rows, n = a.shape
    for r in range(rows):
        if _flag_constant(a, b, r, flat):
            continue
        for i in range(n):
            x, y = np.intp(a[r, i]), np.intp(b[r, i])
            table[x * levels + y] += 1
            marginals[0, x] += 1
            marginals[1, y] += 1
        s_ab = 0.0
        s_a = 0.0
        s_b = 0.0
        for i in range(n):  # each touched cell and level is read once, then zeroed for the next row
            x, y = np.intp(a[r, i]), np.intp(b[r, i])
            k = table[x * levels + y]
            if k:
                s_ab += lut[k]
                table[x * levels + y] = 0
            k = marginals[0, x]
            if k:
                s_a += lut[k]
                marginals[0, x] = 0
            k = marginals[1, y]
            if k:
                s_b += lut[k]
                marginals[1, y] = 0
        out[r, 0] = s_a
        out[r, 1] = s_b
        out[r, 2] = s_ab


@_compile
def _run_terms(keys, lut):  # pragma: no cover - compiled
    """sum over distinct values v of lut[count of v] for a sorted int64 array."""
    s = 0.0
    run = 1
    for i in range(1, keys.shape[0]):
        if keys[i] == keys[i - 1]:
            run += 1
        else:
            s += lut[run]
            run = 1
    return s + lut[run]


@_compile
def _sorted(a, b, levels, lut, out, flat, keys):  # pragma: no cover - compiled
    rows, n = a.shape
    for r in range(rows):
        if _flag_constant(a, b, r, flat):
            continue
        for i in range(n):
            keys[i] = np.int64(a[r, i]) * levels + np.int64(b[r, i])
        keys.sort()
        out[r, 2] = _run_terms(keys, lut)
        for i in range(n):
            keys[i] = a[r, i]
        keys.sort()
        out[r, 0] = _run_terms(keys, lut)
        for i in range(n):
            keys[i] = b[r, i]
        keys.sort()
        out[r, 1] = _run_terms(keys, lut)


@_compile
def _level_terms(a, b, levels, lut, out, flat, kind, table, col, cells, marginals, keys):  # pragma: no cover - compiled
    if kind == 0:
        _dense(a, b, levels, lut, out, flat, table, col, cells)
    elif kind == 1:
        _sparse(a, b, levels, lut, out, flat, table, marginals)
    else:
        _sorted(a, b, levels, lut, out, flat, keys)
    return True


@_compile
def _quantize_row(x, r, scale, q):  # pragma: no cover - compiled
    """Row r of float pixels -> levels round(x * scale) in q (half to even, as torch.round), the float64 arithmetic
    of ``nmi.quantize``. True when every pixel lay in [0, 1]; otherwise (NaN included) q holds garbage and must not
    be counted. Not clipped, so the loop vectorises: 15 us for a 224 x 224 x 3 float32 image."""
    ok = True
    row = x[r]
    for i in range(row.shape[0]):
        v = _pixel(row[i])
        ok &= (v >= 0.0) & (v <= 1.0)
        q[i] = np.rint(v * scale)
    return ok


@_compile
def _float_terms(xa, xb, scale, levels, lut, out, flat, kind, table, col, cells, marginals, keys, qa, qb):  # pragma: no cover
    """Rows of float pixels, quantised in the pass that builds the joint cells (dense layout) or into the reused
    (1, N) level buffers qa, qb (the others), then counted while they are in cache: no full-size integer copy of the
    images. False, at the first row with a pixel outside [0, 1], counting nothing of that row."""
    for r in range(xa.shape[0]):
        if kind == 0:
            if not pixel_cells(xa[r], xb[r], scale, levels, cells):
                return False
            flat_a, flat_b = _constant_parts(cells, levels)
            _count_cells(cells, flat_a, flat_b, levels, lut, table, col, out, flat, r)
            continue
        if not (_quantize_row(xa, r, scale, qa[0]) & _quantize_row(xb, r, scale, qb[0])):
            return False
        _level_terms(qa, qb, levels, lut, out[r : r + 1], flat[r : r + 1], kind, table, col, cells, marginals, keys)
    return True


@_compile
def finish(terms, flat, n, log_n, average, out):  # pragma: no cover - compiled
    """nMI per row from its entropy terms (see ``nmi``): float64, scikit-learn's edge cases, the same operations in
    the same order as ``nmi._finish`` (``log_n`` = math.log(n), from Python, so both use one logarithm). ``average``:
    0 arithmetic, 1 geometric, 2 min, 3 max. Compiled: on one small pair it replaces a dozen tensor operations."""
    eps = np.finfo(np.float64).eps
    for r in range(terms.shape[0]):
        h_a = log_n - terms[r, 0] / n
        h_b = log_n - terms[r, 1] / n
        mi = max(h_a + h_b - (log_n - terms[r, 2] / n), 0.0)
        if flat[r, 0] or flat[r, 1]:
            mi = 0.0
        if average == 0:
            norm = (h_a + h_b) / 2
        elif average == 1:
            norm = np.sqrt(h_a * h_b)
        elif average == 2:
            norm = min(h_a, h_b)
        else:
            norm = max(h_a, h_b)
        value = 0.0 if mi == 0 else mi / max(norm, eps)
        out[r] = 1.0 if flat[r, 0] and flat[r, 1] else value


@_compile
def nmi_of_levels(a, b, levels, lut, kind, table, col, cells, marginals, keys, qa, qb, log_n, average, out):  # pragma: no cover
    """Count and finish integer levels in one compiled call: one dispatch from Python for a small call."""
    terms, flat = np.zeros((a.shape[0], 3), np.float64), np.zeros((a.shape[0], 2), np.bool_)
    _level_terms(a, b, levels, lut, terms, flat, kind, table, col, cells, marginals, keys)
    finish(terms, flat, a.shape[1], log_n, average, out)
    return True


@_compile
def nmi_of_floats(a, b, levels, lut, kind, table, col, cells, marginals, keys, qa, qb, log_n, average, out):  # pragma: no cover
    """The same for float pixels; False (nothing finished) at a pixel outside [0, 1]."""
    terms, flat = np.zeros((a.shape[0], 3), np.float64), np.zeros((a.shape[0], 2), np.bool_)
    if not _float_terms(a, b, float(levels - 1), levels, lut, terms, flat, kind, table, col, cells, marginals, keys, qa, qb):
        return False
    finish(terms, flat, a.shape[1], log_n, average, out)
    return True


@intrinsic
def _values_at(typingctx, address, sample):  # pragma: no cover - compiled
    """A pointer to values of ``sample``'s type at an integer address (a CPU tensor's ``data_ptr()``)."""
    if not isinstance(address, types.Integer) or not isinstance(sample, types.Number):
        return None
    pointer = types.CPointer(sample)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, sample), codegen


# One pair read straight from two tensors' memory, for the per-call path: two numpy views of the tensors cost about
# 2.6 us, a third of what counting a 32 x 32 pair does. The caller guarantees n contiguous values of sample's type
# at each address (contiguous CPU tensors, alive during the call).
@_compile
def levels_at(
    address_a, address_b, n, sample, levels, lut, kind, table, col, cells, marginals, keys, qa, qb, log_n, average, out
):  # pragma: no cover
    """``nmi_of_levels`` of the integer levels at two addresses."""
    a, b = carray(_values_at(address_a, sample), (1, n)), carray(_values_at(address_b, sample), (1, n))
    return nmi_of_levels(a, b, levels, lut, kind, table, col, cells, marginals, keys, qa, qb, log_n, average, out)


@_compile
def floats_at(
    address_a, address_b, n, sample, levels, lut, kind, table, col, cells, marginals, keys, qa, qb, log_n, average, out
):  # pragma: no cover
    """``nmi_of_floats`` of the float pixels at two addresses."""
    a, b = carray(_values_at(address_a, sample), (1, n)), carray(_values_at(address_b, sample), (1, n))
    return nmi_of_floats(a, b, levels, lut, kind, table, col, cells, marginals, keys, qa, qb, log_n, average, out)


KINDS = ("dense", "sparse", "sorted")


class Workspace:
    """One thread's buffers, reused across calls (kept all-zero between rows by the kernels)."""

    def __init__(self, n: int, levels: int, kind: str):
        self.key = (n, levels, kind)
        cells = levels * levels
        self.table = np.zeros(cells if kind != "sorted" else 0, np.int32)
        self.col = np.zeros(levels if kind == "dense" else 0, np.int64)
        self.marginals = np.zeros((2, levels) if kind == "sparse" else (2, 0), np.int32)
        self.keys = np.empty(n if kind == "sorted" else 0, np.int64)
        self.cells = np.empty(n if kind == "dense" else 0, np.uint16 if levels <= 256 else np.uint32)  # joint cells
        level_type = np.uint8 if levels <= 256 else np.int32
        rows = n if kind != "dense" else 0  # one quantised row of floats (the dense layout quantises into cells)
        self.qa, self.qb = np.empty((1, rows), level_type), np.empty((1, rows), level_type)


def _float_pixels(x: np.ndarray) -> bool:
    """Float pixels, as the loops read them: float32, float64, or the bits of bfloat16 (uint16) and float16 (int16)."""
    return x.dtype.kind == "f" or x.dtype in (np.uint16, np.int16)


def count_terms(
    a: np.ndarray, b: np.ndarray, levels: int, lut: np.ndarray, ws: Workspace, out: np.ndarray, flat: np.ndarray
) -> None:
    """Fill ``out`` (R, 3) float64 and ``flat`` (R, 2) bool for rows of a, b (R, N): integer levels (uint8, int32,
    int64), or float32/float64 pixels in [0, 1] (uint16, int16: the bits of bfloat16, float16 ones), quantised row by row
    (ValueError if any lies outside).

    ``lut``: float64 k log k for k = 0..N. Releases the GIL: threads may run it on disjoint rows with their own
    workspace.
    """
    kind = KINDS.index(ws.key[2])
    if _float_pixels(a):
        if not _float_terms(a, b, float(levels - 1), levels, lut, out, flat, kind, ws.table, ws.col, ws.cells, ws.marginals, ws.keys,
                            ws.qa, ws.qb):  # fmt: skip
            raise ValueError("float pixels outside [0, 1]")
        return
    _level_terms(a, b, levels, lut, out, flat, kind, ws.table, ws.col, ws.cells, ws.marginals, ws.keys)


def nmi_in_one_call(a: np.ndarray, b: np.ndarray, levels: int, lut: np.ndarray, ws: Workspace, log_n: float,
                    average: int, out: np.ndarray) -> None:  # fmt: skip
    """nMI of rows of a, b (R, N) into ``out`` (R,), counted and finished in one compiled call (see ``finish``);
    for calls too small to spread over threads. ValueError at a float pixel outside [0, 1]."""
    kind = KINDS.index(ws.key[2])
    run = nmi_of_floats if _float_pixels(a) else nmi_of_levels
    if not run(a, b, levels, lut, kind, ws.table, ws.col, ws.cells, ws.marginals, ws.keys, ws.qa, ws.qb, log_n, average, out):
        raise ValueError("float pixels outside [0, 1]")
