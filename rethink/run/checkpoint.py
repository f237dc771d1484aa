"""Checkpoint files that prove their integrity, and what happens to one that does not.

A file is one header line, `rethink-checkpoint v1 sha256=<hex>`, then the `torch.save` bytes it
hashes; both are written to a temporary file `.<name>.<host:pid:start>.tmp` and renamed into place
at once, so a kill mid-write leaves the previous checkpoint intact. `load_verified` trusts a file
only when its checksum matches, it loads, and it belongs to this job (config hash) and to one of
its interrupted runs; anything else is moved aside to `<name>.corrupt` with a warning saying why,
and the job trains afresh. `remove_stale_tmp` deletes the temporary files of writers that died.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable, Collection
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"rethink-checkpoint v1 sha256="
HEADER_LEN = len(MAGIC) + 64 + 1  # the magic, the hex digest, "\n"
TMP = re.compile(r"^\.(?P<name>.+?\.pt)\.(?P<owner>.+)\.tmp$")  # `.<name>.<owner>.tmp`
STALE_TMP_SECONDS = 3600.0  # a temporary file this old is a dead writer's, whoever wrote it


class CheckpointError(Exception):
    """A checkpoint file that cannot be trusted; the message says why."""


def write(path: Path, state: dict, owner: str) -> None:
    """Write `state` with its checksum, atomically (via `.<name>.<owner>.tmp`, owner = who writes)."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{owner}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read(path: Path) -> dict:
    """The state in a checkpoint file whose checksum matches; CheckpointError otherwise."""
    import torch

    data = path.read_bytes()
    if not data.startswith(MAGIC) or data[HEADER_LEN - 1:HEADER_LEN] != b"\n":
        raise CheckpointError("it has no checksum header (truncated, or not written by this version of rethink)")
    payload = data[HEADER_LEN:]
    if hashlib.sha256(payload).hexdigest().encode() != data[len(MAGIC):HEADER_LEN - 1]:
        raise CheckpointError("its checksum does not match: the file changed after it was written")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"it does not load: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError("it holds no training state")
    return state


def load_verified(path: Path, identity: str, run_ids: Collection[str]) -> tuple[dict | None, str | None]:
    """(state, None) for a sound checkpoint of this job and of one of `run_ids`; (None, None) when
    there is none; (None, reason) when there is one that cannot be used: it is then moved aside."""
    if not path.is_file():
        return None, None
    try:
        state = read(path)
        if state.get("config_hash") != identity:
            raise CheckpointError(f"it belongs to config {state.get('config_hash')}, not {identity}")
        if state.get("run_id") not in run_ids:
            raise CheckpointError(f"it belongs to run {state.get('run_id')}, not to an interrupted run of this job")
    except (CheckpointError, OSError) as e:
        return None, set_aside(path, str(e))
    return state, None


def set_aside(path: Path, why: str) -> str:
    """Rename an unusable checkpoint to `<name>.corrupt` (replacing an older one) and log a warning;
    returns the reason, for the run it was meant to continue."""
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
        where = f"moved aside to {aside.name}"
    except OSError as e:
        where = f"could not be moved aside ({e.strerror})"
    reason = f"checkpoint {path} is unusable ({why}); {where}"
    log.warning("%s: the job trains afresh in a new run", reason)
    return reason


def remove_stale_tmp(folder: Path, gone: Callable[[str], bool], max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Delete the temporary files in `folder` of writers that are `gone` (by owner) or older than
    `max_age` seconds; returns those deleted."""
    removed, now = [], time.time()
    for f in folder.glob(".*.tmp") if folder.is_dir() else []:
        if not (m := TMP.match(f.name)):
            continue
        try:
            if gone(m["owner"]) or now - f.stat().st_mtime > max_age:
                f.unlink()
                removed.append(f)
        except FileNotFoundError:  # its writer finished (renamed it) meanwhile
            continue
    if removed:
        log.info("removed %d temporary checkpoint file(s) left by dead processes in %s", len(removed), folder)
    return removed
