"""s2snets: what image classifiers like to see, and where checkerboard artifacts come from.

The measures and the lint work on any ``nn.Module`` and tensors::

    import s2snets, torchvision
    report = s2snets.lint(torchvision.models.resnet50(), 224)     # uneven overlap, dominant lattice periods
    print(report)                                                 # the readable table
    model = s2snets.zoo.load_classifier("alexnet_s", seed=0)      # a converged Fashion-MNIST classifier
    s2snets.lattice_amplitude(pattern, 2)                         # checkerboard strength of an (H, W) pattern
"""

from s2snets import zoo
from s2snets.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelError,
    S2SNetsError,
    TrainingError,
)
from s2snets.layers.interventions import Intervened, notch_gradient, shift_image
from s2snets.metrics.geometry import Geometry, Sampling, register_geometry
from s2snets.metrics.gradients import gradient_probe, noise_probe
from s2snets.metrics.lint import LintReport, lint
from s2snets.metrics.nmi import nmi
from s2snets.metrics.pattern import constant_pattern, lattice_amplitude, phase_lock
from s2snets.metrics.spectrum import lattice_contrast, lattice_energy

__version__ = "0.2.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Geometry",
    "Intervened",
    "LintReport",
    "ModelError",
    "S2SNetsError",
    "Sampling",
    "TrainingError",
    "__version__",
    "constant_pattern",
    "gradient_probe",
    "lattice_amplitude",
    "lattice_contrast",
    "lattice_energy",
    "lint",
    "nmi",
    "noise_probe",
    "notch_gradient",
    "phase_lock",
    "register_geometry",
    "shift_image",
    "zoo",
]
