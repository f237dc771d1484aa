"""The randomization tests of Section 2.1, applied to the TRAINING split (pixel kinds to test too).

Every draw comes from one generator seeded by `seed`, so a (seed, kind, level) triple always gives
the same corrupted data, and the draws are made once, before training, never per epoch. For a
fixed seed the examples randomized at level p are a subset of those randomized at any p' > p.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from rethink.checks import check, in_range, is_int
from rethink.data.memory import ImageData
from rethink.data.streamed import StreamedData
from rethink.errors import RethinkError

KINDS = ("labels", "shuffled_pixels", "random_pixels", "gaussian")


@dataclass
class CorruptedData:
    """Training/test tensors after corruption; `changed` marks training examples that differ."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    true_train_y: Tensor
    changed: Tensor
    num_classes: int
    info: dict = field(default_factory=dict)
    streamed: ClassVar[bool] = False  # held in memory: `rethink.training.fit` trains it on the device


@dataclass
class Corruption:
    """The `corruption` config group: which randomization test, at which level."""

    kind: str = "labels"
    level: float = 0.0
    permute: str = "spatial"
    gaussian_stats: str = "global"
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every value (the seed too: it is the top-level `seed` unless set here)."""
        if self.kind not in KINDS:
            raise RethinkError(f"corruption.kind={self.kind!r} is not known: use one of {', '.join(KINDS)}")
        c = "corruption."
        check([
            (c + "level", self.level, in_range(self.level, 0, 1), "a number in [0, 1]"),
            (c + "permute", self.permute, self.permute in ("spatial", "all"), "spatial or all"),
            (c + "gaussian_stats", self.gaussian_stats, self.gaussian_stats in ("global", "per_channel"),
             "global or per_channel"),
            (c + "seed", self.seed, is_int(self.seed, 0), "an integer >= 0"),
        ])
        self.level = float(self.level)

    def apply(self, data: ImageData | StreamedData) -> CorruptedData | CorruptedStream:
        """Return the corrupted data set (the input tensors are not modified)."""
        gen = torch.Generator().manual_seed(self.seed)
        if data.streamed:
            return self.apply_to_stream(data, gen)
        n_train = len(data.train_y)
        if self.kind == "labels":
            train_y = corrupt_labels(data.train_y, self.level, data.num_classes, gen)
            return CorruptedData(data.train_x, train_y, data.test_x, data.test_y, data.train_y,
                                 train_y != data.train_y, data.num_classes)
        # The one permutation of shuffled_pixels is drawn first: it depends on the seed alone.
        perm = torch.randperm(_perm_size(data.train_x, self.permute), generator=gen)
        picked_train = torch.rand(n_train, generator=gen) < self.level
        picked_test = torch.rand(len(data.test_y), generator=gen) < self.level
        if self.kind == "shuffled_pixels":
            train_x = shuffle_pixels(data.train_x, perm, picked_train, self.permute)
            test_x = shuffle_pixels(data.test_x, perm, picked_test, self.permute)
        elif self.kind == "random_pixels":
            train_x = random_pixels(data.train_x, picked_train, self.permute, gen)
            test_x = random_pixels(data.test_x, picked_test, self.permute, gen)
        else:
            mean, std = pixel_stats(data.train_x, self.gaussian_stats)
            train_x = gaussian_images(data.train_x, picked_train, mean, std, gen)
            test_x = gaussian_images(data.test_x, picked_test, mean, std, gen)
        return CorruptedData(train_x, data.train_y, test_x, data.test_y, data.train_y, picked_train, data.num_classes)


    def apply_to_stream(self, data: StreamedData, gen: torch.Generator) -> CorruptedStream:
        """Label corruption of a streamed data set: the same draws as for data held in memory, a function of
        the seed and the sample index alone. The pixel kinds would need every image in memory: refused."""
        if self.kind != "labels":
            raise RethinkError(f"corruption.kind={self.kind} is not available for a streamed data set "
                               f"(dataset.name={data.spec.name}): only label corruption (corruption=labels, "
                               "random_labels) is drawn per sample index; the pixel kinds need the images in memory")
        train_y = corrupt_labels(data.train_y, self.level, data.num_classes, gen)
        return CorruptedStream(data, train_y, data.train_y, train_y != data.train_y, data.num_classes)


@dataclass
class CorruptedStream:
    """A streamed data set after label corruption: its images are read per batch (`rethink.data.stream_io`)."""

    data: StreamedData
    train_y: Tensor
    true_train_y: Tensor
    changed: Tensor
    num_classes: int
    info: dict = field(default_factory=dict)
    streamed: ClassVar[bool] = True  # read batch by batch: `rethink.training.fit` streams it

    @property
    def test_y(self) -> Tensor:
        """The test labels (never corrupted)."""
        return self.data.test_y


def corrupt_labels(labels: Tensor, level: float, num_classes: int, generator: torch.Generator) -> Tensor:
    """With probability `level`, replace each label by a class drawn uniformly (possibly the same)."""
    picked = torch.rand(len(labels), generator=generator) < level
    drawn = torch.randint(num_classes, (len(labels),), generator=generator)
    return torch.where(picked, drawn, labels)


def _perm_size(x: Tensor, permute: str) -> int:
    c, h, w = x.shape[1:]
    return h * w if permute == "spatial" else c * h * w


def _permute_flat(x: Tensor, perms: Tensor, permute: str) -> Tensor:
    """Apply one permutation per image (perms [n, P]) over spatial positions or all values."""
    n, c, h, w = x.shape
    if permute == "spatial":
        flat = x.reshape(n, c, h * w)
        return flat.gather(2, perms[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)
    return x.reshape(n, -1).gather(1, perms).reshape(n, c, h, w)


def shuffle_pixels(x: Tensor, perm: Tensor, picked: Tensor, permute: str = "spatial") -> Tensor:
    """Apply ONE fixed permutation to every picked image."""
    out = x.clone()
    sel = x[picked]
    out[picked] = _permute_flat(sel, perm.expand(len(sel), -1), permute)
    return out


def random_pixels(x: Tensor, picked: Tensor, permute: str, generator: torch.Generator) -> Tensor:
    """Apply an independent random permutation to each picked image."""
    out = x.clone()
    sel = x[picked]
    perms = torch.rand(len(sel), _perm_size(x, permute), generator=generator).argsort(dim=1)
    out[picked] = _permute_flat(sel, perms, permute)
    return out


def pixel_stats(x: Tensor, how: str) -> tuple[Tensor, Tensor]:
    """Mean and (population) std of the pixel values, over everything or per channel."""
    xf = x.double()
    if how == "global":
        return xf.mean().reshape(1, 1, 1), xf.std(correction=0).reshape(1, 1, 1)
    return xf.mean(dim=(0, 2, 3)).reshape(-1, 1, 1), xf.std(dim=(0, 2, 3), correction=0).reshape(-1, 1, 1)


def gaussian_images(x: Tensor, picked: Tensor, mean: Tensor, std: Tensor, generator: torch.Generator) -> Tensor:
    """Replace picked images by Gaussian noise of the given mean/std (float32, 0..255 scale, unclipped)."""
    out = x.float()  # a copy: noise is not quantized to uint8, so the statistics match exactly
    noise = torch.randn((int(picked.sum()), *x.shape[1:]), generator=generator, dtype=torch.float64)
    out[picked] = (noise * std + mean).float()
    return out
