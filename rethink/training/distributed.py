"""One job on several devices: torch.distributed data parallelism (DDP), every rank one process.

`trainer.devices=N` makes a job N ranks. Where they come from:
- torchrun, or any launcher that sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT: used as they are;
- a submitit job of several tasks (`hydra/launcher=submitit_slurm` with tasks_per_node, nodes): every task runs
  the job, and submitit's `TorchDistributedEnvironment` gives it its rank;
- otherwise (a plain `python -m rethink ... trainer.devices=N`) the job's process is rank 0 and spawns ranks
  1..N-1 on this machine, as torchrun would.
Rank 0 alone owns the job's MLflow run, lock and checkpoints; `release` tells the other ranks whether (and from
which checkpoint) to train, so a skipped or failed job never leaves them waiting. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rethink.errors import RethinkError
from rethink.system.processes import process_alive, process_id

log = logging.getLogger("rethink")
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("RETHINK_DIST_TIMEOUT_MIN", "30")))


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, number of ranks, rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that logs."""
        return self.rank == 0


def world() -> World:
    """The rank of this process from the environment (a single process: rank 0 of 1)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def active() -> bool:
    """Whether a process group of more than one rank is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Group:
    """The ranks of one job, from `start` to `close`: the spawned local ranks, and the handshake state."""

    def __init__(self) -> None:
        self.children: list[Any] = []
        self.set_env: dict[str, str | None] = {}
        self.released = False

    def start(self, devices: int, entry: Callable[[Any], Any], job: Any, cuda: bool) -> None:
        """Join (or, when alone, create) a group of `devices` ranks and initialize torch.distributed. Ranks spawned
        here run `entry(job)` (a module-level function and a picklable description of the job: the caller's, so this
        module never imports the job)."""
        outside = int(os.environ.get("WORLD_SIZE", 0)) or submitit_task_count()  # ranks a launcher started
        if devices == 1 and outside > 1:
            raise RethinkError(f"this job was started as {outside} processes (torchrun or submitit tasks) but "
                               f"trainer.devices=1: set trainer.devices={outside}, or start one process")
        if devices == 1:
            return
        if "WORLD_SIZE" not in os.environ and not submitit_tasks():
            self.spawn_local(devices, entry, job)
        n = world().size
        if n != devices:
            raise RethinkError(f"trainer.devices={devices} but the job has {n} ranks (WORLD_SIZE={n}): use "
                               f"trainer.devices={n}, or launch {devices} tasks")
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(world().local_rank % max(torch.cuda.device_count(), 1))
        else:  # the ranks share this machine's cores (torchrun would set OMP_NUM_THREADS=1)
            local = int(os.environ.get("LOCAL_WORLD_SIZE", n))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        dist.init_process_group(backend, timeout=TIMEOUT)
        log.info("rank %d of %d (%s backend) joined", world().rank, n, backend)

    def spawn_local(self, devices: int, entry: Callable[[Any], Any], job: Any) -> None:
        """Become rank 0 and start ranks 1..devices-1 on this machine (torchrun's environment variables)."""
        import multiprocessing as mp

        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(devices),
               "LOCAL_WORLD_SIZE": str(devices)}
        ctx = mp.get_context("spawn")
        for rank in range(1, devices):
            child = ctx.Process(target=rank_main, name=f"rethink-rank{rank}",
                                args=(entry, job, env | {"RANK": str(rank), "LOCAL_RANK": str(rank)}, process_id()))
            child.start()
            self.children.append(child)
        for k, v in (env | {"RANK": "0", "LOCAL_RANK": "0"}).items():
            self.set_env[k] = os.environ.get(k)
            os.environ[k] = v
        log.info("trainer.devices=%d: rank 0 is this process; started ranks 1-%d (pids %s)", devices, devices - 1,
                 ", ".join(str(c.pid) for c in self.children))

    def failed_ranks(self) -> list[tuple[int, int]]:
        """(rank, exit code) of each spawned rank that has ended with an error (waiting a moment for them)."""
        out = []
        for rank, child in enumerate(self.children, start=1):
            child.join(timeout=2)
            if child.exitcode:
                out.append((rank, child.exitcode))
        return out

    def release(self, train: bool, checkpoint: str | None = None, why: str = "") -> None:
        """Rank 0: tell the other ranks to train (from `checkpoint`, if resuming) or to stop (`why`); once."""
        if self.released or not active() or not world().main:
            return
        self.released = True
        share({"train": train, "checkpoint": checkpoint, "why": why})

    def close(self, ok: bool) -> None:
        """Leave the group; rank 0 waits for (or, after a failure, ends) the ranks it spawned; the environment
        is restored, so the next job of a sweep in this process starts alone."""
        if active() and ok:
            dist.barrier()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for child in self.children:
            child.join(timeout=60 if ok else 5)
            if child.is_alive():
                child.kill()
                child.join()
            if ok and child.exitcode:
                log.error("rank %s ended with exit code %s", child.name.removeprefix("rethink-rank"), child.exitcode)
        for k, v in self.set_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_current: list[Group] = []


@contextlib.contextmanager
def current_group(group: Group) -> Iterator[Group]:
    """Make `group` the one `release` speaks for while the job runs."""
    _current.append(group)
    try:
        yield group
    finally:
        _current.remove(group)


def release(train: bool, checkpoint: str | None = None, why: str = "") -> None:
    """Rank 0 of the current job: `Group.release` (nothing for a job of one device)."""
    if _current:
        _current[-1].release(train, checkpoint, why)


def share(obj: Any = None) -> Any:
    """Rank 0's `obj`, on every rank (a broadcast of a small picklable object)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def await_release() -> dict:
    """Another rank: wait for rank 0's decision ({"train", "checkpoint", "why"})."""
    return share(None)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over the ranks (in place), or as it is when alone."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so every rank evaluates the same model."""
    if active():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def submitit_task_count() -> int:
    """The number of tasks of the submitit job this process is one of (0 outside submitit)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 0
    from submitit import JobEnvironment

    return JobEnvironment().num_tasks


def submitit_tasks() -> bool:
    """Inside a submitit job of several tasks: export its torch.distributed environment; True if it did."""
    if submitit_task_count() <= 1:
        return False
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return True


def free_port() -> int:
    """A TCP port free on this machine now (for the spawned ranks' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(entry: Callable[[Any], Any], job: Any, env: dict[str, str], parent: str) -> None:
    """A spawned rank: `entry(job)` in this rank's environment; ends itself if rank 0's process dies."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: rank 0 ends the job
    logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s][rank {env['RANK']}][%(levelname)s] - %(message)s")

    def watch() -> None:
        while process_alive(parent):
            time.sleep(1)
        os._exit(1)  # rank 0 is gone: nothing this rank computes can be recorded

    threading.Thread(target=watch, daemon=True, name="rethink-rank0-watch").start()
    entry(job)
