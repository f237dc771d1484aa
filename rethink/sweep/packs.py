"""The packed launcher's plan: which jobs of a sweep can train together as one stacked model (`pack_key`), in
packs of how many (`auto_k`), how many packs at once (`auto_processes`), and running one planned pack (`run_pack`,
`execute_pack`) through `rethink.training.pack.Pack`. A job whose identical run already FINISHED is planned alone
(it is skipped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rethink import compose
from rethink.errors import RethinkError
from rethink.run import identity, lifecycle, track
from rethink.training.pack import Pack
from rethink.training.packed_loop import unsupported
from rethink.training.runtime import resolve_device

log = logging.getLogger("rethink")
MAX_PACK = 32
GPU_MEMBER_OVERHEAD = 2 * 2**30  # bytes per member besides its data: weights, gradients, momentum, activations


def pack_key(cfg: DictConfig) -> str | None:
    """What jobs must share to train as one pack: the architecture (all of `model.net` but its init), the
    data set and subset sizes, the batch sizes and the device settings. None: this job trains alone: a theory task,
    a streamed data set, or what the stacked loop cannot honour (`rethink.training.packed_loop.unsupported`); a job
    whose config does not build trains alone too, and fails there with its own error."""
    if OmegaConf.select(cfg, "task.name", default="train") != "train":
        return None
    try:
        parts = compose.job_parts(cfg)
    except RethinkError:
        return None
    if parts.dataset.streamed or unsupported(parts.settings, float(cfg.regularizer.dropout)):
        return None
    net = {k: v for k, v in OmegaConf.to_container(cfg.model.net, resolve=True).items() if k != "init"}
    d, t = cfg.dataset, cfg.trainer
    return json.dumps([net, d.name, d.train_size, d.test_size, d.crop_size, t.batch_size, t.eval_batch_size,
                       t.device, t.amp], sort_keys=True, default=str)


def job_identity(cfg: DictConfig) -> str:
    """A training job's identity (`rethink.run.identity.config_hash`) from its sweep config (Hydra's node left out)."""
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return identity.config_hash(task_cfg)


def auto_k(cfg: DictConfig) -> int:
    """Members per pack for k=auto. On a GPU as many as 80 % of its free memory holds (each member: its
    data set on the device, raw and preprocessed, plus GPU_MEMBER_OVERHEAD), at most MAX_PACK. On a CPU 1:
    packing does not pay there (bench/packing.py, docs/performance.md)."""
    import torch

    device = resolve_device(str(cfg.trainer.device))
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    c, h, w = (list(cfg.dataset.input_shape) + [1, 1, 1])[:3]
    ready = 2 * c * h * w * 4  # the preprocessed images, and their stacked copy for evaluation
    n_train, n_test = cfg.dataset.train_size or 60000, cfg.dataset.test_size or 10000
    per_member = n_train * (c * 32 * 32 + ready) + n_test * (c * 32 * 32 + ready) + GPU_MEMBER_OVERHEAD
    return max(1, min(MAX_PACK, int(0.8 * free // per_member)))


def already_finished(cfg: DictConfig) -> bool:
    """Whether an identical job already FINISHED in the job's store, so it will be skipped (`rerun=false`):
    such a job is planned alone, and packs are made of the jobs that will train."""
    if cfg.get("rerun") or pack_key(cfg) is None:
        return False
    uri = track.tracking_uri(cfg)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return False  # a new store: nothing has finished
    experiment = track.client(uri).get_experiment_by_name(str(cfg.mlflow.experiment))
    return experiment is not None and lifecycle.find_finished(uri, experiment.experiment_id, job_identity(cfg)) is not None


def plan(configs: list[DictConfig], k: int | str = "auto",
         finished: Callable[[DictConfig], bool] | None = None) -> list[list[int]]:
    """The packs of a sweep, as lists of indices into `configs` in job order: compatible jobs (`pack_key`)
    in groups of at most `k` (an integer >= 1, or auto: `auto_k`); every other job alone, and so is a job
    `finished` says already FINISHED (it is skipped: a pack planned with it would train one member fewer)."""
    if k != "auto" and not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise RethinkError(f"hydra.launcher.k={k!r} is not allowed: use auto or an integer >= 1")
    groups: dict[str, list[int]] = {}
    packs: list[list[int]] = []
    seen: set[str] = set()
    for i, cfg in enumerate(configs):
        key = pack_key(cfg)
        ident = job_identity(cfg) if key is not None else None
        if key is None or ident in seen or (finished is not None and finished(cfg)):
            packs.append([i])  # a repeat of an earlier job runs alone, after it, and is skipped; so is a FINISHED one
        else:
            seen.add(ident)
            groups.setdefault(key, []).append(i)
    for idx in groups.values():
        size = auto_k(configs[idx[0]]) if k == "auto" else k
        packs += [idx[j : j + size] for j in range(0, len(idx), size)]
    return sorted(packs, key=lambda p: p[0])


def auto_processes(cfg: DictConfig) -> int:
    """Packs trained at once (each in its own process) for processes=auto: 1 on a CPU (its cores are the
    limit), 2 on a GPU (a guess that bench/gpu_paper.sh is there to measure: one job left an H200 mostly idle)."""
    return 2 if resolve_device(str(cfg.trainer.device)).type == "cuda" else 1


def run_pack(configs: list[DictConfig], run_one: Callable[[DictConfig], Any]) -> list[Any]:
    """One planned pack: a single job as it is, several as a `Pack`; each job's return value or exception."""
    if len(configs) == 1:
        try:
            return [run_one(configs[0])]
        except Exception as e:  # noqa: BLE001 - the launcher reports it as the job's failure
            return [e]
    return Pack().run([lambda c=c: run_one(c) for c in configs], [f"#{c.hydra.job.num}" for c in configs])


def execute_pack(configs: list[DictConfig], hydra_context: Any, task_function: Any, singleton_state: dict) -> list[Any]:
    """In a worker process of the packed launcher (processes > 1): one planned pack, run as in the launcher's own
    process (Hydra's global state restored first, as the joblib launcher does)."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    setup_globals()
    Singleton.set_state(singleton_state)
    return run_pack(configs, lambda c: run_job(hydra_context=hydra_context, task_function=task_function, config=c,
                                               job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
