"""Typed errors. Nothing below the CLI prints or exits: it raises one of these with a message a user can act on."""


def is_count(value: object, low: int = 1) -> bool:
    """An integer (numpy's included, bool not: True is not a size) of at least ``low``: the test every builder and
    entry point applies to sizes, steps and levels before it raises one of the errors below."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


class S2SNetsError(Exception):
    """Base class: the CLI turns it into one line on stderr and exit code 2."""

    exit_code = 2


class DataError(S2SNetsError):
    """A data file or folder is missing, truncated, corrupt or inconsistent."""


class ConfigError(S2SNetsError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(S2SNetsError):
    """A checkpoint is unreadable or does not fit the model it is loaded into."""


class ModelError(S2SNetsError):
    """A model name, factory or weights file cannot be used."""


class InputError(S2SNetsError, ValueError):
    """An argument of the Python API is not in a form it accepts (the message lists the forms); a ValueError too."""


class TrainingError(S2SNetsError):
    """Training cannot go on (a NaN or infinite loss); the last good checkpoint is kept."""


class Interrupted(S2SNetsError):
    """The user pressed Ctrl-C; progress was saved."""

    exit_code = 130
