"""Run configuration: typed dataclasses read from TOML, strict about unknown keys.

Every field has a default, so an empty file is a valid config. An unknown key is an error that names the key and
the closest valid one; a value of the wrong type is an error that names the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2snets.errors import ConfigError
from s2snets.names import REGISTRIES, SMALL_FAMILIES

RUN_NAME_MAX = 100
DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def one_line(value: object) -> str:
    """Text for a one-line message: newlines and other control characters shown escaped (a file name may hold them)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def registry(name: str) -> tuple[str, ...]:
    """The valid values of an enumerated key (``s2snets.names``): one list shared by the config, the code that uses
    it and ``--help``."""
    return REGISTRIES[name]


def key(
    default: Any,
    help: str,
    *,
    choices: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A config field with its documentation and its checks: ``choices`` names a ``registry``; ge/gt/le/lt bound a
    number (or every item of a list of numbers)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = key("fashion-mnist", "fashion-mnist | folder (class subfolders) | synthetic", choices="dataset")
    root: str = key("", "folder of IDX files or of class folders; '' = the default search path")
    size: int = key(32, "images are padded (Fashion-MNIST) or resized (folders) to size x size", ge=8, le=4096)
    channels: int = key(1, "1 (grayscale) or 3 (RGB); Fashion-MNIST is 1", ge=1, le=3)
    train_limit: int = key(0, "0 = the whole split; otherwise the first n (after a seeded shuffle)", ge=0, le=100_000_000)
    test_limit: int = key(0, "the same for the test split (evaluation)", ge=0, le=100_000_000)
    on_corrupt: str = key("error", "error | skip: what an unreadable image in a folder does", choices="on_corrupt")
    synthetic_n: int = key(512, "images per split for dataset = 'synthetic'", ge=1, le=1_000_000)
    preprocess: str = key(
        "data",
        "data: resize to size, centre-crop, the data's own mean/std | imagenet: torchvision's resize 256 / crop 224 "
        "(scaled to size) and ImageNet's mean/std, what torchvision's pretrained classifiers expect",
        choices="preprocess",
    )
    stream: str = key(
        "auto",
        "memory | disk | auto: a folder's training split held in memory, or read from disk by a DataLoader; auto = "
        "disk when it would exceed memory_budget_gb",
        choices="stream",
    )
    memory_budget_gb: float = key(
        8.0, "largest training split held in memory (uint8 images) with stream = 'auto'", gt=0, le=100_000
    )
    workers: int = key(2, "DataLoader worker processes for a split read from disk", ge=0, le=256)
    class_index: str = key(
        "", "folder name -> class index: '' = sorted names; 'imagenet' = torchvision's 1,000 synsets; or a JSON file"
    )


@dataclass
class StageConfig:
    epochs: int = key(1, "passes over the training split", ge=0, le=100_000)
    max_steps: int = key(0, "0 = as many as the epochs give", ge=0, le=1_000_000_000)
    batch_size: int = key(128, "global batch; split across processes under torchrun", ge=1, le=1_000_000)
    lr: float = key(1e-3, "peak learning rate", gt=0, le=1e6)
    optimizer: str = key("adam", "adam | adamw | sgd", choices="optimizer")
    momentum: float = key(0.9, "sgd only (Nesterov when > 0)", ge=0, lt=1)
    weight_decay: float = key(0.0, "L2 (adam, sgd) or decoupled (adamw)", ge=0, le=1000)
    schedule: str = key("cosine", "constant | cosine (to zero), after the warm-up", choices="schedule")
    warmup_steps: int = key(0, "linear warm-up before the schedule", ge=0, le=1_000_000_000)
    checkpoint_every: int = key(100, "steps; a checkpoint is also written at each epoch end", ge=1, le=1_000_000_000)


@dataclass
class AutoencoderConfig:
    encoder_weights: str = key("", "a torchvision VGG16 state_dict (.pth or .safetensors) for the paper SegNet's encoder")
    preset: str = key(
        "small", "small (28-32 px) | paper (VGG16 encoder, the published SegNet) | tiny (tests)", choices="segnet_preset"
    )
    upsample: str = key("unpool", "decoder upsampling: unpool (the paper's) | transposed | resize_conv | ...", choices="upsample")
    lossy_steps: int = key(
        0,
        "also a lossy autoencoder, pretrained this many steps (the paper's condition: its reconstructions cost the "
        "classifiers accuracy to restore), fine-tuned through every classifier; 0 = none (the zoo has one per decoder)",
        ge=0,
        le=10_000_000,
    )


@dataclass
class MeasureConfig:
    nmi_levels: int = key(256, "quantisation levels of pixel values for nMI", ge=2, le=65536)
    nmi_average: str = key("arithmetic", "normaliser of nMI: arithmetic | geometric | min | max", choices="nmi_average")
    nmi_pairs: int = key(500, "random image pairs per inter-image nMI", ge=1, le=10_000_000)
    eval_limit: int = key(0, "0 = the whole test split", ge=0, le=100_000_000)
    periods: list[int] = key([2, 4, 8], "lattice-energy periods reported", ge=2, le=4096)
    rrc_threshold: float = key(0.95, "A's signal suffices for B when RRC[A, B] >= this", gt=0, le=10)
    figure_images: int = key(8, "images in the reconstruction figure", ge=1, le=64)
    probe_images: int = key(256, "test images for the gradient probe", ge=1, le=1_000_000)
    bootstrap: int = key(
        200, "bootstrap draws (test images and classifier seeds) for the transfer order's uncertainty", ge=0, le=100_000
    )
    min_psnr: float = key(
        25.0,
        "quality bar of the plain autoencoder (test PSNR, dB): below it the claims resting on it are not testable",
        ge=0,
        le=100,
    )
    min_top1: float = key(
        0.0,
        "quality bar of a classifier on the originals; 0 = its family's (zoo families: 88 %) or halfway above chance",
        ge=0,
        le=1,
    )


@dataclass
class HypothesisConfig:
    families: list[str] = key(["alexnet_s"], "classifier families of the grid's cells (zoo classifiers)", choices="classifier")
    downsamples: list[str] = key(["native"], "classifier downsamplings (+ blur_pool, max_pool, ...)", choices="downsample")
    seeds: list[int] = key(
        [0, 1, 2], "zoo seeds per family and downsampling: one classifier each, the unit of replication", ge=0, le=1_000_000
    )
    classifiers: list[str] = key(
        [],
        "more cells, one classifier each: a zoo entry name (alexnet_s-native-s3), package.module:factory, or a name "
        "given in classifier_weights (pretrained, used as given); a one-classifier cell replicates its fine-tunings",
    )
    upsamples: list[str] = key(
        ["unpool", "resize_conv"],
        "decoder upsamplings of the real cells; [] = calibration only (the planted controls, no real cell)",
        choices="upsample",
    )
    autoencoder_seeds: list[int] = key(
        [0, 1], "zoo autoencoders per decoder kind; replicate r uses the (r mod n)-th", ge=0, le=1_000_000
    )
    replicates: int = key(
        2, "fine-tunings per classifier and arm (their own seeds), averaged within the classifier", ge=1, le=100
    )
    interventions: list[str] = key(
        ["band_stop", "stride_smooth", "shift_y", "shift_x", "shift_period"],
        "arms beside control and sham (docs/measures.md): the rules need band_stop, shift_y, shift_x, shift_period",
        choices="intervention",
    )
    controls: list[str] = key(
        ["additive", "multiplicative", "ignored", "none", "decoder"],
        "planted controls run beside the real cells; a real cell's verdict is reported only when all are recovered",
        choices="control",
    )
    control_strengths: list[float] = key(
        [1.0],
        "each planted control with a strength (additive, multiplicative, zero_insertion) runs at each of these multiples "
        "of its 0.3 strength, one calibration row each ('additive@0.1'): the calibration curve",
        gt=0,
        le=100,
    )
    control_classifiers: int = key(
        3, "each control is planted on this many classifiers (the first cell's first ones)", ge=2, le=100
    )
    control_replicates: int = key(1, "fine-tunings per planted classifier and arm", ge=1, le=100)
    min_ratio: float = key(
        1.5, "smallest amplitude ratio that matters: effects beyond ln r, equivalence inside +-ln r", gt=1, le=100
    )
    alpha: float = key(0.05, "two-sided level of the intervals; each one-sided test of TOST at alpha", gt=0, lt=0.5)
    power: float = key(0.8, "power the 'n needed' of an inconclusive verdict is computed for", gt=0, lt=1)
    min_amplitude: float = key(
        0.5 / 255, "a pattern's lattice must reach this RMS (pixel units, images in [0, 1]; half an 8-bit grey level)", gt=0, lt=1
    )
    read_ratio: float = key(
        0.1,
        "a classifier ignores positions when some phase moves its output less than this share of the most-read one",
        gt=0,
        lt=1,
    )
    band_share: float = key(
        0.05,
        "manipulation check: the band-stop acts when it removes at least this share of the gradient's power (or a lattice peak)",
        gt=0,
        lt=1,
    )
    primary_endpoint: str = key(
        "",
        "the registered primary endpoint: a readout name (follow_gain, share, gradient, ...); '' = none registered",
        choices="readout",
    )
    primary_cell: str = key("", "the registered primary cell, family/downsample/decoder (alexnet_s/native/unpool)")
    smallest_effect: float = key(
        0.5, "the registered smallest effect of interest of the primary endpoint (its units)", gt=0, le=100
    )
    detection_limit: float = key(
        0.0,
        "the calibration curve's detection limit of the induced lattice amplitude (pixel units); 0 = none measured, "
        "and then the primary rule never says 'not'",
        ge=0,
        le=1,
    )
    planned_n: int = key(
        0,
        "the registered number of classifiers of the primary cell (from a power analysis); 0 = none registered",
        ge=0,
        le=10_000,
    )
    job_threads: int = key(
        1, "torch threads per fine-tuning (in each job's key, so numbers do not depend on --jobs)", ge=1, le=256
    )
    jobs: int = key(0, "fine-tunings at once in worker processes; 0 = the machine's cores / job_threads", ge=0, le=256)
    odena_probe: bool = key(True, "also run Odena's generator probe (transposed vs resize-conv at init and trained)")
    odena_steps: int = key(150, "training steps of each probe generator", ge=1, le=1_000_000)


@dataclass
class RunConfig:
    name: str = key("run", "run directory: <runs>/<name>/ (one path component)")
    seed: int = key(0, "seeds model initialisation, data order and pair sampling", ge=0, le=2**32 - 1)
    device: str = key("auto", "auto | cpu | cuda | cuda:N | mps")
    amp: str = key("auto", "auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16", choices="amp")
    compile: bool = key(False, "torch.compile each training step's model (CUDA: the first steps compile, then run faster)")
    classifiers: list[str] = key(
        list(SMALL_FAMILIES), "zoo names or package.module:factory (runs that code)", choices="classifier"
    )
    classifier_weights: list[str] = key(
        [], "'NAME=FILE' per pretrained classifier (safetensors or torchvision .pth): used as is, not trained"
    )
    classifier_seeds: list[int] = key(
        [0],
        "seeds of every classifier (zoo seeds, or training seeds): 2 or more give per-family intervals and the transfer order's uncertainty",
        ge=0,
        le=1_000_000,
    )
    classifier_downsample: str = key("native", "native | strided_conv | max_pool | avg_pool | blur_pool", choices="downsample")
    tensorboard: bool = key(False, "also write per-step losses to <run>/tensorboard (needs the extra: s2snets[tensorboard])")
    use_zoo: bool = key(True, "load classifiers and autoencoders from the shipped zoo where it has them (Fashion-MNIST, 32 px)")
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    train_classifier: StageConfig = field(default_factory=StageConfig)
    pretrain: StageConfig = field(default_factory=StageConfig)
    finetune: StageConfig = field(default_factory=StageConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    hypothesis: HypothesisConfig = field(default_factory=HypothesisConfig)


# ----------------------------------------------------------------------------------------------- validation
def check_run_name(name: str, where: str = "name") -> str:
    """A run name is one path component under ``--runs``: no separators, no '..', no control characters."""
    bad = (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or len(name) > RUN_NAME_MAX
    )
    if bad:
        raise ConfigError(
            f"{where} {name!r} is not a run name: use one folder name (letters, digits, '-', '_', '.'; not starting "
            f"with '.', at most {RUN_NAME_MAX} characters); the run is written to <runs>/<name>/"
        )
    return name


def _check_value(path: str, value: Any, meta: Any) -> None:
    items = value if isinstance(value, list) else [value]
    if meta.get("choices"):
        valid = registry(meta["choices"])
        for v in items:
            if v in valid or (meta["choices"] == "classifier" and ":" in v) or (meta["choices"] == "readout" and v == ""):
                continue
            close = difflib.get_close_matches(v, valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            extra = " or package.module:factory" if meta["choices"] == "classifier" else ""
            raise ConfigError(f"config key '{path}' = {v!r} is not valid{hint}; use one of {', '.join(valid)}{extra}")
    for v in items:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"config key '{path}' = {v!r} is not a finite number")
        for op, bound, ok in (
            (">=", meta.get("ge"), lambda a, b: a >= b),
            (">", meta.get("gt"), lambda a, b: a > b),
            ("<=", meta.get("le"), lambda a, b: a <= b),
            ("<", meta.get("lt"), lambda a, b: a < b),
        ):
            if bound is not None and not (v == v and ok(v, bound)):  # v == v rejects NaN
                raise ConfigError(f"config key '{path}' = {v!r} is out of range: it must be {op} {bound:g}")


def validate(config: RunConfig) -> RunConfig:
    """Check every key of ``config`` against its registry and range, and the rules between keys; ConfigError names
    the first bad key, its value and the valid ones. Called at load, before any work starts."""

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                _check_value(f"{prefix}{f.name}", value, f.metadata)

    walk(config, "")
    check_run_name(config.name, "config key 'name' =")
    if not DEVICE_NAME.fullmatch(config.device):  # its availability here is checked when the runtime starts
        raise ConfigError(f"config key 'device' = {config.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if config.data.dataset == "folder" and not config.data.root:
        raise ConfigError("config key 'data.root' is empty: dataset = 'folder' needs the folder of class subfolders")
    if config.data.dataset == "fashion-mnist" and config.data.channels != 1:
        raise ConfigError(f"config key 'data.channels' = {config.data.channels}: Fashion-MNIST is grayscale, use 1")
    if config.data.dataset == "fashion-mnist" and (config.data.size < 28 or config.data.size % 2):
        raise ConfigError(
            f"config key 'data.size' = {config.data.size}: Fashion-MNIST's 28 x 28 images are zero-padded, use 28 or an "
            "even size above it (32 in the zoo)"
        )
    if config.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("config key 'tensorboard' = true needs TensorBoard: pip install 's2snets[tensorboard]'")
    ci = config.data.class_index
    if ci and ci != "imagenet" and not Path(ci).is_file():
        raise ConfigError(f"config key 'data.class_index' = {ci!r}: no such file; use '', 'imagenet' or a JSON file")
    if config.data.channels == 2:
        raise ConfigError("config key 'data.channels' = 2 is not valid; use 1 (grayscale) or 3 (RGB)")
    for stage in ("train_classifier", "pretrain", "finetune"):
        s = getattr(config, stage)
        if s.epochs == 0 and s.max_steps == 0:
            raise ConfigError(
                f"config keys '{stage}.epochs' and '{stage}.max_steps' are both 0: the stage would not train; set one >= 1"
            )
    _validate_hypothesis(config)
    if not config.classifiers:
        raise ConfigError("config key 'classifiers' is empty; name at least one classifier")
    weights = classifier_weights(config)
    for name, path in weights.items():
        if name not in config.classifiers:
            raise ConfigError(
                f"config key 'classifier_weights' names '{name}', which is not in 'classifiers' {config.classifiers}"
            )
        if not Path(path).is_file():
            raise ConfigError(f"config key 'classifier_weights': weights file for '{name}' not found: {path}")
    ew = config.autoencoder.encoder_weights
    if ew and not Path(ew).is_file():
        raise ConfigError(f"config key 'autoencoder.encoder_weights': file not found: {ew}")
    if ew and (config.autoencoder.preset != "paper" or config.data.channels != 3):
        raise ConfigError("config key 'autoencoder.encoder_weights' needs autoencoder.preset = 'paper' and data.channels = 3")
    return config


RULE_ARMS = {
    "band_stop": "does the classifier's gradient lattice drive the pattern?",
    "shift_y": "whose frame pins its phase?",
    "shift_x": "whose frame pins its phase?",
    "shift_period": "the frame test's manipulation check",
}


def _validate_hypothesis(config: RunConfig) -> None:
    h = config.hypothesis
    if not h.autoencoder_seeds:
        raise ConfigError("config key 'hypothesis.autoencoder_seeds' is empty; give at least one value")
    if not h.upsamples and not h.controls:
        raise ConfigError(
            "config keys 'hypothesis.upsamples' and 'hypothesis.controls' are both empty: nothing to run; give a decoder "
            "kind for the real cells, or the planted controls for a calibration-only run"
        )
    if not h.classifiers and not (h.families and h.downsamples and h.seeds):
        raise ConfigError(
            "the hypothesis grid has no classifier: give hypothesis.families, downsamples and seeds, or hypothesis.classifiers"
        )
    missing = [arm for arm in RULE_ARMS if arm not in h.interventions]
    if missing:
        why = "; ".join(f"{arm}: {RULE_ARMS[arm]}" for arm in missing)
        raise ConfigError(
            f"config key 'hypothesis.interventions' lacks {', '.join(missing)}, which the verdict rules need ({why})"
        )
    weights = classifier_weights(config)
    for name in h.classifiers:
        family, _, rest = name.partition("-")
        downsample, _, seed = rest.rpartition("-s")
        zoo_like = family in SMALL_FAMILIES and downsample in REGISTRIES["downsample"] and seed.isdigit()
        if ":" not in name and name not in weights and not zoo_like:
            raise ConfigError(
                f"config key 'hypothesis.classifiers' entry {name!r} is neither a zoo entry (FAMILY-DOWNSAMPLE-sSEED, e.g. "
                "alexnet_s-native-s3), a package.module:factory, nor a name given in classifier_weights"
            )


def classifier_weights(config: RunConfig) -> dict[str, str]:
    """``classifier_weights`` as {classifier name: weights file}; ConfigError for an entry without '='."""
    out = {}
    for item in config.classifier_weights:
        name, eq, path = item.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise ConfigError(f"config key 'classifier_weights' entry {item!r} must be 'NAME=FILE'")
        out[name.strip()] = path.strip()
    return out


def set_key(config: RunConfig, assignment: str) -> RunConfig:
    """Apply one ``--set key.sub=value`` (value in TOML syntax; a bare word is a string) and return the config."""
    dotted, eq, text = assignment.partition("=")
    if not eq or not dotted.strip():
        raise ConfigError(f"--set {assignment!r}: write key=value, e.g. --set finetune.lr=3e-4")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word: a string
    except RecursionError:
        raise ConfigError(f"--set {dotted.strip()}: the value nests too deeply") from None
    parts = dotted.strip().split(".")
    values: dict[str, Any] = {}
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    merged = _merge(to_dict(config), values)
    return from_dict(RunConfig, merged)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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


_validate = validate  # load_config's keyword of the same name hides the function inside it


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, validate: bool = True) -> RunConfig:
    """Read a TOML run configuration, apply ``--set`` overrides and validate the whole of it (``validate=False``: a
    caller that changes keys first, as the CLI does, validates once after).

    Raises ConfigError on a missing file, bad TOML, an unknown key, a wrong type, a value outside its registry or
    range, or a rule between keys that does not hold."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path} nests tables or arrays too deeply to be a run configuration") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    config = from_dict(RunConfig, values)
    for assignment in overrides:
        config = set_key(config, assignment)
    return _validate(config) if validate else config


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
        notes = {f.name: f.metadata["help"] for f in dataclasses.fields(obj) if "help" in f.metadata}
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


def config_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dataclasses allowed): the key of a pipeline stage."""

    def norm(p: Any) -> Any:
        return dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
