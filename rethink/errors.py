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


_received: list[str] = []  # the stop signals this process has received, in order


def stop_requested(name: str) -> None:
    """Record a stop signal (SIGTERM, SIGINT) as its handler raises: see `check_stop`."""
    _received.append(name)


def check_stop() -> None:
    """Raise again a stop signal whose exception was lost. A signal handler that runs inside an at-fork hook (every
    DataLoader worker is a fork, and `logging` registers such hooks) or a finalizer (a weakref callback in
    SQLAlchemy, seen on CI) has its exception printed ("Exception ignored") and dropped by Python, so every
    training loop calls this between steps."""
    if _received:
        name = _received[0]
        if name == "SIGINT":
            raise KeyboardInterrupt
        raise Terminated(f"received signal {name}")
