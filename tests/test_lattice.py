"""Lattice measures, gradient filters and the forward read test, against brute force and autograd."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from s2snets.experiments.interventions import GridShifted
from s2snets.layers.gradient import band_stop_gradient, filter_gradient, smooth_gradient
from s2snets.metrics.lattice import (
    band_amplitude,
    frame_follow,
    lattice_band,
    lattice_bins,
    lattice_coefficients,
    neighbourhood_radius,
    peak_amplitude,
    phase_modulation,
    phase_scrambled_floor,
    random_sign_floor,
    smoothing_response,
)
from s2snets.metrics.sensitivity import phase_sensitivity, read_ratio
from s2snets.models.hooks import remove_hooks, smooth_strided_backward


def _tile(period: int, size: int, seed: int = 0) -> torch.Tensor:
    t = torch.randn(period, period, generator=torch.Generator().manual_seed(seed))
    return (t - t.mean()).repeat(size // period, size // period).double()


def test_lattice_band_is_the_voronoi_cell_of_the_non_dc_lattice_points():
    h = w = 12
    for p in (2, 3, 4):
        band = lattice_band(h, w, p)
        points = [(u, v) for u, v, _, _ in lattice_bins(h, w, p)]
        for u in range(h):
            for v in range(w):

                def d(a, b, u=u, v=v):
                    return max(min((u - a) % h, (a - u) % h), min((v - b) % w, (b - v) % w))

                assert bool(band[u, v]) == (min(d(a, b) for a, b in points) < d(0, 0)), (p, u, v)


def test_peak_amplitude_counts_a_tile_and_not_broadband_content():
    size, p = 32, 2
    tile = 0.01 * _tile(p, size)
    rms = float(tile.square().mean().sqrt())
    assert float(peak_amplitude(tile, p)) == pytest.approx(rms, rel=1e-9)
    noise = torch.randn(size, size, generator=torch.Generator().manual_seed(1)).double() * 0.01
    assert float(peak_amplitude(noise, p)) < 0.3 * float(noise.square().mean().sqrt()) / math.sqrt(size)
    edge = torch.zeros(size, size, dtype=torch.float64)
    edge[:, 10:] = 0.05  # a sharp edge: power at every frequency, a lattice at none
    assert float(peak_amplitude(edge, p)) < 1e-3 * 0.05


def test_band_amplitude_equals_a_brute_force_dft():
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(2)).double()
    p, r = 2, neighbourhood_radius(16, 2)
    spectrum = np.fft.fft2(x.numpy())
    mask = np.zeros((16, 16), bool)
    for u, v, _, _ in lattice_bins(16, 16, p):
        for du in range(-r, r + 1):
            for dv in range(-r, r + 1):
                mask[(u + du) % 16, (v + dv) % 16] = True
    expected = np.sqrt((np.abs(spectrum) ** 2 * mask).sum((-2, -1))) / 256
    assert np.allclose(band_amplitude(x, p).numpy(), expected)
    coefficients = lattice_coefficients(x[0], p).numpy()
    assert np.allclose(coefficients, [spectrum[0][u, v] / 256 for u, v, _, _ in lattice_bins(16, 16, p)])


def test_random_sign_floor_separates_a_shared_pattern_from_image_specific_content():
    g = torch.Generator().manual_seed(3)
    specific = torch.randn(400, 32, 32, generator=g).double() * 0.05
    shared = specific + 0.01 * _tile(2, 32)
    measure = lambda m: peak_amplitude(m, 2)  # noqa: E731
    floor = random_sign_floor(specific, measure)
    assert float(measure(specific.mean(0))) < 3 * floor  # no shared pattern: the mean sits on its floor
    assert float(measure(shared.mean(0))) > 20 * random_sign_floor(shared, measure)


def _shifted_lattice_gradient(shift, lattice):
    """The gradient that a lattice fixed in the classifier's frame sends through a grid-shifted identity autoencoder."""

    class Identity(nn.Module):
        decoder = nn.Identity()

        def forward(self, x):
            return x

    x = torch.zeros(1, 1, *lattice.shape, requires_grad=True)
    (GridShifted(Identity(), shift)(x)[0, 0] * lattice).sum().backward()
    return x.grad[0, 0].double()


@pytest.mark.parametrize("period,shift", [(2, (1, 0)), (2, (0, 1)), (4, (1, 0)), (4, (0, 3))])
def test_frame_follow_tells_which_frame_a_lattice_is_tied_to(period, shift):
    follow = frame_follow
    lattice = _tile(period, 16, seed=period)
    # Tied to the decoder's grid: a map written in the autoencoder's frame comes out rolled by -shift.
    in_decoder_frame = torch.roll(lattice, shifts=(-shift[0], -shift[1]), dims=(0, 1))
    assert follow(in_decoder_frame, lattice, period, shift) == pytest.approx(1.0)
    # Tied to the classifier: the grid moved, the classifier's lattice did not (its gradient is unchanged).
    assert follow(_shifted_lattice_gradient(shift, lattice), lattice, period, shift) == pytest.approx(-1.0)
    unrelated = _tile(period, 16, seed=99)
    assert abs(follow(unrelated, lattice, period, shift)) < 1


def test_phase_modulation_sees_zero_insertion_and_its_floor_does_not():
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(64, 1, 16, 16, generator=g).double()
    zero_inserted = maps.clone()
    zero_inserted[..., 1::2, :] = 0
    zero_inserted[..., :, 1::2] = 0
    assert phase_modulation(zero_inserted, 2) >= 1000 / 4  # capped: the minimum is clamped at mean / 1000
    assert phase_modulation(maps, 2) < 1.2
    assert phase_scrambled_floor(zero_inserted, 2) < phase_modulation(zero_inserted, 2) / 10


def test_gradient_filters_keep_the_forward_pass_and_filter_the_gradient_as_an_fft_does():
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    upstream = torch.randn(2, 3, 16, 16)
    response = smoothing_response(16, 16, 2)
    y = filter_gradient(x, response)
    assert torch.equal(y, x)
    y.backward(upstream)
    expected = torch.fft.ifft2(torch.fft.fft2(upstream) * response).real
    assert torch.allclose(x.grad, expected, atol=1e-6)
    for u, v, _, _ in lattice_bins(16, 16, 2):  # zeros on the lattice
        assert float(response[u, v]) == 0
    x2 = torch.randn(1, 1, 16, 16, requires_grad=True)
    band_stop_gradient(x2, 2).backward(upstream[:1, :1])
    assert float(band_amplitude(x2.grad[0, 0], 2, radius=0)) < 1e-6  # the band holds the bins
    x3 = torch.randn(1, 1, 16, 16, requires_grad=True)
    smooth_gradient(x3, 4).backward(upstream[:1, :1])
    assert float(peak_amplitude(x3.grad[0, 0], 4)) < 1e-6


def test_smooth_strided_backward_keeps_the_output_and_evens_out_zero_insertion():
    conv = nn.Conv2d(1, 1, 1, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    model = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(8, 1, 16, 16, requires_grad=True)
    out = model(x)
    out.sum().backward()
    assert phase_modulation(x.grad, 2) > 100  # a 1x1 stride-2 layer never reads 3 of 4 inputs
    handles = smooth_strided_backward(model)
    x2 = x.detach().clone().requires_grad_(True)
    out2 = model(x2)
    assert torch.equal(out2, out)
    out2.sum().backward()
    assert phase_modulation(x2.grad, 2) == pytest.approx(1.0, abs=1e-6)
    remove_hooks(handles)


def test_phase_sensitivity_finds_the_phases_a_classifier_never_reads():
    class EvenReader(nn.Module):
        def forward(self, x):
            return x[..., ::2, ::2].flatten(1)[:, :4] * 10

    x = torch.randn(16, 1, 8, 8)
    s = phase_sensitivity(EvenReader(), x, 2, draws=2)
    assert float(s[0, 0]) > 0 and float(s[0, 1]) == float(s[1, 0]) == float(s[1, 1]) == 0
    assert read_ratio(s) == 0
    reader = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 3))
    assert read_ratio(phase_sensitivity(reader, x, 2, draws=2)) > 0.2
