"""The forms the measures take: what a notebook holds, as one tensor."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def as_tensor(x, name: str) -> Tensor:
    """A tensor as it is; a numpy array (or anything with ``__array__``, or a list of numbers, as scikit-learn
    takes) as a CPU tensor sharing its memory where it can (a read-only array is copied: torch warns about one).
    TypeError naming ``name`` for anything else, a ragged list or values that are not numbers."""
    if isinstance(x, Tensor):
        return x
    if not (hasattr(x, "__array__") or isinstance(x, list | tuple)):
        raise TypeError(f"{name} must be a tensor, a numpy array or a list of numbers, got {type(x).__name__}")
    try:
        array = np.ascontiguousarray(x)
    except ValueError:  # a ragged list
        raise TypeError(f"{name} must be a tensor, a numpy array or a list of numbers of one shape") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{name} holds {array.dtype} values; give numbers")
    return torch.from_numpy(array if array.flags.writeable else array.copy())
