"""Accuracy of classifiers and error of reconstructions: pure tensor functions.

>>> import torch
>>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]), 2)["top1"]
0.5
>>> round(psnr(0.001), 6)
30.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def top_classes(logits: Tensor) -> Tensor:
    """The min(5, K) highest-scoring classes per row, best first. (N, K) -> int64 (N, min(5, K))."""
    return logits.topk(min(5, logits.shape[1]), dim=1).indices


def accuracy_of_top(top: Tensor, labels: Tensor, num_classes: int) -> dict:
    """Top-1, top-5 (top-k, k = min(5, K)) and per-class top-1 from ``top_classes`` (what a streamed evaluation keeps
    instead of N x K logits). (N, k), (N,) -> {"top1", "top5", "per_class"} as fractions in [0, 1]."""
    hit1 = top[:, 0] == labels
    per_class = [float(hit1[labels == c].float().mean()) if (labels == c).any() else float("nan") for c in range(num_classes)]
    return {
        "top1": float(hit1.float().mean()),
        "top5": float((top == labels[:, None]).any(1).float().mean()),
        "per_class": per_class,
    }


def accuracy(logits: Tensor, labels: Tensor, num_classes: int) -> dict:
    """Top-1, top-5 and per-class top-1 accuracy of logits. (N, K), (N,) -> dict of fractions."""
    return accuracy_of_top(top_classes(logits), labels, num_classes)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error, for values in [0, peak]; inf for mse 0."""
    return 10 * math.log10(peak * peak / mse) if mse > 0 else math.inf


def reconstruction_error(originals: Tensor, reconstructions: Tensor) -> dict:
    """MSE and PSNR (dB, peak 1) of reconstructions (..., C, H, W) in [0, 1] pixel units."""
    mse = float((originals.float() - reconstructions.float()).square().mean())
    return {"mse": mse, "psnr": psnr(mse)}


def figure_indices(labels: Tensor, n: int) -> Tensor:
    """``n`` image indices spread across the classes: the first image of each class, then the second, ... (N,) -> (n,)."""
    per_class = [torch.nonzero(labels == c).flatten().tolist() for c in sorted(set(labels.tolist()))]
    picked: list[int] = []
    for rank in range(max((len(p) for p in per_class), default=0)):
        picked += [p[rank] for p in per_class if rank < len(p)]
        if len(picked) >= n:
            break
    return torch.tensor(picked[:n], dtype=torch.long)
