"""The version, on the ground floor: every module may import it."""

__version__ = "0.3.0"
