"""The names of every registry, importable without torch: the config validates against them at load (in well
under a second), ``--help`` lists them, and each registry checks at import that its keys are exactly these."""

from __future__ import annotations

DATASETS = ("fashion-mnist", "folder", "synthetic")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
AMP_MODES = ("auto", "off", "bf16", "fp16")
ON_CORRUPT = ("error", "skip")
PREPROCESS = ("data", "imagenet")
STREAM = ("auto", "memory", "disk")
UPSAMPLINGS = ("unpool", "transposed", "resize_conv", "subpixel", "zero_order_hold")
DOWNSAMPLINGS = ("native", "strided_conv", "max_pool", "avg_pool", "blur_pool")
SMALL_FAMILIES = ("alexnet_s", "vgg_s", "resnet_s", "inception_s")
TORCHVISION_CLASSIFIERS = ("alexnet", "vgg16", "vgg16_bn", "resnet50", "inception_v3")
CLASSIFIER_NAMES = SMALL_FAMILIES + TORCHVISION_CLASSIFIERS
SEGNET_PRESETS = ("paper", "small", "tiny")
NMI_AVERAGES = ("arithmetic", "geometric", "min", "max")
NMI_BACKENDS = ("auto", "numba", "torch")
# The checkerboard experiment: its arms (control and sham always run) and its planted controls.
ARMS = (
    "control",
    "sham",
    "band_stop",
    "stride_smooth",
    "shift_y",
    "shift_x",
    "shift_period",
    "lattice_shift_y",
    "lattice_shift_x",
    "lattice_shift_period",
    "sham_band_stop",
)
INTERVENTIONS = ARMS[2:]  # the arms a config chooses
CONTROLS = ("additive", "multiplicative", "ignored", "none", "decoder", "zero_insertion", "null_unpool", "null_resize_conv")
# The numbers per fine-tuning replicate the rules read (experiments.interventions.READOUTS); "" = none chosen.
READOUTS = (
    "pattern",
    "gradient",
    "frame",
    "stability",
    "geometry",
    "follow",
    "follow_sham",
    "follow_gain",
    "induced_peak",
    "top1_vs_sham",
    "shift_vs_sham",
    "share",
    "share_sham",
    "band_sham",
    "band_specific",
)

REGISTRIES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "amp": AMP_MODES,
    "on_corrupt": ON_CORRUPT,
    "preprocess": PREPROCESS,
    "stream": STREAM,
    "upsample": UPSAMPLINGS,
    "downsample": DOWNSAMPLINGS,
    "classifier": CLASSIFIER_NAMES,
    "segnet_preset": SEGNET_PRESETS,
    "nmi_average": NMI_AVERAGES,
    "nmi_backend": NMI_BACKENDS,
    "intervention": INTERVENTIONS,
    "control": CONTROLS,
    "readout": READOUTS,
}


def check_registry(name: str, keys: object) -> None:
    """Raise RuntimeError at import when a registry's keys drift from the names the config validates against."""
    if tuple(keys) != REGISTRIES[name]:  # type: ignore[call-overload]
        raise RuntimeError(f"registry '{name}' holds {tuple(keys)}, but s2snets.names lists {REGISTRIES[name]}")  # type: ignore[call-overload]
