"""A pack of training jobs trained as one: each job lives its whole life in its own thread (its identity, skip,
resume, MLflow run, summary: whatever the job function does), and its call to `rethink.training.fit` hands the
training to the pack (`Pack.join`), which trains every member together (`rethink.training.packed_loop`).

Jobs start one after the other: the next starts only when the previous has joined the pack or ended (skipped,
failed before training), so per-job global state (Hydra's) is set for one job at a time. The jobs are plain
callables: this module knows nothing of what a job is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from rethink.training.packed_loop import Member, train_pack

log = logging.getLogger("rethink")
_local = threading.local()


def current() -> Pack | None:
    """The pack the calling job's thread belongs to (None: a solo job)."""
    return getattr(_local, "pack", None)


def announce(run_id: str) -> None:
    """In a job's thread: the MLflow run its member will train for (what its partners' `packed_with` name)."""
    _local.run_id = run_id


def partners() -> list[str]:
    """The run ids of the other members of the calling job's pack ([] for a solo job)."""
    pack, me = current(), getattr(_local, "run_id", "")
    return [m.run_id for m in pack.members if m.run_id != me] if pack else []


class Pack:
    """The members that joined, and the threads of the jobs they belong to."""

    def __init__(self) -> None:
        self.members: list[Member] = []
        self._lock = threading.Lock()
        self.closed: BaseException | None = None

    def join(self, member: Member) -> Any:
        """In a job's thread: register `member`, let the launcher start the next job, and wait for this
        member's result (re-raising the error that ended it)."""
        delivered, box = threading.Event(), {}

        def done(result: Any) -> None:
            box["result"] = result
            delivered.set()

        member.done, member.name = done, member.name or getattr(_local, "name", "")
        member.run_id = member.run_id or getattr(_local, "run_id", "")
        with self._lock:
            if self.closed is not None:  # the pack was interrupted before this job joined
                raise self.closed
            self.members.append(member)
        _local.arrived.set()
        delivered.wait()
        if isinstance(box["result"], BaseException):
            raise box["result"]
        return box["result"]

    def run(self, jobs: list[Callable[[], Any]], names: list[str]) -> list[Any]:
        """Run `jobs` (each the whole life of one job) as a pack; their return values, or the exception
        each raised, in order. A KeyboardInterrupt here ends every member (their runs end KILLED) and is raised."""
        threads, boxes = [], []
        try:
            self._start(jobs, names, threads, boxes)
            if self.members:
                log.info("training a pack of %d member(s): %s", len(self.members),
                         ", ".join(m.name for m in self.members))
                train_pack(self.members)
        except BaseException as e:
            with self._lock:
                self.closed = e
            for m in self.members:  # wake every member still waiting (one already woken ignores it)
                m.done(e)
            raise
        finally:
            for t in threads:
                t.join()
        return [b.get("result") for b in boxes]

    def _start(self, jobs: list[Callable[[], Any]], names: list[str], threads: list, boxes: list) -> None:
        """Start each job's thread once the previous one has joined the pack or ended."""
        for job, name in zip(jobs, names, strict=True):
            arrived, box = threading.Event(), {}

            def target(job=job, name=name, arrived=arrived, box=box) -> None:
                _local.pack, _local.arrived, _local.name = self, arrived, name
                try:
                    box["result"] = job()
                except BaseException as e:  # noqa: BLE001 - handed to the launching thread, which decides
                    box["result"] = e
                finally:
                    arrived.set()

            t = threading.Thread(target=target, name=f"rethink-pack-{name}")
            threads.append(t)
            boxes.append(box)
            t.start()
            arrived.wait()
