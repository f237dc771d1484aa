"""Process identities that outlive the process: `host:pid:start-time`, recorded on runs and lock files so a
later process can tell whether the one that wrote them is still alive (a reused pid is told apart)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def process_id() -> str:
    """`host:pid:start-time` of this process, recorded on runs so a later sweep can tell a dead one."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (tells a reused pid apart); "" when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return "" if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return ""


def process_alive(process: str) -> bool | None:
    """Whether the process of a `process_id()` still runs; None when it ran on another host (can't tell)."""
    host, pid, start = (process.rsplit(":", 2) + ["", ""])[:3] if process else ("", "0", "")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if start and Path("/proc").is_dir():
        return _start_time(int(pid)) == start
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
