"""Decoded data, cached on disk: one file per source, made once (parallel jobs wait for the one that decodes,
`rethink.system.filelock`), written atomically, and made again when it does not read back whole.

The cache lives in `<root>/.rethink-cache/` (or `$RETHINK_CACHE`). The in-memory data sets (`rethink.data.memory`)
and the streamed index (`rethink.data.streamed`) both keep their files here.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rethink.system import filelock

log = logging.getLogger(__name__)
T = TypeVar("T")


def cache_dir(root: Path) -> Path:
    """Where decoded tensors are cached: $RETHINK_CACHE, else <root>/.rethink-cache."""
    return Path(os.environ.get("RETHINK_CACHE") or root / ".rethink-cache")


def cached_file(path: Path, load: Callable[[Path], T], make: Callable[[], T], write: Callable[[T, Path], None],
                doing: str) -> T:
    """The value cached at `path`, `load(path)`; else (no file, or one that does not load: logged and deleted)
    `make()`, written atomically with `write(value, tmp)`. Parallel jobs make it once between them: one holds
    `<path>.lock` while the others wait for its file (on a fresh machine they would all decode at once, for minutes)."""
    if (value := _load_sound(path, load, doing)) is not None:
        return value
    with filelock.exclusive(path.with_suffix(".lock"), f"waiting for another process {doing} ({path})", optional=True):
        if (value := _load_sound(path, load, doing)) is not None:
            return value
        value = make()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # OSError where it cannot be made (a read-only root)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            write(value, tmp)
            os.replace(tmp, path)  # atomic: a reader never sees a half-written file
            log.info("wrote the data cache %s", path)
        except OSError as e:
            log.warning("could not write the data cache %s (%s); it is made again next time", path, e)
    return value


def _load_sound(path: Path, load: Callable[[Path], T], doing: str) -> T | None:
    """`load(path)`; None when there is no file, or when it does not load whole (then it is logged and deleted)."""
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as e:  # torch.load raises RuntimeError, UnpicklingError, EOFError, ... on a bad file
        log.warning("the data cache %s is unreadable (%s): deleting it and %s again", path,
                    str(e).splitlines()[0] if str(e) else type(e).__name__, doing)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


