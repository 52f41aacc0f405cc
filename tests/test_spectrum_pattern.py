import pytest
import torch
from conftest import needs_fashion

from s2snets.metrics.gradients import gradient_probe, noise_probe
from s2snets.metrics.pattern import constant_pattern
from s2snets.metrics.spectrum import (
    azimuthal_spectrum,
    lattice_energy,
    lattice_mask,
    noise_lattice_share,
    radial_profile,
)
from s2snets.models import build_classifier


def checkerboard(size, period):
    idx = torch.arange(size)
    return (((idx[:, None] // (period // 2)) + (idx[None, :] // (period // 2))) % 2).float()


@pytest.mark.parametrize("period", [2, 4, 8])
def test_checkerboards_have_all_their_power_on_the_lattice(period):
    x = checkerboard(32, period)
    assert float(lattice_energy(x, period)) == pytest.approx(1.0, abs=1e-6)
    if period > 2:  # a coarser pattern is not on the finer lattice
        assert float(lattice_energy(x, 2)) < 0.5


def test_white_noise_has_the_lattice_share():
    x = torch.randn(200, 32, 32, generator=torch.Generator().manual_seed(0))
    for p in (2, 4, 8):
        assert float(lattice_energy(x, p).mean()) == pytest.approx(noise_lattice_share(32, 32, p), rel=0.1)
    assert noise_lattice_share(32, 32, 2) == pytest.approx(3 / 1023)


def test_flat_and_batched_and_differentiable():
    assert float(lattice_energy(torch.ones(16, 16), 2)) == 0.0
    x = torch.randn(3, 2, 16, 16, requires_grad=True)
    e = lattice_energy(x, 4)
    assert e.shape == (3, 2)
    e.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert lattice_mask(16, 16, 4).sum() == 15


@needs_fashion
def test_fashion_image_has_little_lattice_energy():
    from s2snets.data import fashion_mnist

    x = fashion_mnist("test").images[:50, 0].float() / 255
    e2 = float(lattice_energy(x, 2).mean())
    assert e2 < 0.05
    noisy = x + 0.3 * checkerboard(32, 2)
    assert float(lattice_energy(noisy, 2).mean()) > 10 * e2


def test_radial_profile_and_azimuthal_spectrum():
    p = torch.zeros(8, 8)
    p[0, 1] = p[1, 0] = 4.0
    prof = radial_profile(p)
    f = torch.fft.fftfreq(8, d=1 / 8)
    ring1 = int(((f[:, None] ** 2 + f[None, :] ** 2).sqrt().round() == 1).sum())  # 8 bins: 4 axial, 4 diagonal
    assert prof.shape == (5,) and float(prof[1]) == pytest.approx(8.0 / ring1) and prof[0] == 0
    x = torch.randn(20, 1, 16, 16)
    assert azimuthal_spectrum(x).shape == (9,)


def test_constant_pattern_finds_a_stamp():
    g = torch.Generator().manual_seed(0)
    orig = torch.rand(100, 1, 16, 16, generator=g)
    stamp = 0.5 * checkerboard(16, 2)
    recon = orig.clone()
    recon[..., :8, :] = stamp[:8]  # the top half is the same in every reconstruction
    pat = constant_pattern(orig, recon, (2, 4))
    assert torch.allclose(pat.constancy[0, :8], torch.ones(8, 16), atol=1e-6)
    assert torch.allclose(pat.constancy[0, 8:], torch.zeros(8, 16), atol=1e-6)
    assert pat.mean_constancy == pytest.approx(0.5, abs=1e-6) and pat.constant_share == pytest.approx(0.5)
    expected = (recon - orig).mean(0)
    assert torch.allclose(pat.mean_difference, expected.float(), atol=1e-6)
    from_numpy = constant_pattern(orig.numpy(), recon.numpy(), (2, 4))  # numpy arrays, as a notebook holds them
    assert torch.equal(from_numpy.mean_difference, pat.mean_difference) and from_numpy.lattice == pat.lattice


def test_gradient_probe_sees_strided_checkerboards():
    torch.manual_seed(0)
    strided = torch.nn.Conv2d(1, 1, 3, 2, 1, bias=False)
    strided.weight.data.fill_(1.0)
    model = torch.nn.Sequential(strided, torch.nn.Flatten())
    probe = gradient_probe(model, torch.randn(4, 1, 16, 16))
    assert probe.lattice[2] > 0.5  # the 1-2-1-2 overlap of k=3, s=2 in the gradient
    even = torch.nn.Conv2d(1, 1, 2, 2, bias=False)
    even.weight.data.fill_(1.0)
    assert gradient_probe(torch.nn.Sequential(even, torch.nn.Flatten()), torch.randn(4, 1, 16, 16)).lattice[2] < 1e-6
    p = noise_probe(build_classifier("resnet_s", 10, 1), 1, 32, n=8)
    assert set(p.lattice) == {2, 4, 8} and p.mean_power.shape == (32, 32)


def test_lattice_contrast_finds_a_checkerboard_under_image_content():
    from s2snets.metrics.spectrum import lattice_contrast, power_spectrum

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    content = torch.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 60) + 0.01 * torch.randn(32, 32, generator=g)
    checker = 0.02 * (-1.0) ** (yy + xx)
    assert lattice_contrast(power_spectrum(content), 2) < 1.5  # a smooth image has no lattice peak
    assert lattice_contrast(power_spectrum(content + checker), 2) > 10  # a faint checkerboard has one
    assert lattice_energy(content + checker, 2) < 0.5  # while its lattice *share* stays small


def test_lattice_amplitude_is_the_rms_of_the_checkerboard():
    from s2snets.metrics.pattern import lattice_amplitude

    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    checker = 0.05 * (-1.0) ** (yy + xx)
    smooth = torch.sin(2 * torch.pi * yy / 16)
    assert lattice_amplitude(checker + smooth, 2) == pytest.approx(0.05, rel=1e-6)
    assert lattice_amplitude(smooth, 2) == pytest.approx(0.0, abs=1e-6)  # float32 input


def test_gradient_probe_takes_an_int_target_like_captum():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, 2, 1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))
    x = torch.randn(6, 1, 16, 16)
    by_int = gradient_probe(model, x, 3, (2,))
    by_tensor = gradient_probe(model, x, torch.full((6,), 3), (2,))
    assert torch.allclose(by_int.mean_power, by_tensor.mean_power)
    assert "P=2" in repr(by_int) and len(repr(by_int)) < 200


def test_the_lattice_measures_take_numpy_maps_and_do_not_turn_nan_into_zero():
    import numpy as np

    from s2snets.metrics.lattice import band_amplitude, peak_amplitude
    from s2snets.metrics.pattern import lattice_amplitude

    g = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 16, 16, generator=g) + 0.2 * checkerboard(16, 2)
    for fn in (lattice_energy, peak_amplitude, band_amplitude):
        assert torch.equal(fn(maps.numpy(), 2), fn(maps, 2)), fn.__name__
    assert lattice_amplitude(maps[0].numpy(), 2) == lattice_amplitude(maps[0], 2)
    spoilt = maps.clone()
    spoilt[1, 3, 3] = float("nan")
    energy = lattice_energy(spoilt, 2)
    assert energy[0] > 0 and torch.isnan(energy[1]) and float(lattice_energy(torch.zeros(8, 8), 2)) == 0.0
    flat = torch.zeros(1, 8, 8, requires_grad=True)  # a flat map: energy 0 and a finite gradient
    lattice_energy(flat, 2).sum().backward()
    assert torch.isfinite(flat.grad).all()
    for fn in (lattice_energy, peak_amplitude, band_amplitude, lattice_amplitude):
        with pytest.raises(ValueError, match=r"must be \(\.\.\., H, W\), got shape \(16,\)"):
            fn(np.zeros(16), 2)
