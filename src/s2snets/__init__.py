"""s2snets: what image classifiers like to see, and where checkerboard artifacts come from.

The measures and the lint work on any ``nn.Module`` and tensors::

    import s2snets, torchvision
    report = s2snets.lint(torchvision.models.resnet50(), 224)     # uneven overlap, dominant lattice periods
    print(report)                                                 # the readable table
    model = s2snets.zoo.load_classifier("alexnet_s", seed=0)      # a converged Fashion-MNIST classifier
    s2snets.lattice_amplitude(pattern, 2)                         # checkerboard strength of an (H, W) pattern
"""

from __future__ import annotations

import importlib
from typing import Any

from s2snets.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputError,
    ModelError,
    S2SNetsError,
    TrainingError,
)
from s2snets.version import __version__

# Imported on first use, so `import s2snets` and the command line's config checks do not wait for torch.
_LAZY = {
    "zoo": "s2snets.zoo",
    "models": "s2snets.models",
    "band_stop_gradient": "s2snets.layers.gradient",
    "smooth_gradient": "s2snets.layers.gradient",
    "smooth_strided_backward": "s2snets.models.hooks",
    "peak_amplitude": "s2snets.metrics.lattice",
    "band_amplitude": "s2snets.metrics.lattice",
    "phase_sensitivity": "s2snets.metrics.sensitivity",
    "Geometry": "s2snets.metrics.geometry",
    "Sampling": "s2snets.metrics.geometry",
    "register_geometry": "s2snets.metrics.geometry",
    "GradientProbe": "s2snets.metrics.gradients",
    "gradient_probe": "s2snets.metrics.gradients",
    "noise_probe": "s2snets.metrics.gradients",
    "LintReport": "s2snets.metrics.lint",
    "lint": "s2snets.metrics.lint",
    "nmi": "s2snets.metrics.nmi",
    "constant_pattern": "s2snets.metrics.pattern",
    "lattice_amplitude": "s2snets.metrics.pattern",
    "phase_lock": "s2snets.metrics.lattice",
    "lattice_contrast": "s2snets.metrics.spectrum",
    "lattice_energy": "s2snets.metrics.spectrum",
    "make_upsample": "s2snets.layers",
    "make_downsample": "s2snets.layers",
    "layers": "s2snets.layers",
    "finetune_decoder": "s2snets.api",
    "S2SNet": "s2snets.api",
    "grid_diagnostic": "s2snets.attribution",
    "smoothed_backward": "s2snets.attribution",
    "remove_grid": "s2snets.attribution",
    "GridDiagnosis": "s2snets.attribution",
    "S2SNetResult": "s2snets.api",
    "FinetuneResult": "s2snets.api",
    "StageResult": "s2snets.train",
    "fingerprint": "s2snets.api",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 's2snets' has no attribute '{name}'")
    module = importlib.import_module(_LAZY[name])
    value = module if name in ("zoo", "layers", "models") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "GridDiagnosis",
    "grid_diagnostic",
    "remove_grid",
    "smoothed_backward",
    "S2SNet",
    "S2SNetResult",
    "StageResult",
    "band_amplitude",
    "band_stop_gradient",
    "peak_amplitude",
    "phase_sensitivity",
    "smooth_gradient",
    "smooth_strided_backward",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FinetuneResult",
    "Geometry",
    "InputError",
    "GradientProbe",
    "LintReport",
    "ModelError",
    "S2SNetsError",
    "Sampling",
    "TrainingError",
    "__version__",
    "constant_pattern",
    "finetune_decoder",
    "gradient_probe",
    "lattice_amplitude",
    "lattice_contrast",
    "lattice_energy",
    "layers",
    "lint",
    "make_downsample",
    "make_upsample",
    "models",
    "nmi",
    "noise_probe",
    "phase_lock",
    "register_geometry",
    "zoo",
]
