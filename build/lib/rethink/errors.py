"""One exception type for bad input: Hydra prints it as a single line, without a traceback."""

try:
    from hydra.errors import CompactHydraException as _Base
except ImportError:  # the training core (data, corrupt, models, train) also runs without Hydra
    _Base = Exception


class RethinkError(_Base):
    """A user-facing error: the message names the bad value and what is allowed."""


class DivergenceError(RethinkError):
    """Training produced a non-finite loss."""


class IncompleteRunError(RuntimeError):
    """A run's metric history has gaps: it must not end FINISHED."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, docker stop, systemd, SLURM preemption): ends runs KILLED like Ctrl-C."""
