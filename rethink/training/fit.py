"""The one entry to training: `fit` picks the loop for what it is given and hands everything else to it.

- a member of a pack (the job runs in a `rethink.training.pack.Pack` thread): trained with its pack
  (`packed_loop`), which returns the same result as a solo run;
- a streamed data set (`data.streamed`: ImageNet, or a large image tree): `stream_loop`, DataLoader workers,
  one device or one DDP rank;
- otherwise the data set is held on the device: `memory_loop`.
Every loop starts from `rethink.training.setup.start`, so a trainer option reaches all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rethink.corrupt import CorruptedData, CorruptedStream
from rethink.training import pack
from rethink.training.memory_loop import train_in_memory
from rethink.training.packed_loop import Member
from rethink.training.progress import TrainResult
from rethink.training.runtime import Runtime, resolve_runtime
from rethink.training.settings import TrainSettings
from rethink.training.stream_loop import train_streamed


def fit(model: nn.Module, data: CorruptedData | CorruptedStream, s: TrainSettings,
        on_epoch: Callable[[dict], None] | None = None, on_checkpoint: Callable[[dict], None] | None = None,
        resume: dict | None = None, runtime: Runtime | None = None) -> TrainResult:
    """Train `model` on `data` under `s`: SGD (or the configured optimizer) with the paper's LR decay, until the
    stopping rule or `max_epochs`.

    `on_epoch` gets each epoch's statistics; every `s.checkpoint_every` epochs `on_checkpoint` gets the full training
    state (model, optimizer, epoch/step, RNG states, the history so far); `resume` = such a state continues from the
    epoch after it, as if never interrupted. `runtime` defaults to `resolve_runtime(s, model)`.
    """
    if (members := pack.current()) is not None:
        return members.join(Member(model, data, s, on_epoch, on_checkpoint, resume))
    rt = runtime if runtime is not None else resolve_runtime(s, model)
    loop = train_streamed if data.streamed else train_in_memory
    return loop(model, data, s, rt, on_epoch, on_checkpoint, resume)
