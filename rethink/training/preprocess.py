"""The paper's preprocessing as batched tensor ops: crop, scale to [0,1], per-image whitening, and the
train-time augmentations (random crop, flip, rotation).

Runs wherever the tensors are (CPU or GPU). Without augmentation the result is the same every epoch,
so the training loop computes it once for the whole data set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def to_unit(x: Tensor) -> Tensor:
    """uint8 (or float on the 0..255 scale) -> floats in [0, 1] (float32, or torch's default dtype if wider)."""
    return x.to(torch.promote_types(torch.get_default_dtype(), torch.float32)) / 255.0


def whiten(x: Tensor) -> Tensor:
    """Per-image standardization: (x - mean) / max(std, 1/sqrt(N)), population std over the image.

    This is TensorFlow's `per_image_standardization`, which the paper's code used.
    """
    flat = x.flatten(1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, correction=0, keepdim=True).clamp_min(1.0 / math.sqrt(flat.shape[1]))
    return ((flat - mean) / std).view_as(x)


def center_crop(x: Tensor, size: int | None) -> Tensor:
    """The central size x size window (no-op for None or for images of that size)."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """An independent uniformly placed size x size window for each image of the batch."""
    n, c, h, w = x.shape
    dev = x.device
    top = torch.randint(h - size + 1, (n,), generator=generator, device=dev)
    left = torch.randint(w - size + 1, (n,), generator=generator, device=dev)
    ar = torch.arange(size, device=dev)
    rows = (top[:, None] + ar)[:, None, :, None]        # n,1,size,1
    cols = (left[:, None] + ar)[:, None, None, :]       # n,1,1,size
    return x[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None], rows, cols]


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_rotate(x: Tensor, max_degrees: float, generator: torch.Generator | None = None) -> Tensor:
    """Rotate each (float) image about its centre by an angle drawn uniformly from [-max, max] degrees;
    bilinear, zeros outside the image (the paper's Table 4 augmentation: rotation up to 25 degrees)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator, device=x.device) * 2 - 1) * math.radians(max_degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Preprocess:
    """Train-time and test-time preprocessing for one configuration."""

    def __init__(self, crop_size: int | None, random_crop: bool = False, flip: bool = False,
                 rotate: float = 0.0) -> None:
        self.crop_size, self.random_crop, self.flip, self.rotate = crop_size, random_crop, flip, rotate
        if random_crop and crop_size is None:
            from rethink.errors import RethinkError

            raise RethinkError("regularizer.random_crop=true needs dataset.crop_size (the window size)")

    @property
    def augments(self) -> bool:
        """Whether training batches differ between epochs (so they cannot be precomputed)."""
        return self.random_crop or self.flip or self.rotate > 0

    def test(self, x: Tensor) -> Tensor:
        """Centre crop, scale, whiten."""
        return whiten(to_unit(center_crop(x, self.crop_size)))

    def train(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Optional rotation (of the whole image, before cropping), random (or centre) crop, optional
        flip, scale, whiten."""
        x = to_unit(x)
        if self.rotate > 0:
            x = random_rotate(x, self.rotate, generator)
        x = random_crop(x, self.crop_size, generator) if self.random_crop else center_crop(x, self.crop_size)
        if self.flip:
            x = random_flip(x, generator)
        return whiten(x)

    def test_all(self, x: Tensor, chunk: int = 8192) -> Tensor:
        """`test` over a whole data set, in chunks to bound the float temporaries."""
        return torch.cat([self.test(x[i : i + chunk]) for i in range(0, len(x), chunk)])
