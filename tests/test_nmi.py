import numpy as np
import pytest
import torch
from conftest import needs_fashion
from sklearn.metrics import normalized_mutual_info_score

from s2snets.metrics.count_layout import layout
from s2snets.metrics.nmi import inter_nmi, nmi, quantize, sample_pairs

BACKENDS = ["numba", "torch"]  # the compiled loops (CPU) and the tensor operations (any device): same integers


def sk(a, b, average="arithmetic"):
    return np.array(
        [normalized_mutual_info_score(x.flatten().numpy(), y.flatten().numpy(), average_method=average) for x, y in zip(a, b)]
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("average", ["arithmetic", "geometric", "min", "max"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 32, 32), (3, 40, 40)])  # 40x40x3 takes the dense path
def test_random_pairs_match_sklearn(average, shape, backend):
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (6, *shape), generator=g, dtype=torch.uint8)
    b = ((a.int() + torch.randint(0, 60, a.shape, generator=g, dtype=torch.int32)) % 256).to(torch.uint8)
    np.testing.assert_allclose(nmi(a, b, average=average, backend=backend).numpy(), sk(a, b, average), rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_counting_paths_agree(backend):
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 16, (5, 1, 64, 64), generator=g, dtype=torch.uint8) * 16
    b = torch.randint(0, 16, (5, 1, 64, 64), generator=g, dtype=torch.uint8) * 16
    assert layout(64 * 64, 256) == "sparse" and layout(5 * 64 * 64, 256) == "dense"
    assert layout(4_300_000, 4100) == "sorted"  # a dense table would be 67 MB per thread and pair
    sparse = nmi(a, b, backend=backend)
    wide = nmi(a.repeat(1, 5, 1, 1), b.repeat(1, 5, 1, 1), backend=backend)  # same counts x5, dense layout
    np.testing.assert_allclose(sparse.numpy(), sk(a, b), atol=1e-9)
    np.testing.assert_allclose(wide.numpy(), sk(a.repeat(1, 5, 1, 1), b.repeat(1, 5, 1, 1)), atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("levels", [256, 1000, 65536])  # dense / sparse table / sorted runs at these sizes
def test_every_layout_threads_chunks_and_strides(levels, backend):
    """Float images of natural-looking structure: every count layout, 1 and 2 threads, chunks that split the batch
    unevenly, a non-contiguous (channels-last) input and a constant image among them, all equal to scikit-learn."""
    g = torch.Generator().manual_seed(5)
    shape = (9, 3, 40, 40) if levels == 256 else (9, 1, 24, 24)
    a = torch.nn.functional.interpolate(torch.rand(shape[0], shape[1], 6, 6, generator=g), size=shape[2:], mode="bilinear")
    b = (a + 0.05 * torch.rand(shape, generator=g)).clamp(0, 1)
    b[4] = 0.25
    expected = sk(quantize(a, levels), quantize(b, levels))
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            for chunk in (None, 4):
                got = nmi(a.contiguous(memory_format=torch.channels_last), b, levels, chunk=chunk, backend=backend)
                np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)
    finally:
        torch.set_num_threads(threads)
    assert float(got[4]) == 0.0


def test_many_levels_need_no_table():
    """65,536 levels: a joint table would be 17 GB per pair; both backends count sorted keys instead (this batch of
    200 pairs once asked for 860 GB)."""
    g = torch.Generator().manual_seed(6)
    a, b = torch.rand(200, 1, 16, 16, generator=g), torch.rand(200, 1, 16, 16, generator=g)
    expected = sk(quantize(a, 65536)[:5], quantize(b, 65536)[:5])
    for backend in BACKENDS:
        np.testing.assert_allclose(nmi(a, b, 65536, backend=backend)[:5].numpy(), expected, atol=1e-9)


def test_backend_errors():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="backend must be one of"):
        nmi(x, x, backend="cupy")
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        nmi(x, x, chunk=0)
    for levels in (2.5, "16", True):  # not an int (was: a TypeError from inside torch for 2.5)
        with pytest.raises(ValueError, match="levels must be an int in 2...65536"):
            nmi(x, x, levels=levels)
    assert torch.equal(nmi(x, x, levels=np.int64(16)), nmi(x, x, levels=16))  # numpy ints are ints


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_pairs_match_sklearn(backend):
    z = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    c = torch.full((1, 1, 8, 8), 77, dtype=torch.uint8)
    r = torch.randint(0, 256, (1, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    two = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    two[..., :4] = 255
    for a, b in [(z, z), (z, c), (z, r), (r, z), (r, r), (two, two), (two, 255 - two), (two, r)]:
        np.testing.assert_allclose(nmi(a, b, backend=backend).numpy(), sk(a, b), atol=1e-9)


@pytest.mark.parametrize("levels", [2, 7, 32, 64])
def test_levels_and_float_images(levels):
    g = torch.Generator().manual_seed(3)
    a = torch.rand(4, 1, 12, 12, generator=g)
    b = (a + 0.2 * torch.rand(4, 1, 12, 12, generator=g)).clamp(0, 1)
    qa, qb = quantize(a, levels), quantize(b, levels)
    assert int(qa.max()) < levels
    np.testing.assert_allclose(nmi(a, b, levels).numpy(), sk(qa, qb), atol=1e-9)


@needs_fashion
def test_fashion_mnist_pairs_match_sklearn():
    from s2snets.data import fashion_mnist

    x = fashion_mnist("test").images[:40]
    np.testing.assert_allclose(nmi(x[:20], x[20:]).numpy(), sk(x[:20], x[20:]), atol=1e-9)
    assert torch.allclose(nmi(x[:5], x[:5]), torch.ones(5, dtype=torch.float64), atol=1e-12)


def test_intra_inter_and_pairs():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (30, 1, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(30) % 3
    assert torch.allclose(nmi(x, x), torch.ones(30, dtype=torch.float64), atol=1e-12)
    pairs = sample_pairs(labels, 50, seed=1, same_class=True)
    assert (
        pairs.shape == (50, 2) and torch.all(labels[pairs[:, 0]] == labels[pairs[:, 1]]) and torch.all(pairs[:, 0] != pairs[:, 1])
    )
    cross = sample_pairs(labels, 50, seed=1, same_class=False)
    assert torch.all(labels[cross[:, 0]] != labels[cross[:, 1]])
    assert torch.equal(pairs, sample_pairs(labels, 50, seed=1))
    # a pattern stamped on every image raises the inter-image nMI
    stamped = x.clone()
    stamped[..., ::2, :] = 255  # half of the pixels
    plain, shared = inter_nmi(x, labels, 50, levels=8).mean(), inter_nmi(stamped, labels, 50, levels=8).mean()
    assert plain < 0.1 and shared > plain + 0.1
    assert torch.equal(inter_nmi(x.numpy(), labels.numpy(), 50, levels=8).mean(), plain)  # numpy arrays, as they are
    with pytest.raises(ValueError, match=r"needs images \(N, ...\) and N labels, got \(30, 1, 16, 16\) and 20 labels"):
        inter_nmi(x, labels[:20], 50)  # pairs drawn from the first 20 images only, before this check
    # gathered a few pairs at a time: the same values as all pairs at once
    direct = nmi(x[pairs[:, 0]], x[pairs[:, 1]], 8)
    assert torch.equal(inter_nmi(x, labels, 50, seed=1, levels=8, chunk=7), direct)


def _what_the_loops_read(x: torch.Tensor) -> np.ndarray:
    """Float pixels as nmi hands them to the compiled loops: float32/float64 as they are, bfloat16 and float16 as
    their bits (uint16, int16)."""
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(np.uint16)
    if x.dtype == torch.float16:
        return x.view(torch.int16).numpy()
    return (x if x.dtype in (torch.float32, torch.float64) else x.float()).numpy()


def test_float_pixels_give_the_levels_of_quantize_in_every_dtype():
    import numpy as np

    from s2snets.metrics.joint_counts import _quantize_row

    g = torch.Generator().manual_seed(11)
    x = torch.rand(6, 3000, generator=g, dtype=torch.float64)
    for levels in (2, 7, 256, 1000):
        halfway = [0.0, 1.0, 0.5, 0.25, 0.75, 0.5 / (levels - 1), 1.5 / (levels - 1), 2.5 / (levels - 1)]
        x[0, :8] = torch.tensor(halfway).clamp(max=1.0)  # where rounding half to even decides
        for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
            xs = x.to(dtype)
            # the reference: float64 arithmetic, round half to even, on the value the dtype holds
            expected = (xs.double() * (levels - 1)).round().long()
            read = _what_the_loops_read(xs)
            q = np.empty(3000, np.int32)
            for r in range(6):
                assert _quantize_row(read, r, float(levels - 1), q)  # every pixel in [0, 1]
                assert torch.equal(torch.from_numpy(q).long(), expected[r]), (levels, dtype, r)
            assert torch.equal(quantize(xs, levels), expected), (levels, dtype)
    a, b = x[:, :1024].reshape(6, 1, 32, 32), x.flip(0)[:, :1024].reshape(6, 1, 32, 32)
    as_uint8 = nmi((a * 255).round().to(torch.uint8), (b * 255).round().to(torch.uint8))
    assert torch.equal(nmi(a, b), as_uint8) and torch.equal(nmi(a.float(), b.float()), as_uint8)


def test_the_dense_layout_quantises_into_joint_cells_as_quantize_does():
    """Float pixels in the dense layout (224 x 224 x 3 and alike) are quantised in the pass that builds the joint
    cells, not by ``_quantize_row``: the same levels as ``quantize`` where rounding half to even decides, at 256
    levels (shift) and others (multiply), constancy read off the cells, and any pixel outside [0, 1] refused."""
    from s2snets.metrics.joint_counts import _constant_parts
    from s2snets.metrics.joint_counts import pixel_cells as _float_cells  # bfloat16: its float32 loop

    g = torch.Generator().manual_seed(15)
    for levels, cell_type in ((256, np.uint16), (7, np.uint16), (1000, np.uint32)):  # 7: 0.25, 0.75 are ties
        x = torch.rand(2, 5000, generator=g, dtype=torch.float64)
        x[0, :8] = torch.tensor([0.0, 1.0, 0.5, 0.25, 0.75, 0.5 / (levels - 1), 1.5 / (levels - 1), 2.5 / (levels - 1)])
        for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
            xa, xb = x[0].to(dtype), x[1].to(dtype)
            cells = np.empty(5000, cell_type)
            assert _float_cells(_what_the_loops_read(xa), _what_the_loops_read(xb), float(levels - 1), levels, cells)
            expected = quantize(xa, levels) * levels + quantize(xb, levels)
            assert torch.equal(torch.from_numpy(cells.astype(np.int64)), expected), (levels, dtype)
            assert _constant_parts(cells, levels) == (False, False)
            ra, rb, flat = _what_the_loops_read(xa), _what_the_loops_read(xb), _what_the_loops_read(torch.full_like(xa, 0.5))
            assert _float_cells(flat, rb, float(levels - 1), levels, cells)
            assert _constant_parts(cells, levels) == (True, False)
            assert _float_cells(ra, flat, float(levels - 1), levels, cells)
            assert _constant_parts(cells, levels) == (False, True)
            for bad in (float("nan"), -torch.finfo(dtype).tiny, 1.0 + 1e-2):  # 1 + 1e-2: above 1 in bfloat16 too
                spoilt = xb.clone()
                spoilt[-1] = bad
                assert not _float_cells(ra, _what_the_loops_read(spoilt), float(levels - 1), levels, cells), (bad, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_16_bit_float_is_quantised_and_range_checked_as_float64_does(dtype):
    """The loop for 16-bit floats decodes their bits, rounds in float32 and tests the range on float32 bits; over all
    65,536 bit patterns (NaN, infinities, -0, subnormals, every value in [0, 1]) it must accept exactly the values
    in [0, 1] and give each the level that float64 arithmetic (``quantize``) gives, at level counts with and without
    a shift, up to the dense layout's largest (4,096)."""
    from s2snets.metrics.joint_counts import pixel_cells

    values = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)  # every bit pattern
    bits = _what_the_loops_read(values)
    as_float64 = values.double()
    inside = ((as_float64 >= 0) & (as_float64 <= 1)).numpy()
    one = {torch.bfloat16: 0x3F80, torch.float16: 0x3C00}[dtype]
    assert inside.sum() == one + 2  # +0 ... 1 and -0
    half = _what_the_loops_read(torch.full((2,), 0.5, dtype=dtype))
    for levels in (256, 7, 1000, 4096):
        cell_type = np.uint16 if levels <= 256 else np.uint32
        accepted = [pixel_cells(np.array([p, half[0]], bits.dtype), half, float(levels - 1), levels, np.empty(2, cell_type))
                    for p in bits]  # fmt: skip
        assert np.array_equal(np.array(accepted), inside), levels
        a, b = bits[inside], bits[inside][::-1].copy()
        cells = np.empty(a.size, cell_type)
        assert pixel_cells(a, b, float(levels - 1), levels, cells)
        va = values[torch.from_numpy(inside)]
        expected = quantize(va, levels) * levels + quantize(va.flip(0), levels)
        assert torch.equal(torch.from_numpy(cells.astype(np.int64)), expected), levels


def test_the_software_float16_decode_is_exact_in_0_1_and_refuses_the_rest():
    """CPUs without a float16 conversion (no F16C) decode the bits in software (this CPU may use its hardware, so
    the software form is checked on its own): every value in [0, 1] exactly, -0 as +0, and every other pattern
    (negatives, inf, NaN, above 1) read as a value above 1, which the loops refuse."""
    from numba import njit

    from s2snets.metrics.joint_counts import _narrow_in_software

    @njit
    def decode(bits, out):
        for i in range(bits.shape[0]):
            out[i] = _narrow_in_software(bits[i])

    values = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16)
    decoded = np.empty(65536, np.float32)
    decode(values.view(torch.int16).numpy(), decoded)
    inside = (values >= 0) & (values <= 1)
    assert torch.equal(torch.from_numpy(decoded)[inside], values[inside].float().abs())  # -0 -> +0
    assert (decoded[~inside.numpy()] > 1).all()


@pytest.mark.parametrize("levels", [256, 100])
def test_the_dense_layout_matches_sklearn_on_floats_integers_and_constant_images(levels):
    g = torch.Generator().manual_seed(16)
    a = torch.rand(4, 3, 80, 80, generator=g)  # 19,200 pixels: dense at both level counts
    b = (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    a[1], b[2] = 0.25, 0.75  # one constant image on each side
    assert layout(19_200, levels) == "dense"
    qa, qb = quantize(a, levels), quantize(b, levels)
    expected = sk(qa, qb)
    for x, y in ((a, b), (a.double(), b.double())):
        np.testing.assert_allclose(nmi(x, y, levels).numpy(), expected, atol=1e-12)
    for ha, hb in ((a.bfloat16(), b.bfloat16()), (a.half(), b.half())):  # read as their bits by the loops
        np.testing.assert_allclose(nmi(ha, hb, levels).numpy(), sk(quantize(ha, levels), quantize(hb, levels)), atol=1e-12)
    ua, ub = (a * 255).round().to(torch.uint8), (b * 255).round().to(torch.uint8)  # integer levels (re-quantised at 100)
    np.testing.assert_allclose(nmi(ua, ub, levels).numpy(), sk(quantize(ua, levels), quantize(ub, levels)), atol=1e-12)
    with pytest.raises(ValueError, match=r"b holds float pixels in \[.*\]; nmi expects \[0, 1\]"):
        nmi(a, b * 2, levels)


@pytest.mark.parametrize("size", [32, 80])  # sparse and dense layouts
def test_pairs_of_different_dtypes_give_each_sides_own_levels(size):
    """Float pixels beside uint8 levels (a float reconstruction against a uint8 original) and two float dtypes: each
    side quantised as ``quantize`` quantises it alone, in every backend (the compiled loops once read the float side
    as integer levels here)."""
    g = torch.Generator().manual_seed(17)
    a = torch.rand(3, 3, size, size, generator=g)
    b = (a + 0.1 * torch.rand(a.shape, generator=g)).clamp(0, 1)
    forms = {
        "uint8": lambda x: (x * 255).round().to(torch.uint8),
        "float32": lambda x: x,
        "float64": torch.Tensor.double,
        "bfloat16": torch.Tensor.bfloat16,
        "float16": torch.Tensor.half,
    }
    for left, right in (("float32", "uint8"), ("uint8", "float32"), ("uint8", "bfloat16"), ("float64", "bfloat16"),
                        ("bfloat16", "float64"), ("float16", "float32"), ("float16", "bfloat16")):  # fmt: skip
        x, y = forms[left](a), forms[right](b)
        for levels in (256, 100):
            expected = sk(quantize(x, levels), quantize(y, levels))
            for backend in ("numba", "torch"):
                got = nmi(x, y, levels, backend=backend).numpy()
                np.testing.assert_allclose(got, expected, atol=1e-12, err_msg=f"{left} {right} {levels} {backend}")
        spoilt = (x * 2, y) if x.is_floating_point() else (x, y * 2)  # a float side out of [0, 1]: refused, not clipped
        with pytest.raises(ValueError, match=r"holds float pixels in \[.*\]; nmi expects \[0, 1\]"):
            nmi(*spoilt)


def test_one_pair_per_call_equals_the_batch_and_the_tensor_backend():
    g = torch.Generator().manual_seed(12)
    a = torch.randint(0, 256, (9, 3, 20, 20), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(0, 40, a.shape, generator=g, dtype=torch.int32)).clamp(0, 255).to(torch.uint8)
    b[1], a[2], b[2] = a[1], 5, 5  # identical, both constant
    for average in ("arithmetic", "geometric", "min", "max"):
        batch = nmi(a, b, average=average)
        single = torch.stack([nmi(a[i].reshape(-1), b[i].reshape(-1), average=average) for i in range(9)])
        assert torch.equal(batch, single)
        assert torch.allclose(batch, nmi(a, b, average=average, backend="torch"), atol=1e-13, rtol=0)
    assert float(batch[1]) == 1.0 and float(batch[2]) == 1.0


def test_the_compiled_finish_is_the_tensor_finish_bit_for_bit():
    import math

    import numpy as np

    from s2snets.metrics import joint_counts
    from s2snets.metrics.nmi import AVERAGES, _compiled_terms, _finish

    g = torch.Generator().manual_seed(13)
    x = torch.randint(0, 256, (40, 1024), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 256, (40, 1024), generator=g, dtype=torch.uint8)
    y[:4], x[5], y[6] = x[:4], 9, 9
    terms, flat = _compiled_terms(x, y, 256, True, None)
    for i, average in enumerate(AVERAGES):
        out = np.empty(40)
        joint_counts.finish(terms, flat, 1024, math.log(1024), i, out)
        reference = _finish(
            torch.from_numpy(terms), torch.from_numpy(flat[:, 0].copy()), torch.from_numpy(flat[:, 1].copy()), 1024, average
        )
        assert torch.equal(torch.from_numpy(out), reference), average


def test_one_pair_in_every_form_a_user_passes_matches_sklearn():
    """The per-call path reads tensors' memory directly and numpy arrays as they are: uint8, float32 and float64,
    (H, W) and flat, tensors and numpy arrays, views with an offset into a batch; whatever it cannot take (a
    transposed view, a read-only array, other levels) goes the general way, and all of them give scikit-learn's
    value. Bad arguments still get their one named error."""
    from s2snets.metrics.nmi import _one_pair_fast

    g = torch.Generator().manual_seed(14)
    batch = torch.randint(0, 256, (5, 32, 32), generator=g, dtype=torch.uint8)
    other = (batch.int() + torch.randint(-20, 21, batch.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    for i in (0, 3):  # a[3] is a view 3 images into the batch's storage
        a, b = batch[i], other[i]
        expected = normalized_mutual_info_score(a.flatten().numpy(), b.flatten().numpy())
        readonly = a.numpy().copy()
        readonly.flags.writeable = False
        forms = [(a, b), (a.reshape(-1), b.reshape(-1)), (a.numpy(), b.numpy()), (a.numpy().ravel(), b.numpy().ravel()),
                 (a.float() / 255, b.float() / 255), (a.double() / 255, b.double() / 255),
                 (a.numpy() / 255.0, b.numpy() / 255.0), ((a.numpy() / 255.0).astype(np.float32), (b.numpy() / 255.0).astype(np.float32)),
                 (a.t(), b.t()), (readonly, b.numpy())]  # fmt: skip
        for x, y in forms:
            assert abs(float(nmi(x, y)) - expected) < 1e-12, (type(x), x.dtype, x.shape)
        assert nmi(a, b).shape == () and nmi(a, b).dtype == torch.float64
        four = normalized_mutual_info_score(
            quantize(a.float() / 255, 4).flatten().numpy(), quantize(b.float() / 255, 4).flatten().numpy()
        )
        assert abs(float(nmi(a.float() / 255, b.float() / 255, levels=4)) - four) < 1e-12
        for narrow in (torch.bfloat16, torch.float16):  # read as their bits, in one compiled call too
            x, y = (a.float() / 255).to(narrow), (b.float() / 255).to(narrow)
            own = normalized_mutual_info_score(quantize(x, 256).flatten().numpy(), quantize(y, 256).flatten().numpy())
            assert _one_pair_fast(x, y, 256, "arithmetic", "auto") is not None, narrow
            assert abs(float(nmi(x, y)) - own) < 1e-12 and abs(float(nmi(x.reshape(-1), y.reshape(-1))) - own) < 1e-12
            if narrow == torch.float16:  # numpy has float16 too
                assert _one_pair_fast(x.numpy(), y.numpy(), 256, "arithmetic", "auto") is not None
                assert abs(float(nmi(x.numpy(), y.numpy())) - own) < 1e-12
                with pytest.raises(ValueError, match=r"a holds float pixels in \[.*\]; nmi expects \[0, 1\]"):
                    nmi(x.numpy() * 2, y.numpy())
            with pytest.raises(ValueError, match=r"b holds float pixels in \[.*\]; nmi expects \[0, 1\]"):
                nmi(x, y * 2)
    a, b = batch[0], other[0]
    with pytest.raises(ValueError, match=r"a holds float pixels in \[0, 255\]"):
        nmi(a.float(), b.float() / 255)
    with pytest.raises(ValueError, match=r"b holds float pixels in \[0, 255\]"):
        nmi(a.numpy() / 255.0, b.numpy().astype(np.float64))
    for bad, message in (({"chunk": 0}, "chunk must be >= 1"), ({"average": ["min"]}, "average must be one of"),
                         ({"levels": 1}, "levels must be an int in"), ({"backend": "gpu"}, "backend must be one of")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            nmi(a, b, **bad)
    with pytest.raises(ValueError, match="same shape"):
        nmi(a, b[:31])
    with pytest.raises(ValueError, match=r"a is a torch.sparse_coo tensor; nmi takes dense images"):
        nmi(a.float().div(255).to_sparse(), b.float().div(255).to_sparse())
    fa, fb = (a.double() / 255).reshape(-1), (b.double() / 255).reshape(-1)  # lists, as scikit-learn takes them
    assert float(nmi(fa.tolist(), fb.tolist())) == pytest.approx(float(nmi(fa, fb)), abs=1e-15)
    with pytest.raises(ValueError, match="a has dtype torch.int64; nmi expects uint8 or float"):
        nmi(a.reshape(-1).tolist(), b.reshape(-1).tolist())  # integer labels: not pixels
    for bad in ([[0.1, 0.2], [0.3]], [0.5, "x"], "abc"):
        with pytest.raises(TypeError, match="a (must be a tensor, a numpy array or a list|holds <U32 values)"):
            nmi(bad, bad)


def test_one_pair_calls_from_several_threads_use_their_own_workspaces():
    """Each thread counts into its own table (the compiled loops write into it): concurrent per-call nMI gives
    the values of a serial run."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(15)
    a = torch.randint(0, 256, (64, 32, 32), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-30, 31, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    serial = [float(nmi(a[i], b[i])) for i in range(64)]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(lambda i: float(nmi(a[i], b[i])), range(64))) == serial
