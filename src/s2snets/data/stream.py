"""Image folders read from disk on demand: training splits that do not fit in memory (ImageNet's is ~190 GB as
uint8 at 224 px).

``FolderStream`` is a ``torch.utils.data.Dataset`` with the attributes the training engine reads from an
``ImageSet`` (labels, class names, mean/std, ``normalize``); ``planned_batches`` serves either kind in the engine's
exact order — a permutation that depends only on (seed, epoch), started at the step a resumed run stopped at — through
a ``DataLoader`` with worker processes and pinned memory for a stream, by plain indexing for a set in memory. The
same folder read either way gives bit-identical batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from s2snets.data.sets import ImageSet, channel_stats, destandardize, standardize
from s2snets.data.sources import class_order, decode_image, folder_samples, image_files, preprocessing
from s2snets.errors import DataError

STATS_SAMPLE = 512  # images decoded to estimate a stream's mean/std when it has no fixed preprocessing


@dataclass(frozen=True)
class FolderStream(Dataset):
    """A labelled image folder on disk: files (path, class index), decoded and cropped on each access."""

    files: tuple[str, ...]
    labels: Tensor  # int64 (N,)
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    size: int
    channels: int
    resize: int  # the short side before the centre crop to ``size``

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        """uint8 (C, size, size) and the label; an unreadable file gives label -1 - i (the engine names it)."""
        try:
            return decode_image(self.files[i], self.resize, self.size, self.channels), int(self.labels[i])
        except DataError:
            return torch.zeros(self.channels, self.size, self.size, dtype=torch.uint8), -1 - i

    def check(self, i: int) -> None:
        """Raise the DataError that file ``i`` gives (in the main process, with the reason)."""
        decode_image(self.files[i], self.resize, self.size, self.channels)

    def head(self, n: int, seed: int = 0) -> FolderStream:
        """The first ``n`` files after a seeded shuffle, in file order (the selection ``ImageSet.head`` makes)."""
        if n <= 0 or n >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return replace(self, files=tuple(self.files[int(i)] for i in keep), labels=self.labels[keep])

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> float32 standardised with this stream's mean/std (as ``ImageSet.normalize``)."""
        return standardize(batch, self.mean, self.std)

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of ``normalize`` (as ``ImageSet.denormalize``)."""
        return destandardize(x, self.mean, self.std)

    def load(self) -> ImageSet:
        """Every image decoded into memory, as an ImageSet (for the few images a probe or a figure needs); an
        unreadable file is a DataError naming it."""
        if not self.files:
            raise DataError(f"{self.name} has no images")
        images = torch.stack([decode_image(f, self.resize, self.size, self.channels) for f in self.files])
        return ImageSet(images, self.labels.clone(), self.class_names, self.mean, self.std, self.name)


def planned_batches(
    data,
    order: Tensor,
    first: int,
    steps: int,
    batch: int,
    rank: int = 0,
    world: int = 1,
    workers: int = 2,
    pin_memory: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The batches of steps ``first`` .. ``steps - 1`` of one epoch: (uint8 images (b, C, H, W), labels (b,)).

    ``order`` is the epoch's permutation; rank ``rank`` of ``world`` takes every world-th image of each global batch.
    An ``ImageSet`` is indexed in memory; a ``FolderStream`` is read by a ``DataLoader`` with ``workers`` processes.
    """
    plan = [order[i * batch : (i + 1) * batch][rank::world] for i in range(first, steps)]
    if not isinstance(data, FolderStream):
        for idx in plan:
            yield data.images[idx], data.labels[idx]
        return
    loader = DataLoader(
        data,
        batch_sampler=[idx.tolist() for idx in plan],
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    for images, labels in loader:
        if bool((labels < 0).any()):
            data.check(-1 - int(labels.min()))  # raises the file's own error in this process
            raise DataError(f"an image of {data.name} could not be read")
        yield images, labels


def in_order(
    data, batch: int, workers: int = 2, pin_memory: bool = False, limit: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every image of an ImageSet or a FolderStream once (the first ``limit`` when given), in order: (uint8
    (b, C, H, W), labels (b,)) batches of ``batch`` (the last one shorter), a stream read by ``workers`` processes."""
    n = len(data) if limit is None else min(limit, len(data))
    return planned_batches(data, torch.arange(n), 0, -(-n // batch), batch, workers=workers, pin_memory=pin_memory)


def folder_stream(
    root: str | Path, size: int, channels: int, class_index: str = "", preprocess: str = "data", seed: int = 0
) -> FolderStream:
    """``root/<class>/.../<image>`` as a FolderStream: the same listing, layout and class order as
    ``data.image_folder`` (``data.folder_samples``)."""
    root = Path(root)
    class_dirs, samples = folder_samples(root)
    names, index = class_order(class_index, [d.name for d in class_dirs])
    files, labels = [str(f) for f, _ in samples], [index[name] for _, name in samples]
    resize, fixed = preprocessing(preprocess, size, channels)
    if fixed is not None:
        mean, std = fixed
    else:  # the set's own statistics, estimated on a seeded sample
        pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:STATS_SAMPLE]
        mean, std = channel_stats(torch.stack([decode_image(files[int(i)], resize, size, channels) for i in pick]))
    return FolderStream(
        tuple(files), torch.tensor(labels, dtype=torch.int64), names, mean, std, f"folder/{root.name}", size, channels, resize
    )


def folder_bytes(root: str | Path, size: int, channels: int) -> int:
    """What ``root`` would occupy in memory as uint8 images of size x size (files counted, not decoded)."""
    root = Path(root)
    if not root.is_dir():
        return 0
    n = sum(len(image_files(d)) for d in root.iterdir() if d.is_dir())
    return n * channels * size * size
