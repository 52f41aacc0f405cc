"""Labelled image sets held in memory, with their normalisation statistics.

``ImageSet``: uint8 ``(N, C, H, W)`` in [0, 255], ``labels`` int64 ``(N,)``; models see ``normalize(batch)``, float32
(x / 255 - mean) / std per channel, the mean/std travelling with the set. ``TensorSet``: a set already in a model's
input space, as a notebook holds one. Holding a set in memory keeps the training step free of I/O (Fashion-MNIST's
60k x 28 x 28 is 47 MB); a folder too large for memory is streamed (``data.stream``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from s2snets.errors import DataError


class _InMemory:
    """What every set held in memory shares: its length and shape, and the subsets of it the pipeline takes.
    (Mixed into the frozen dataclasses below, which hold ``images`` (N, C, H, W) and ``labels`` (N,).)"""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def load(self):
        """Already in memory (``FolderStream.load`` decodes a stream's images)."""
        return self

    def subset(self, indices: Tensor | slice):
        return replace(self, images=self.images[indices], labels=self.labels[indices])  # type: ignore[type-var]  # mixed into dataclasses only

    def head(self, n: int, seed: int = 0):
        """The first ``n`` images after a seeded shuffle (all of them if n <= 0 or n >= N)."""
        if n <= 0 or n >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return self.subset(order.sort().values)


@dataclass(frozen=True)
class ImageSet(_InMemory):
    """A labelled image set in memory. ``images``: uint8 (N, C, H, W); ``labels``: int64 (N,)."""

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    skipped: tuple[str, ...] = ()  # unreadable files left out (image folders with on_corrupt="skip")

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.name}: {self.labels.shape[0]} labels for {self.images.shape[0]} images")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise DataError(f"{self.name}: a label lies outside 0..{len(self.class_names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 or [0, 1] float (B, C, H, W) -> float32 (B, C, H, W) standardised with this set's mean/std."""
        return standardize(batch, self.mean, self.std)

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of ``normalize``: float (B, C, H, W) -> float in [0, 1] units (not clipped)."""
        return destandardize(x, self.mean, self.std)


@dataclass(frozen=True)
class TensorSet(_InMemory):
    """A labelled set already in a model's input space, as a notebook holds one: ``images`` float (N, C, H, W),
    ``labels`` int64 (N,). ``normalize`` is the identity (the models see the images as given); ``denormalize`` maps
    them to pixel units, x * std + mean per channel (mean 0, std 1: the images are pixels in [0, 1])."""

    images: Tensor
    labels: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "tensors"
    skipped: tuple[str, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in range(self.num_classes))

    def normalize(self, batch: Tensor) -> Tensor:
        return batch.float()

    def denormalize(self, x: Tensor) -> Tensor:
        return destandardize(x, self.mean, self.std)


def as_tensor_set(data, *, mean=None, std=None, num_classes: int | None = None, name: str = "data") -> TensorSet:
    """A ``TensorSet`` from what a notebook holds: a ``Dataset`` or ``DataLoader`` of (image, label), a pair
    (images, labels) of tensors or numpy arrays, or a ``TensorSet``. Images (N, C, H, W) (or (N, H, W): one channel)
    in the classifier's input space; ``mean``/``std``: the standardisation they carry (None: they are pixels in
    [0, 1]). DataError naming what is wrong otherwise."""
    if isinstance(data, TensorSet):
        return data
    images, labels = _collect(data)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(f"{name}: images must be (N, C, H, W) (or (N, H, W)), got shape {tuple(images.shape)}")
    if not images.is_floating_point() and images.dtype != torch.uint8:
        raise DataError(
            f"{name}: images must be uint8 (0...255) or float (pixels in [0, 1], or standardised: pass mean= and std=), "
            f"got {images.dtype}; convert 0...255 integers with .to(torch.uint8) or .astype(np.uint8)"
        )
    if images.shape[1] > 4 and images.shape[-1] in (1, 3, 4):  # (N, H, W, C), as numpy and PIL hold images
        raise DataError(
            f"{name}: images {tuple(images.shape)} look channels-last (N, H, W, C); pass them as (N, C, H, W): "
            "images.permute(0, 3, 1, 2) for a tensor, images.transpose(0, 3, 1, 2) for a numpy array"
        )
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
        raise DataError(
            f"{name}: labels must be N integer classes, got {labels.dtype} {tuple(labels.shape)} for {len(images)} images"
        )
    if len(images) == 0:
        raise DataError(f"{name} is empty")
    if not bool(torch.isfinite(images).all()):
        raise DataError(f"{name}: images hold NaN or infinite values")
    labels = labels.long()
    if int(labels.min()) < 0:
        raise DataError(f"{name}: labels must be class indices >= 0, got {int(labels.min())}")
    k = num_classes or int(labels.max()) + 1
    c = images.shape[1]
    mean_, std_ = _per_channel(mean, 0.0, c, "mean", name), _per_channel(std, 1.0, c, "std", name)
    if not all(np.isfinite(mean_ + std_)) or min(std_) <= 0:
        raise DataError(f"{name}: mean must be finite and std finite and > 0, got mean={mean_}, std={std_}")
    return TensorSet(images.contiguous(), labels, k, mean_, std_, name)


def _per_channel(value, default: float, channels: int, what: str, name: str) -> tuple[float, ...]:
    """mean or std as one float per channel: None (the default), a number (every channel), or one value per channel
    as a sequence, numpy array or tensor (torchvision's Normalize takes the same)."""
    if value is None:
        return (default,) * channels
    try:
        values = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{name}: {what} must be a number or one number per channel, got {value!r}") from None
    if values.size == 1:
        values = np.repeat(values, channels)
    if values.size != channels:
        raise DataError(f"{name}: mean/std must have one value per channel ({channels}), got {values.size} for {what}")
    return tuple(float(v) for v in values)


def _collect(data) -> tuple[Tensor, Tensor]:
    if isinstance(data, tuple | list) and len(data) == 2 and all(hasattr(d, "shape") for d in data):
        return tuple(d if isinstance(d, Tensor) else torch.from_numpy(np.ascontiguousarray(d)) for d in data)  # type: ignore[return-value]
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[0], data.tensors[1]
    if isinstance(data, DataLoader | Dataset) or hasattr(data, "__getitem__"):
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=256, shuffle=False, collate_fn=_pairs)
        xs, ys = [], []
        try:
            for batch in loader:
                if not isinstance(batch, list | tuple) or len(batch) < 2:
                    raise DataError(f"each item of the data must be (image, label); got {_what(batch)}")
                xs.append(_item_tensor(batch[0], "image", "a tensor, a numpy array or a PIL image"))
                ys.append(_item_tensor(batch[1], "label", "a class index (an int)"))
        except TypeError as exc:  # a DataLoader of the user's, whose default collate met PIL images
            if "PIL" not in str(exc):
                raise
            raise DataError(
                "the DataLoader's items are PIL images: give its dataset transform=torchvision.transforms.PILToTensor() "
                "(or ToTensor()), or pass the dataset itself"
            ) from None
        if not xs:
            raise DataError("the data yielded no item")
        return _stack(xs, torch.cat), torch.cat(ys)
    raise DataError(f"data of type {type(data).__name__} is not a Dataset, a DataLoader or (images, labels); give one of those")


def _what(item) -> str:
    if isinstance(item, dict):
        return f"a dict with keys {sorted(map(str, item))[:6]}: give a dataset whose items are (item['image'], item['label'])"
    return f"a single {type(item).__name__}"


def _pairs(items: list) -> tuple[Tensor, Tensor]:
    """A batch of (image, label) items: images as tensors (PIL images, as torchvision datasets without a transform
    yield them, as uint8 (C, H, W): grey stays one channel, any other mode becomes RGB, as torchvision's loader
    does), labels as a (B,) tensor."""
    images, labels = [], []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) < 2:
            raise DataError(f"each item of the data must be (image, label); got {_what(item)}")
        images.append(_image_tensor(item[0]))
        labels.append(_item_tensor(item[1], "label", "a class index (an int)"))
    return _stack(images, torch.stack), torch.stack(labels)


def _item_tensor(value, what: str, expected: str) -> Tensor:
    try:
        return value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"each item's {what} must be {expected}; got a {type(value).__name__}") from None


def wide_grey(image, name: str = "image") -> np.ndarray | None:
    """The pixels of a PIL image of more than 8 bits as float64 (H, W) in [0, 1]: integer grey ("I;16...", "I") as
    v / 65535, float grey ("F") as it is; None for every other mode. DataError when the values lie outside (a
    32-bit image beyond 16 bits, a float image beyond [0, 1]): PIL's own conversion to 8 bits clips every value above
    255, which turns a 16-bit image white."""
    if not (image.mode.startswith("I") or image.mode == "F"):
        return None
    values = np.asarray(image).astype(np.float64)
    top = 1.0 if image.mode == "F" else 65535.0
    if values.size and not (values.min() >= 0 and values.max() <= top):
        kind = "float pixels" if image.mode == "F" else "integer pixels"
        raise DataError(
            f"{name}: {kind} in [{values.min():g}, {values.max():g}]; read are 8- and 16-bit images and float ones in [0, 1]"
        )
    return values / top


def eight_bit(image, name: str = "image"):
    """A PIL image as 8-bit grey ("L") or colour ("RGB"): wider grey (``wide_grey``) rounded to 0...255, 1-bit and
    grey with alpha as grey, every other mode (palette, alpha, CMYK) as RGB, as torchvision's loader does."""
    from PIL import Image

    if image.mode in ("L", "RGB"):
        return image
    grey = wide_grey(image, name)
    if grey is not None:
        return Image.fromarray(np.round(grey * 255).astype(np.uint8), "L")
    return image.convert("L" if image.mode in ("1", "LA", "La") else "RGB")


def _image_tensor(image) -> Tensor:
    from PIL import Image

    if isinstance(image, Image.Image):
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(eight_bit(image))
    return _item_tensor(image, "image", "a tensor, a numpy array or a PIL image")


def _stack(images: list[Tensor], join) -> Tensor:
    """``join`` (stack or cat) of images; DataError naming two sizes when they differ."""
    shapes = {tuple(x.shape[1:]) if join is torch.cat else tuple(x.shape) for x in images}  # cat: batches of any length
    if len(shapes) > 1:
        first, other = sorted(shapes)[:2]
        raise DataError(
            f"the images differ in size ({first} and {other}, among others): give them one size, e.g. "
            "transform=torchvision.transforms.Resize((H, W))"
        )
    return join(images)


def standardize(batch: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 or [0, 1] float (B, C, H, W) -> float32 (B, C, H, W), (x - mean) / std per channel, on batch's device."""
    x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()
    m, s = _channel_constants(tuple(mean), tuple(std), x.device)
    return (x - m) / s


def destandardize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Inverse of ``standardize``: float (B, C, H, W) -> float in [0, 1] units (not clipped), x's dtype."""
    m, s = _channel_constants(tuple(mean), tuple(std), x.device)
    return x * s.to(x.dtype) + m.to(x.dtype)


@functools.lru_cache(maxsize=64)
def _channel_constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    # Made once per device: a fresh torch.tensor(..., device="cuda") per batch is a blocking copy that waits for
    # the GPU to finish the previous step.
    return torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images in [0, 1] units."""
    x = images.double().div(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


# ----------------------------------------------------------------------------------------------- IDX files
