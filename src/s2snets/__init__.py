"""s2snets: what image classifiers like to see, and where checkerboard artifacts come from."""

from s2snets.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelError,
    S2SNetsError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelError",
    "S2SNetsError",
    "TrainingError",
    "__version__",
]
