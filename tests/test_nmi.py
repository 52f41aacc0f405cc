import numpy as np
import pytest
import torch
from conftest import needs_fashion
from sklearn.metrics import normalized_mutual_info_score

from s2snets.metrics.nmi import inter_nmi, intra_nmi, nmi, quantize, sample_pairs


def sk(a, b, average="arithmetic"):
    return np.array(
        [normalized_mutual_info_score(x.flatten().numpy(), y.flatten().numpy(), average_method=average) for x, y in zip(a, b)]
    )


@pytest.mark.parametrize("average", ["arithmetic", "geometric", "min", "max"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 32, 32), (3, 40, 40)])  # 40x40x3 takes the dense path
def test_random_pairs_match_sklearn(average, shape):
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (6, *shape), generator=g, dtype=torch.uint8)
    b = ((a.int() + torch.randint(0, 60, a.shape, generator=g, dtype=torch.int32)) % 256).to(torch.uint8)
    np.testing.assert_allclose(nmi(a, b, average=average).numpy(), sk(a, b, average), rtol=0, atol=1e-9)


def test_both_counting_paths_agree():
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 16, (5, 1, 64, 64), generator=g, dtype=torch.uint8) * 16
    b = torch.randint(0, 16, (5, 1, 64, 64), generator=g, dtype=torch.uint8) * 16
    dense = nmi(a, b)  # N = 4096 < 65536/4: sparse path
    wide = nmi(a.repeat(1, 5, 1, 1), b.repeat(1, 5, 1, 1))  # N = 20480 >= 16384: dense path, same counts x5
    np.testing.assert_allclose(dense.numpy(), sk(a, b), atol=1e-9)
    np.testing.assert_allclose(wide.numpy(), sk(a.repeat(1, 5, 1, 1), b.repeat(1, 5, 1, 1)), atol=1e-9)


def test_degenerate_pairs_match_sklearn():
    z = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    c = torch.full((1, 1, 8, 8), 77, dtype=torch.uint8)
    r = torch.randint(0, 256, (1, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    two = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    two[..., :4] = 255
    for a, b in [(z, z), (z, c), (z, r), (r, z), (r, r), (two, two), (two, 255 - two), (two, r)]:
        np.testing.assert_allclose(nmi(a, b).numpy(), sk(a, b), atol=1e-9)


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
    assert torch.allclose(intra_nmi(x, x), torch.ones(30, dtype=torch.float64), atol=1e-12)
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
