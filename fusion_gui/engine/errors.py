"""Errors an engine job raises. Their message is the one sentence a user sees."""


class FusionError(Exception):
    """Base class of the engine's own errors."""


class InputError(FusionError):
    """Bad input: a path, a recipe key, a tensor name or shape. The CLI exits 2."""


class Cancelled(FusionError):
    """The user cancelled the job. The CLI exits 130."""


class OutputError(FusionError):
    """Writing the output failed (disk full, permission). The CLI exits 1."""
