"""One exception type for bad input: Hydra prints it as a single line, without a traceback."""

from hydra.errors import CompactHydraException


class RethinkError(CompactHydraException):
    """A user-facing error: the message names the bad value and what is allowed."""


class DivergenceError(RethinkError):
    """Training produced a non-finite loss."""
