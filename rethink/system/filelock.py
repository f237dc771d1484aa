"""One process at a time: an exclusive `flock` on a file next to what it guards (a SQLite store being
created, a data cache being decoded). The kernel releases it when the holder ends, even by kill -9."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def exclusive(path: Path, waiting: str = "", optional: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created, with its folder, if missing) for the block; log `waiting`
    once if another process holds it. `optional`: where the lock file cannot be made (a read-only
    folder), run the block unlocked, for a lock that only saves repeated work."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as e:
        if not optional:
            raise
        log.debug("no lock %s (%s): going on unlocked", path, e)
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info(waiting)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
