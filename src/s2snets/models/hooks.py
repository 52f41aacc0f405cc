"""Hooks that change a model's backward pass and nothing else.

``smooth_strided_backward(model)`` smooths the gradient that each strided layer sends back to its input (the
zero-inserted, unevenly overlapped map of Odena et al.) with ``layers.gradient.smooth_gradient`` at the layer's own
stride, the hook-based surrogate of Herdt et al. (2024, "Smooth Deep Saliency"): the forward pass, and so the
accuracy, stay exactly as they were. It returns the hook handles; ``remove_hooks`` undoes it.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Flatten(), nn.LazyLinear(3))
>>> x = torch.randn(2, 1, 8, 8)
>>> before = model(x)
>>> handles = smooth_strided_backward(model)
>>> torch.equal(model(x), before), len(handles)
(True, 1)
>>> remove_hooks(handles)
"""

from __future__ import annotations

from torch import nn
from torch.utils.hooks import RemovableHandle

from s2snets.layers.gradient import smooth_gradient
from s2snets.models.classifiers import _stride, downsampling_sites


def smooth_strided_backward(model: nn.Module, order: int = 2) -> list[RemovableHandle]:
    """Register, on every strided layer of ``model`` (``models.downsampling_sites``), a forward pre-hook that passes
    its input through ``smooth_gradient`` at the layer's stride. Returns the handles (one per layer)."""
    handles = []
    for _, module in downsampling_sites(model):
        stride = _stride(module)

        def pre_hook(mod: nn.Module, args: tuple, stride: int = stride) -> tuple:
            x = args[0]
            if x.shape[-1] % stride or x.shape[-2] % stride or min(x.shape[-2:]) < stride:
                return args  # a map the stride does not tile: its lattice is not periodic on it, leave it
            return (smooth_gradient(x, stride, order), *args[1:])

        handles.append(module.register_forward_pre_hook(pre_hook))
    return handles


def remove_hooks(handles: list[RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
