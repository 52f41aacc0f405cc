"""The data floor: image sets (``sets``), their sources (``sources``), streaming from disk (``stream``), and
``load_split`` on top, the one dispatcher from a ``DataConfig`` to a split.
"""

from __future__ import annotations

from pathlib import Path

from s2snets.config import DataConfig
from s2snets.data.sets import (
    ImageSet,
    TensorSet,
    as_tensor_set,
    channel_stats,
    destandardize,
    eight_bit,
    standardize,
    wide_grey,
)
from s2snets.data.sources import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    IMAGE_SUFFIXES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_IMAGE_PIXELS,
    class_folders,
    class_order,
    decode_image,
    fashion_mnist,
    fashion_mnist_files,
    fashion_mnist_search_path,
    folder_samples,
    image_files,
    image_folder,
    imagenet_synsets,
    open_image,
    preprocessing,
    read_idx,
    synthetic,
)
from s2snets.data.stream import FolderStream, folder_bytes, folder_stream, in_order, planned_batches
from s2snets.errors import DataError

__all__ = [
    "DEBIAN_FASHION_MNIST", "FASHION_MNIST_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS",
    "FolderStream", "ImageSet", "TensorSet", "as_tensor_set", "channel_stats", "class_folders", "class_order",
    "decode_image", "destandardize", "eight_bit", "fashion_mnist", "fashion_mnist_files", "fashion_mnist_search_path", "folder_bytes",
    "folder_samples", "folder_stream", "image_files", "image_folder", "imagenet_synsets", "in_order", "load_images", "load_split",
    "open_image", "planned_batches", "preprocessing", "read_idx", "standardize", "synthetic", "wide_grey",
]  # fmt: skip


def load_split(cfg, split: str, seed: int = 0):  # cfg: s2snets.config.DataConfig
    """The split of the dataset a DataConfig names, limited as it says: an ``ImageSet`` in memory, or (a folder's
    split with ``stream = "disk"``, or ``"auto"`` above ``memory_budget_gb``) a ``stream.FolderStream``."""
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    if cfg.dataset == "folder" and cfg.root and cfg.stream != "memory":
        folder = Path(cfg.root) / split
        if cfg.stream == "disk" or folder_bytes(folder, cfg.size, cfg.channels) > cfg.memory_budget_gb * 2**30:
            stream = folder_stream(folder, cfg.size, cfg.channels, cfg.class_index, cfg.preprocess, seed)
            return stream.head(limit, seed=seed)
    if cfg.dataset == "fashion-mnist":
        data = fashion_mnist(split, cfg.root or None, pad_to=cfg.size)
    elif cfg.dataset == "folder":
        if not cfg.root:
            raise DataError("data.root must name the image folder (with train/ and test/ inside) for dataset='folder'")
        data = image_folder(
            Path(cfg.root) / split, cfg.size, cfg.channels, cfg.on_corrupt, class_index=cfg.class_index, preprocess=cfg.preprocess
        )
    elif cfg.dataset == "synthetic":
        data = synthetic(cfg.synthetic_n, cfg.size, 4, seed=seed + (0 if split == "train" else 1), channels=cfg.channels)
    else:
        raise DataError(f"unknown dataset '{cfg.dataset}'; use fashion-mnist, folder or synthetic")
    return data.head(limit, seed=seed)


def load_images(source: str, split: str = "test", *, size: int = 28, channels: int = 1):
    """A split of ``"fashion-mnist"`` (the embedded default) or of an image folder (``source``/``split``/CLASS/*):
    the dataset a command-line ``--images`` option names, as an ``ImageSet`` of side ``size``."""
    named = source == "fashion-mnist"
    cfg = DataConfig(dataset="fashion-mnist" if named else "folder", root="" if named else source, size=size, channels=channels)
    return load_split(cfg, split)
