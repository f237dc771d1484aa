"""A SQLite MLflow store as a file: checked before anything uses it (a sound SQLite file, and writable), and a
new one made from a migrated template (`create_from_template`).

Without them MLflow fails deep inside SQLAlchemy (a text file, random bytes) or after a training
has run (a read-only store), with a long traceback whose last line names no cause. Each check
raises a `RethinkError` of one line naming the file and what to do; the file itself is only read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from rethink.errors import RethinkError
from rethink.system import filelock

SQLITE_HEADER = b"SQLite format 3\x00"
_sound: set[Path] = set()  # files that passed `PRAGMA quick_check` in this process (it reads the whole file)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores)."""
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


def check(uri: str) -> None:
    """Stop with one line when the store of `uri` is a SQLite file that is malformed or not writable."""
    if (path := sqlite_path(uri)) is not None:
        check_sqlite_file(path)
        check_writable(path)


def check_sqlite_file(path: Path) -> None:
    """An existing, non-empty store must be a SQLite database that passes `PRAGMA quick_check`."""
    if not path.is_file() or path.stat().st_size == 0:
        return  # a new store: MLflow creates it
    with open(path, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise RethinkError(f"the MLflow store {path} is not an SQLite database (a malformed or foreign file): "
                           f"move it away, or log elsewhere with mlflow.tracking_uri=")
    if path in _sound:
        return
    if problem := quick_check(path):
        raise RethinkError(f"the MLflow store {path} is corrupt (PRAGMA quick_check: {problem}): restore it "
                           f"from a backup, or log elsewhere with mlflow.tracking_uri=")
    _sound.add(path)


def quick_check(path: Path) -> str | None:
    """The first problem `PRAGMA quick_check` reports on the SQLite file, or None when it is sound
    (or cannot be checked now, e.g. locked: MLflow then reports what it finds)."""
    try:
        con = sqlite3.connect(path, timeout=60)
        try:
            rows = con.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # locked, cannot open: not a sign of a malformed file
        return None
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
        return str(e)
    if rows == [("ok",)]:
        return None
    lines = [x for x in str(rows[0][0]).splitlines() if not x.startswith("*** in database")]
    return (lines or ["failed"])[0]


def check_writable(path: Path) -> None:
    """The store's file (when it exists) and its directory (where SQLite writes its journal; the
    nearest existing one when it is still to be created) must be writable."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    for p, mode in ((path, os.W_OK), (folder, os.W_OK | os.X_OK)):
        if p.exists() and not os.access(p, mode):
            raise RethinkError(f"the MLflow store {path} is not writable ({p} is read-only): make it writable, "
                               f"or log elsewhere with mlflow.tracking_uri=")


def template_dir() -> Path:
    """Where empty, migrated stores are kept (one per MLflow version): $RETHINK_CACHE, else ~/.cache/rethink."""
    return Path(os.environ.get("RETHINK_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "rethink")


def create_from_template(path: Path, version: str, migrate: Callable[[Path], None]) -> bool:
    """Create the new SQLite store `path` as a copy of an empty store that MLflow `version` migrated once on this
    machine (`migrate(file)` makes it): MLflow builds a new store by running every schema migration, seconds of a
    short job's start, and the copy is the same file. False (nothing made) where the template cannot be kept."""
    template = template_dir() / f"mlflow-{version}-empty.db"
    try:
        if not template.is_file():
            with filelock.exclusive(template.with_suffix(".lock"), f"waiting for another process migrating {template}"):
                if not template.is_file():
                    tmp = template.with_name(f"{template.stem}.{os.getpid()}.tmp.db")
                    migrate(tmp)
                    os.replace(tmp, template)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)
        return True
    except OSError:
        return False
