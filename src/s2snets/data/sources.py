"""Where images come from: Fashion-MNIST's IDX files, an image folder (one listing and one image opener for every
reader), a synthetic set for tests. Each source returns an ``ImageSet``.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from s2snets.data.sets import ImageSet, channel_stats, eight_bit
from s2snets.errors import DataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet weights expect these
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

# IDX type codes -> (numpy dtype, big-endian)
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) and validate it completely.

    Checks the magic number (two zero bytes, a known type code, 1 <= ndim <= 4), the dimensions and that the payload
    length equals the product of the dimensions times the item size. Raises DataError naming the file and problem.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read or decompress ({exc}); the file is truncated or corrupt") from None
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    zero1, zero2, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header truncated ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - header
    if payload != expected:
        raise DataError(
            f"{path}: payload is {payload} bytes but dimensions {dims} of {dtype} need {expected}"
            + (" (file truncated)" if payload < expected else " (trailing bytes)")
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s2snets" / "fashion-mnist"


def fashion_mnist_search_path(root: str | Path | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for: only ``root`` when given (the user named it); otherwise, in order,
    $S2SNETS_DATA, Debian's package folder, the user cache."""
    if root:
        return [Path(root)]
    paths = [Path(os.environ["S2SNETS_DATA"])] if os.environ.get("S2SNETS_DATA") else []
    return paths + [DEBIAN_FASHION_MNIST, _user_cache()]


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_files(split: str = "train", root: str | Path | None = None) -> tuple[Path, Path]:
    """The (images, labels) IDX files of a Fashion-MNIST split, found on the search path. DataError if absent."""
    if split not in FASHION_MNIST_FILES:
        raise DataError(f"unknown Fashion-MNIST split '{split}'; use 'train' or 'test'")
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    searched = fashion_mnist_search_path(root)
    for folder in searched:
        image_file, label_file = _find_idx(folder, image_stem), _find_idx(folder, label_stem)
        if image_file and label_file:
            return image_file, label_file
    raise DataError(
        "Fashion-MNIST not found: looked in "
        + ", ".join(str(p) for p in searched)
        + ". Install it with 'apt-get install dataset-fashion-mnist' or point S2SNETS_DATA at the IDX files"
    )


def fashion_mnist(split: str = "train", root: str | Path | None = None, pad_to: int = 32) -> ImageSet:
    """Fashion-MNIST as an ImageSet: uint8 (N, 1, pad_to, pad_to), zero-padded from 28 x 28 (pad_to=28: none).

    N is 60,000 for "train" and 10,000 for "test". Raises DataError listing where it looked when nothing is found.
    """
    if pad_to < 28 or (pad_to - 28) % 2:
        raise DataError(f"pad_to must be 28 or an even size above it, got {pad_to}")
    image_file, label_file = fashion_mnist_files(split, root)
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{image_file}: expected uint8 images of 28 x 28, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{label_file}: expected a 1-D uint8 label array, got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{label_file}: {len(labels)} labels but {image_file.name} holds {len(images)} images")
    if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{label_file}: label {int(labels.max())} is out of range 0..9")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    if pad_to > 28:
        p = (pad_to - 28) // 2
        x = torch.nn.functional.pad(x, (p, p, p, p))
    # Published training-split statistics of Fashion-MNIST, on the padded canvas (zeros added lower the mean).
    scale = (28 * 28) / (pad_to * pad_to)
    mean = 0.2860 * scale
    std = float(np.sqrt(scale * (0.3530**2 + 0.2860**2) - mean**2))
    return ImageSet(
        x, torch.from_numpy(labels.astype(np.int64)), FASHION_MNIST_CLASSES, (mean,), (std,), f"fashion-mnist/{split}"
    )


# ----------------------------------------------------------------------------------------------- image folders
def imagenet_synsets() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k WordNet IDs in torchvision's class-index order (package data)."""
    text = (Path(__file__).parents[1] / "resources" / "imagenet_synsets.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def class_order(spec: str, folder_names: list[str]) -> tuple[tuple[str, ...], dict[str, int]]:
    """(class names in index order, folder name -> class index) for an image folder.

    ``spec``: "" = the folder names sorted (torchvision's ImageFolder); "imagenet" = the 1,000 synsets in the order
    of torchvision's ImageNet weights; or a JSON file holding a list of names (index = position) or an object
    {name: index}. A folder whose name the order does not hold is a DataError naming it: the labels must match the
    classifier's outputs, never by luck.
    """
    if not spec:
        names = tuple(sorted(folder_names))
    elif spec == "imagenet":
        names = imagenet_synsets()
    else:
        path = Path(spec)
        try:
            value = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"class index file {path} is not readable JSON ({exc})") from None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = tuple(value)
        elif isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            if sorted(value.values()) != list(range(len(value))):
                raise DataError(f"class index file {path}: the indices must be 0 ... {len(value) - 1}, each once")
            names = tuple(sorted(value, key=value.__getitem__))
        else:
            raise DataError(f"class index file {path} must hold a list of class names or an object {{name: index}}")
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in folder_names if n not in index]
    if unknown:
        source = "ImageNet-1k's 1,000 synsets" if spec == "imagenet" else f"the class index {spec}"
        raise DataError(
            f"class folder '{unknown[0]}' is not in {source}"
            + (f" ({len(unknown) - 1} more unknown)" if len(unknown) > 1 else "")
            + "; rename it or give data.class_index a file that lists it"
        )
    return names, index


def class_folders(root: Path) -> list[Path]:
    """The class sub-folders of an image folder, sorted; DataError if the folder, its classes or a class's images
    are missing."""
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not class_dirs:
        raise DataError(f"{root} has no class sub-folders; expected {root}/<class>/<image>")
    for d in class_dirs:
        if not image_files(d):
            raise DataError(f"class folder {d} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return class_dirs


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` and its sub-folders, sorted, each once: a linked folder is entered only the
    first time its real path is met (a link loop, or two links to one folder, cannot repeat images), and only regular
    files count (a FIFO or a device named *.png would block its reader). Links to files are kept."""
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            path = Path(top) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and _regular(path):
                found.append(path)
    return found


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def folder_samples(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(class folders, [(image file, class folder name)]) of ``root/<class>/.../<image>``: one listing for folders
    held in memory and streamed from disk."""
    class_dirs = class_folders(root)
    return class_dirs, [(f, d.name) for d in class_dirs for f in image_files(d)]


def preprocessing(preprocess: str, size: int, channels: int) -> tuple[int, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """(short side before the centre crop to ``size``, fixed (mean, std) or None for the set's own statistics)."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if preprocess == "data":
        return size, None
    if preprocess != "imagenet":
        raise DataError(f"preprocess must be 'data' or 'imagenet', got '{preprocess}'")
    if channels == 1:  # grey: the channels' mean
        return round(size * 256 / 224), ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
    return round(size * 256 / 224), (IMAGENET_MEAN, IMAGENET_STD)


MAX_IMAGE_PIXELS = 100_000_000  # a larger image (or one whose header claims more) is refused, not decoded


def open_image(path: str | Path):
    """A PIL image, opened lazily after the checks every reader of s2snets makes: a regular file (a FIFO would hang),
    a header that claims at most MAX_IMAGE_PIXELS pixels (a decompression bomb is refused before decoding). The
    caller closes it. DataError naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DataError(f"image not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an image")
    if not _regular(path):
        raise DataError(f"{path} is not a regular file (a pipe or a device); give an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below, one rule
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path} claims more than {MAX_IMAGE_PIXELS:,} pixels ({exc}); refused (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise DataError(
            f"{path} claims {width} x {height} pixels, more than {MAX_IMAGE_PIXELS:,}; refused (a decompression bomb?)"
        )
    return image


def decode_image(path: str | Path, resize: int, size: int, channels: int) -> Tensor:
    """One image file -> uint8 (C, size, size): short side resized to ``resize``, centre-cropped to ``size``.
    DataError naming the file if it cannot be read."""
    from PIL import UnidentifiedImageError
    from torchvision.transforms import functional as TF

    with open_image(path) as file:
        try:
            img = TF.center_crop(TF.resize(eight_bit(file, str(path)).convert({1: "L", 3: "RGB"}[channels]), resize), size)
            return TF.pil_to_tensor(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None


def image_folder(
    path: str | Path,
    size: int,
    channels: int = 3,
    on_corrupt: str = "error",
    progress: bool = False,
    class_index: str = "",
    preprocess: str = "data",
) -> ImageSet:
    """Images in ``path/<class>/<image>`` (torchvision ImageFolder layout), resized and centre-cropped to size.

    ``on_corrupt``: "error" raises DataError naming the first unreadable image; "skip" leaves it out (the skipped
    paths are in the set's ``skipped``). An empty folder, or a class folder without images, is an error.
    ``class_index`` maps folder names to the classifier's output indices (see ``class_order``). ``preprocess``:
    "data" resizes the short side to ``size``, centre-crops and normalises with the set's own statistics;
    "imagenet" resizes to size * 256 / 224, centre-crops and uses ImageNet's mean/std (torchvision's weights).
    """
    from tqdm import tqdm

    if on_corrupt not in ("error", "skip"):
        raise DataError(f"on_corrupt must be 'error' or 'skip', got '{on_corrupt}'")
    root = Path(path)
    class_dirs, samples = folder_samples(root)
    resize, fixed = preprocessing(preprocess, size, channels)
    class_names, index = class_order(class_index, [d.name for d in class_dirs])
    images, labels, skipped = [], [], []
    for file, class_name in tqdm(samples, desc=f"loading {root.name}", disable=not progress, unit="img"):
        try:
            images.append(decode_image(file, resize, size, channels))
        except DataError as exc:
            if on_corrupt == "error":
                raise DataError(f"{exc} (use on_corrupt='skip' to leave it out)") from None
            skipped.append(str(file))
            continue
        labels.append(index[class_name])
    if not images:
        raise DataError(f"no readable images in {root}")
    x = torch.stack(images)
    mean, std = fixed or channel_stats(x)
    return ImageSet(x, torch.tensor(labels, dtype=torch.int64), class_names, mean, std, f"folder/{root.name}", tuple(skipped))


# ----------------------------------------------------------------------------------------------- synthetic
def synthetic(n: int = 512, size: int = 32, classes: int = 4, seed: int = 0, channels: int = 1) -> ImageSet:
    """A procedural labelled set for tests: class k is a blurred disc, bar or ring family with noise.

    uint8 (n, channels, size, size); labels cycle through 0..classes-1 and shapes depend on the class, so a small
    classifier learns it in a few steps.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    labels = torch.arange(n) % classes
    cx = (torch.rand(n, generator=g) - 0.5) * 0.6
    cy = (torch.rand(n, generator=g) - 0.5) * 0.6
    radius = 0.25 + 0.35 * (labels.float() + torch.rand(n, generator=g)) / classes
    angle = labels.float() * torch.pi / max(classes, 1)
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    r = torch.sqrt(dx**2 + dy**2)
    disc = torch.sigmoid((radius[:, None, None] - r) * 12)
    bar = torch.sigmoid((0.15 - (dx * torch.sin(angle)[:, None, None] - dy * torch.cos(angle)[:, None, None]).abs()) * 20)
    img = torch.where((labels % 2 == 0)[:, None, None], disc, bar * disc.clamp_min(0.3))
    img = img + 0.05 * torch.randn(img.shape, generator=g)
    x = (img.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1).repeat(1, channels, 1, 1)
    mean, std = channel_stats(x)
    return ImageSet(x, labels, tuple(f"class{k}" for k in range(classes)), mean, std, f"synthetic/{seed}")
