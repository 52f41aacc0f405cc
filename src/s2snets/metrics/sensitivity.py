"""Which pixel positions a classifier reads, from its forward pass alone.

A gradient can say a position does not matter when the forward pass reads it (an artifact of the backward pass),
or the forward pass may really ignore it (a layer that samples every other pixel). Only the forward pass can tell
them apart: noise is added to the pixels of one phase (y mod P, x mod P) at a time and the change of the
classifier's output distribution is measured,

    S_phase = mean_n KL( softmax f(x_n) || softmax f(x_n + sigma * noise * 1[phase]) )

(natural logarithm, per image; ``draws`` noise draws). A classifier that ignores a phase gets S = 0 there, exactly.
``read_ratio`` = min / max over phases: 1 when every phase matters equally, 0 when some phase is never read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def phase_sensitivity(
    model: nn.Module, inputs: Tensor, period: int, *, sigma: float = 0.5, draws: int = 4, seed: int = 0, batch_size: int = 256
) -> Tensor:
    """S_phase for (N, C, H, W) ``inputs`` (in the classifier's input space; ``sigma`` in its units). -> (P, P) float64.

    The model is put in eval mode for the measurement and restored after it. Deterministic for a given ``seed``.
    """
    if inputs.ndim != 4 or not inputs.is_floating_point() or len(inputs) == 0:
        raise ValueError(f"inputs must be a non-empty float tensor (N, C, H, W), got {tuple(inputs.shape)} {inputs.dtype}")
    if period < 2 or period > min(inputs.shape[-2:]):
        raise ValueError(f"period must be in 2..{min(inputs.shape[-2:])}, got {period}")
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    h, w = inputs.shape[-2:]
    totals = torch.zeros(period, period, dtype=torch.float64)
    try:
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size]
            reference = F.log_softmax(model(x).float(), 1)
            for py in range(period):
                for px in range(period):
                    mask = torch.zeros(h, w, device=x.device, dtype=x.dtype)
                    mask[py::period, px::period] = 1
                    for _ in range(draws):
                        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * (sigma * mask)
                        perturbed = F.log_softmax(model(x + noise).float(), 1)
                        kl = (reference.exp() * (reference - perturbed)).sum(1).clamp_min(0)
                        totals[py, px] += float(kl.double().sum())
    finally:
        model.train(was_training)
    return totals / (len(inputs) * draws)


def read_ratio(sensitivity: Tensor) -> float:
    """min / max of a phase sensitivity (P, P): 1 = every phase read alike, 0 = some phase never read."""
    top = float(sensitivity.max())
    return float(sensitivity.min()) / top if top > 0 else float("nan")
