"""`hydra/launcher=packed`: a sweep's compatible training jobs trained in packs of up to `k`, each pack in
this process as one stacked model (`rethink.sweep.packs`, `rethink.training.pack`); every job keeps its own
MLflow run, skip and resume. Packs are made of the jobs that will train: one whose identical run already
FINISHED in the store is planned alone (and skipped). Jobs that cannot be packed (theory tasks,
`trainer.compile=true`, streamed data sets, a pack of one) run one after the other as Hydra's basic launcher runs
them.

(No `from __future__ import annotations` here: Hydra executes plugin modules outside sys.modules, where a
dataclass with string annotations cannot resolve its module.)
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.rethink_packed_launcher.packed_launcher.PackedLauncher"
    # members per pack: auto (rethink.sweep.packs.auto_k: from the device and its free memory) or a number
    k: Any = "auto"
    # packs trained at once, each in its own worker process (joblib's loky): auto (rethink.sweep.packs.auto_processes:
    # 1 on a CPU, 2 on a GPU) or a number
    processes: Any = "auto"


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="rethink")


class PackedLauncher(Launcher):
    """Compose every job of the sweep, group the compatible ones into packs, run each pack as one."""

    def __init__(self, k: Any = "auto", processes: Any = "auto") -> None:
        self.k, self.processes = k, processes
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def _job(self, sweep_config: DictConfig) -> JobReturn:
        """One job's whole life, as the basic launcher runs it."""
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from rethink.sweep import packs as packing

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        done = {i for i, c in enumerate(configs) if packing.already_finished(c)}  # skipped: in no pack
        done_ids = {id(configs[i]) for i in done}  # by identity: a sweep may repeat an equal config
        packs = packing.plan(configs, self.k, finished=lambda c: id(c) in done_ids)
        log.info("Launching %d jobs in %d pack(s) of up to %s: %s%s", len(configs), len(packs), self.k,
                 " | ".join(",".join(f"#{configs[i].hydra.job.num}" for i in p) for p in packs),
                 f" ({len(done)} already FINISHED, each alone: skipped)" if done else "")
        processes = packing.auto_processes(configs[0]) if self.processes == "auto" else self.processes
        if not (isinstance(processes, int) and not isinstance(processes, bool) and processes >= 1):
            from rethink.errors import RethinkError

            raise RethinkError(f"hydra.launcher.processes={processes!r} is not allowed: use auto or an integer >= 1")
        for members in packs:
            for i in members:
                log.info("\t#%d : %s", configs[i].hydra.job.num, " ".join(filter_overrides(job_overrides[i])))
        if processes == 1 or len(packs) == 1:
            results = [packing.run_pack([configs[i] for i in members], self._job) for members in packs]
        else:  # several packs at once, each in a worker process, as the joblib launcher runs jobs
            from hydra.core.singleton import Singleton
            from joblib import Parallel, delayed

            log.info("Training up to %d packs at once, each in its own process", processes)
            state = Singleton.get_state()
            results = Parallel(n_jobs=processes, backend="loky")(
                delayed(packing.execute_pack)([configs[i] for i in members], self.hydra_context, self.task_function,
                                              state) for members in packs)
        returns: list[Optional[JobReturn]] = [None] * len(configs)
        for members, outcome in zip(packs, results, strict=True):
            for i, res in zip(members, outcome, strict=True):
                if isinstance(res, BaseException):  # outside the task function (Hydra's own code): a failed job
                    res = JobReturn(overrides=list(job_overrides[i]), return_value=res, status=JobStatus.FAILED)
                returns[i] = res
        return [r for r in returns if r is not None]
