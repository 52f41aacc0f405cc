import numpy as np
import pytest
import torch

from s2snets.errors import ConfigError
from s2snets.layers.interventions import Intervened, notch_gradient, shift_image
from s2snets.metrics.pattern import lattice_component, phase_lock


def test_shift_image_moves_content_down_right_and_replicates_the_border():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = shift_image(x, 1, 1)
    assert torch.equal(y[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(y[..., 0, 1:], x[..., 0, :-1]) and float(y[0, 0, 0, 0]) == float(x[0, 0, 0, 0])


def test_gradient_notch_keeps_forward_and_removes_lattice_power():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    w = torch.randn(2, 3, 16, 16)
    y = notch_gradient(x, (2,))
    assert torch.equal(y, x)
    (y * w).sum().backward()
    # independent reference with numpy: zero the period-2 lattice frequencies of the plain gradient w
    spec = np.fft.fft2(w.numpy())
    for u, v in [(0, 8), (8, 0), (8, 8)]:
        spec[..., u, v] = 0
    expected = np.fft.ifft2(spec).real
    assert np.allclose(x.grad.numpy(), expected, atol=1e-5)
    power = np.abs(np.fft.fft2(x.grad.numpy())) ** 2
    assert power[..., 8, 8].max() < 1e-8 and power[..., 0, 0].min() > 0  # lattice gone, DC kept


def test_intervened_wraps_as_specified():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return x.flatten(1)[:, :2]

    x = torch.arange(16.0).view(1, 1, 4, 4)
    Intervened(Probe(), "grid_shift", 2)(x)
    assert torch.equal(seen[-1], shift_image(x, 1, 1))
    with torch.no_grad():
        Intervened(Probe(), "phase_average", 2)(x)
    assert torch.equal(seen[-1], x)  # evaluation: no jitter
    torch.manual_seed(3)
    Intervened(Probe(), "phase_average", 4)(x.requires_grad_())
    torch.manual_seed(3)
    dy, dx = (int(v) for v in torch.randint(0, 4, (2,)))
    assert torch.equal(seen[-1], shift_image(x.detach(), dy, dx))  # drawn from the global (checkpointed) RNG
    with pytest.raises(ConfigError):
        Intervened(Probe(), "bogus")


def test_phase_lock_follows_the_shift():
    i = torch.arange(16.0)
    rows = (-1.0) ** i
    pattern = rows[:, None] * torch.ones(16)[None, :] + 0.3 * torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
    moved = torch.roll(pattern, shifts=(1, 1), dims=(0, 1))
    assert phase_lock(pattern, pattern, 2) == pytest.approx(1.0)
    assert phase_lock(moved, pattern, 2, undo_shift=(1, 1)) == pytest.approx(1.0)
    assert phase_lock(moved, pattern, 2) < -0.5  # the row alternation flips sign under a one-pixel shift
    lattice = lattice_component(rows[:, None] * torch.ones(16)[None, :], 2)
    assert torch.allclose(lattice.float(), rows[:, None] * torch.ones(16)[None, :], atol=1e-6)
