"""Run configuration: typed dataclasses read from TOML, strict about unknown keys.

Every field has a default, so an empty file is a valid config. An unknown key is an error that names the key and
the closest valid one; a value of the wrong type is an error that names the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2snets.errors import ConfigError

SMALL_FAMILIES = ("alexnet_s", "vgg_s", "resnet_s", "inception_s")


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"  # fashion-mnist | folder | synthetic
    root: str = ""  # folder of IDX files or of class folders; "" = the default search path
    size: int = 32  # images are padded (Fashion-MNIST) or resized (folders) to size x size
    channels: int = 1  # 1 (grayscale) or 3 (RGB); Fashion-MNIST is 1
    train_limit: int = 0  # 0 = the whole split; otherwise the first n (after a seeded shuffle)
    test_limit: int = 0  # the same for the test split (evaluation)
    on_corrupt: str = "error"  # error | skip (image folders)
    synthetic_n: int = 512  # images per split for dataset = "synthetic"


@dataclass
class StageConfig:
    epochs: int = 1  # passes over the training split
    max_steps: int = 0  # 0 = as many as the epochs give
    batch_size: int = 128  # global batch; split across processes under torchrun
    lr: float = 1e-3  # peak learning rate
    optimizer: str = "adam"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only (Nesterov when > 0)
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw)
    schedule: str = "cosine"  # constant | cosine
    warmup_steps: int = 0  # linear warm-up before the schedule
    checkpoint_every: int = 100  # steps; a checkpoint is also written at each epoch end


@dataclass
class AutoencoderConfig:
    preset: str = "small"  # small | paper
    upsample: str = "unpool"  # unpool | transposed | resize_conv | subpixel | zero_order_hold


@dataclass
class MeasureConfig:
    nmi_levels: int = 256  # quantisation levels of pixel values for nMI
    nmi_average: str = "arithmetic"  # arithmetic | geometric | min | max
    nmi_pairs: int = 500  # random image pairs per inter-image nMI
    eval_limit: int = 0  # 0 = the whole test split
    periods: list[int] = field(default_factory=lambda: [2, 4, 8])  # lattice-energy periods reported
    rrc_threshold: float = 0.95  # A's signal suffices for B when RRC[A, B] >= this
    figure_images: int = 8  # images in the reconstruction figure
    probe_images: int = 256  # test images for the gradient probe


@dataclass
class HypothesisConfig:
    families: list[str] = field(default_factory=lambda: ["alexnet_s"])  # classifier families in the grid
    downsamples: list[str] = field(default_factory=lambda: ["native"])  # classifier downsamplings (+ blur_pool, max_pool, ...)
    upsamples: list[str] = field(default_factory=lambda: ["unpool", "resize_conv"])  # decoder upsamplings in the grid
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # classifier seed = fine-tuning seed; paired across interventions
    interventions: list[str] = field(default_factory=lambda: ["control", "grid_shift", "gradient_notch"])  # + phase_average
    shift: int = 1  # grid_shift: pixels the classifier's input moves down and right
    min_ratio: float = 1.5  # smallest checkerboard-amplitude ratio that matters (verdict rules, docs/measures.md)
    alpha: float = 0.05  # two-sided level of the paired tests and of the 95% intervals
    odena_probe: bool = True  # also run Odena's generator probe (transposed vs resize-conv at init and trained)
    odena_steps: int = 150  # training steps of each probe generator


@dataclass
class RunConfig:
    name: str = "run"  # run directory: runs/<name>/
    seed: int = 0  # seeds model initialisation, data order and pair sampling
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    classifiers: list[str] = field(default_factory=lambda: list(SMALL_FAMILIES))  # zoo names or package.module:factory
    classifier_downsample: str = "native"  # native | strided_conv | max_pool | avg_pool | blur_pool
    use_zoo: bool = True  # load classifiers and autoencoders from the shipped zoo where it has them (Fashion-MNIST, 32 px)
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    train_classifier: StageConfig = field(default_factory=StageConfig)
    pretrain: StageConfig = field(default_factory=StageConfig)
    finetune: StageConfig = field(default_factory=StageConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    hypothesis: HypothesisConfig = field(default_factory=HypothesisConfig)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list,):
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def from_dict(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``values``; raise ConfigError naming the first unknown or ill-typed key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{where}{key}"
        if key not in hints:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            hint = f"; did you mean '{where}{close[0]}'?" if close else f"; valid keys here: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{path}'{hint}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{path}' must be a table [{path}]")
            kwargs[key] = from_dict(annotation, value, where=f"{path}.")
        elif not _type_ok(value, annotation):
            expected = getattr(annotation, "__name__", str(annotation))
            raise ConfigError(f"config key '{path}' must be of type {expected}, got {value!r}")
        else:
            kwargs[key] = float(value) if annotation is float else value
    return cls(**kwargs)


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML run configuration. Raises ConfigError on a missing file, bad TOML or an unknown key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return from_dict(RunConfig, values)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_toml(config: Any) -> str:
    """Serialise a (nested) config dataclass to TOML: scalars first, then one table per nested dataclass."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    def emit(obj: Any, prefix: str) -> list[str]:
        lines, tables = [], []
        notes = field_comments(type(obj))
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                tables.append((f.name, v))
            else:
                line = f"{f.name} = {scalar(v)}"
                lines.append(f"{line:<39} # {notes[f.name]}" if f.name in notes else line)
        for name, v in tables:
            lines += ["", f"[{prefix}{name}]"] + emit(v, f"{prefix}{name}.")
        return lines

    return "\n".join(emit(config, "")) + "\n"


def field_comments(cls: type) -> dict[str, str]:
    """The ``# comment`` written after each field in the dataclass's source: the documentation of that key."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):[^#\n]*#(.*)$", source, re.M)}


def config_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dataclasses allowed): the key of a pipeline stage."""

    def norm(p: Any) -> Any:
        return dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
