"""Reading a streamed data set batch by batch: the per-image views (Inception v3's crops, as TensorFlow's
`inception/image_processing.py` has them; torchvision transforms v2), the Dataset over a file list, the DataLoader
with decoding workers, and JPEG decoding on the device (nvJPEG on CUDA).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rethink.data.streamed import StreamSpec
from rethink.errors import RethinkError

CROP_AREA, CROP_RATIO = (0.05, 1.0), (0.75, 1.33)  # TF inception: sample_distorted_bounding_box's area and aspect ranges


def central_fraction(img: Tensor, fraction: float) -> Tensor:
    """The central `fraction` of the image's height and width (TF's `tf.image.central_crop`)."""
    h, w = img.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[..., top : top + ch, left : left + cw]


@dataclass
class Views:
    """The per-image transforms of one job (uint8 CHW -> uint8 CHW of the model's size), run where decoding is."""

    spec: StreamSpec
    random_crop: bool = False
    flip: bool = False
    train_view: Callable[[Tensor], Tensor] = field(init=False)
    eval_view: Callable[[Tensor], Tensor] = field(init=False)

    def __post_init__(self) -> None:
        from torchvision.transforms import v2

        s = self.spec
        if s.pipeline == "fixed":  # crop/flip/rotation happen on the device, on whole batches
            self.train_view = self.eval_view = _identity
            return
        size = [s.image_size, s.image_size]
        self.eval_view = v2.Compose([partial(central_fraction, fraction=s.eval_fraction),
                                     v2.Resize(size, antialias=True)])
        train = [v2.RandomResizedCrop(size, scale=CROP_AREA, ratio=CROP_RATIO, antialias=True)] if self.random_crop \
            else [self.eval_view]
        self.train_view = v2.Compose(train + ([v2.RandomHorizontalFlip()] if self.flip else []))


def _identity(x: Tensor) -> Tensor:
    return x


def read_rgb(path: str, channels: int = 3) -> Tensor:
    """One image file as uint8 [C, H, W] (RGB, or gray for C = 1), or a RethinkError naming the file."""
    from rethink.data.imagefolder import decode

    try:
        return decode(path, gray=channels == 1)
    except Exception as e:
        raise RethinkError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


class FolderImages(Dataset):
    """Items `i` of a file list: (view(decoded image), i), or with `raw` the file's bytes (decoded on the device)."""

    def __init__(self, root: Path, files: np.ndarray, view: Callable[[Tensor], Tensor], channels: int = 3,
                 raw: bool = False) -> None:
        self.root, self.files, self.view, self.channels, self.raw = str(root), files, view, channels, raw

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> str:
        """The absolute path of file `i`."""
        return os.path.join(self.root, self.files[i].decode())

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if self.raw:
            from torchvision.io import read_file

            # A copy: read_file's tensor counts as shared already, and a worker sending it back fails in the queue's
            # feeder thread (os.dup of a closed descriptor), dropping the batch and hanging the loader.
            return read_file(self.path(i)).clone(), i
        return self.view(read_rgb(self.path(i), self.channels)), i


def collate_raw(items: list[tuple[Tensor, int]]) -> tuple[list[Tensor], Tensor]:
    """A batch of undecoded files: the byte tensors as a list, the indices as a tensor."""
    return [x for x, _ in items], torch.tensor([i for _, i in items], dtype=torch.int64)


def seed_worker(rank: int, worker_id: int) -> None:
    """Each rank's workers draw their own augmentation (torch gives every rank the same base seed)."""
    torch.manual_seed((torch.initial_seed() + 1_000_003 * rank) % 2**63)


def auto_workers(world: int) -> int:
    """Decoding workers per rank: the CPU cores left per rank after its main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) // max(world, 1) - 1))


def loader(dataset: Dataset, indices: Tensor | None, batch_size: int, workers: int, *, sampler=None,
           generator: torch.Generator | None = None, rank: int = 0, pin: bool = False) -> DataLoader:
    """A DataLoader over `dataset` (restricted to `indices`), `workers` decoding processes, batches of `batch_size`."""
    from torch.utils.data import Subset

    ds = Subset(dataset, indices.tolist()) if indices is not None else dataset
    raw = getattr(dataset, "raw", False)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                      collate_fn=collate_raw if raw else None, pin_memory=pin, generator=generator,
                      worker_init_fn=partial(seed_worker, rank) if workers else None,
                      prefetch_factor=4 if workers else None, persistent_workers=False)


def decode_on_device(blobs: list[Tensor], view: Callable[[Tensor], Tensor], device: torch.device) -> Tensor:
    """Decode a batch of JPEG files on `device` (nvJPEG on CUDA), apply `view` there, and stack; a file
    torchvision cannot decode there (not a JPEG) is decoded on the CPU."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    try:
        images = decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        images = [decode_image(b, mode=ImageReadMode.RGB).to(device) for b in blobs]
    return torch.stack([view(x) for x in images])
