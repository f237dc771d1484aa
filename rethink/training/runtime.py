"""Runtime policy for one training job, resolved once: device, autocast, memory layout, eval batch.

`resolve_runtime` turns the `trainer` settings' `auto` values into concrete choices for a given
model; the job resolves it (spreading parallel jobs over GPUs) and hands it to `train`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from rethink.training.settings import TrainSettings


@dataclass(frozen=True)
class Runtime:
    """Where and how a model trains: the resolved form of the `trainer` runtime settings."""

    device: torch.device
    amp: bool  # bf16 autocast around forward passes
    channels_last: bool  # memory format of the model and the images
    eval_batch_size: int
    cudnn_benchmark: bool

    @property
    def on_cuda(self) -> bool:
        """Whether the device is a CUDA device."""
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        """torch.channels_last or torch.contiguous_format."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """A context for forward passes: bf16 autocast when `amp`, else a no-op."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def describe(self) -> str:
        """The device with the accelerator's model, e.g. `cuda:0 NVIDIA H200` or `cpu (2 threads)`."""
        if self.on_cuda:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            return f"cuda:{index} {torch.cuda.get_device_name(index)}"
        return f"cpu ({torch.get_num_threads()} threads)"

    def versions(self) -> dict[str, str]:
        """torch (and CUDA / cuDNN on a GPU) versions, for the run's tags."""
        out = {"torch": torch.__version__}
        if self.on_cuda:
            out |= {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}
        return out

    def activate(self) -> None:
        """Apply the process-wide parts: select the CUDA device, switch cuDNN benchmark on."""
        if self.on_cuda and self.device.index is not None:
            torch.cuda.set_device(self.device)
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """An autocast output (bf16 / fp16) as float32 for the loss; float32 and float64 stay as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def resolve_device(name: str, job_num: int = 0) -> torch.device:
    """auto -> cuda when available, else cpu. On a node with several GPUs, parallel jobs are spread
    over them: job `job_num` gets GPU `job_num mod count`."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        n = torch.cuda.device_count()
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # a rank of a DDP job: its own GPU on this machine
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % n}")
        return torch.device(f"cuda:{job_num % n}" if n > 1 else "cuda")
    return torch.device(name)


def resolve_runtime(settings: TrainSettings, model: nn.Module, job_num: int = 0) -> Runtime:
    """The runtime for training `model` under `settings` (job `job_num` of a sweep)."""
    device = resolve_device(settings.device, job_num)
    on_cuda = device.type == "cuda"
    is_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    # Measured (docs/performance.md): channels_last speeds the conv nets up on CPU too (+15-40%), and
    # on CPU the conv nets evaluate ~2x faster in batches of 128 than of 1024 (cache); MLPs and CUDA prefer 1024.
    channels_last = is_conv if settings.channels_last == "auto" else bool(settings.channels_last)
    eval_batch = settings.eval_batch_size
    if eval_batch == "auto":
        eval_batch = 128 if is_conv and not on_cuda else 1024
    amp = on_cuda if settings.amp == "auto" else bool(settings.amp)  # bf16 autocast: CUDA only by default
    return Runtime(device=device, amp=amp, channels_last=channels_last, eval_batch_size=eval_batch,
                   cudnn_benchmark=on_cuda)
