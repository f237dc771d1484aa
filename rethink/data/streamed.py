"""Streamed image folders (ImageNet, or any tree too large to decode into memory): the file lists and labels
are held; the images are read and decoded batch by batch (`rethink.data.stream_io`), never whole.

Layout: torchvision's ImageFolder, `<root>/<train_dir>/<class>/*` and `<root>/<test_dir>/<class>/*` (ImageNet:
`train/<wnid>/*.JPEG`, `val/<wnid>/*`). The file index is scanned once and cached beside the decoded-data cache
(`rethink.data.cache`). Pipelines (`dataset.pipeline`):
- `inception`: Inception v3's input pipeline as TensorFlow's `inception/image_processing.py` has it. Training
  with `regularizer.random_crop`: a random crop of 5-100 % of the area, aspect 3/4-4/3, resized to
  image_size (torchvision's RandomResizedCrop), and `regularizer.flip`; without them, the evaluation view.
  Evaluation: the central 87.5 % of the image resized to image_size x image_size. Pixels scaled to [-1, 1].
- `fixed`: images of one size (an imagefolder), decoded as they are; the paper's crop, flip, rotation and
  per-image whitening run on the device (`rethink.training.preprocess`), exactly as for data held in memory.
Only label corruption applies to streamed data (`Corruption.apply` says so for the pixel kinds).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from rethink.checks import check, in_range, is_int
from rethink.data.cache import cache_dir, cached_file
from rethink.data.subsets import stratified_subset
from rethink.errors import RethinkError

log = logging.getLogger(__name__)

PIPELINES = ("inception", "fixed")
DECODERS = ("auto", "workers", "device")


@dataclass
class StreamedData:
    """A streamed data set: relative file paths (one numpy bytes array per split, no per-file Python objects, so
    forked workers share it) and labels; `train_eval` indexes the fixed training subset evaluated in eval mode."""

    root: Path
    train_files: np.ndarray
    train_y: Tensor
    test_files: np.ndarray
    test_y: Tensor
    classes: list[str]
    train_eval: Tensor
    spec: StreamSpec
    streamed: ClassVar[bool] = True

    @property
    def num_classes(self) -> int:
        """The number of training classes."""
        return len(self.classes)


@dataclass
class StreamSpec:
    """The `dataset` config of a streamed image tree (`dataset=imagenet`, or `dataset=imagefolder` streamed)."""

    name: str
    root: str
    train_dir: str = "train"
    test_dir: str = "val"
    pipeline: str = "inception"
    image_size: int = 299
    image_width: int | None = None  # fixed pipeline: the images' width when not image_size (non-square images)
    eval_fraction: float = 0.875
    crop_size: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    subset_seed: int = 0
    train_eval_size: int | None = 10_000
    workers: int | str = "auto"
    decode: str = "auto"
    num_classes: int | None = None
    input_shape: tuple[int, int, int] | list[int] | None = None
    download: bool = False
    stream: str | bool = True
    streamed: ClassVar[bool] = True  # what the loop is chosen by (`rethink.training.fit`): read batch by batch

    def __post_init__(self) -> None:
        """Check every value; the first bad one stops with one line."""
        d = "dataset."
        opt = "null (all) or an integer > 0"
        check([
            (d + "root", self.root, isinstance(self.root, str | os.PathLike) and str(self.root) != "",
             "the folder holding the image tree"),
            (d + "pipeline", self.pipeline, self.pipeline in PIPELINES, " or ".join(PIPELINES)),
            (d + "image_size", self.image_size, is_int(self.image_size, 1), "an integer > 0"),
            (d + "eval_fraction", self.eval_fraction, in_range(self.eval_fraction, 0, 1, low_open=True), "a number in (0, 1]"),
            (d + "crop_size", self.crop_size, self.crop_size is None or is_int(self.crop_size, 1), "null or an integer > 0"),
            (d + "train_size", self.train_size, self.train_size is None or is_int(self.train_size, 1), opt),
            (d + "test_size", self.test_size, self.test_size is None or is_int(self.test_size, 1), opt),
            (d + "train_eval_size", self.train_eval_size, self.train_eval_size is None or is_int(self.train_eval_size, 1), opt),
            (d + "subset_seed", self.subset_seed, is_int(self.subset_seed, 0), "an integer >= 0"),
            (d + "workers", self.workers, self.workers == "auto" or is_int(self.workers, 0), "auto or an integer >= 0"),
            (d + "decode", self.decode, self.decode in DECODERS, " | ".join(DECODERS)),
            (d + "num_classes", self.num_classes, self.num_classes is None or is_int(self.num_classes, 2),
             "null (infer from the data) or an integer >= 2"),
        ])

    def view_shape(self, channels: int = 3) -> tuple[int, int, int]:
        """The [C, H, W] the model sees: image_size square (inception), or the crop of the fixed-size images."""
        if self.pipeline == "inception":
            return channels, self.image_size, self.image_size
        if self.crop_size:
            return channels, self.crop_size, self.crop_size
        return channels, self.image_size, self.image_width or self.image_size

    def load(self) -> StreamedData:
        """Index the tree (cached), check it against the config, and pick the subsets; decodes no image."""
        root = Path(self.root)
        train_files, train_y, test_files, test_y, classes = index_tree(root, self.train_dir, self.test_dir)
        k = len(classes)
        if self.num_classes is not None and self.num_classes != k:
            raise RethinkError(f"dataset.num_classes={self.num_classes} does not match the data: {root / self.train_dir} "
                               f"holds {k} class folders; use {k} or null (infer)")
        self.num_classes = k
        for key, size, n, split in (("train_size", self.train_size, len(train_y), self.train_dir),
                                    ("test_size", self.test_size, len(test_y), self.test_dir)):
            if size is not None and not k <= size <= n:
                raise RethinkError(f"dataset.{key}={size} is not allowed: use null (all) or an integer from {k} (one per "
                                   f"class) to {n} (the images in {root / split})")
        gen = torch.Generator().manual_seed(self.subset_seed)
        tr = stratified_subset(train_y, self.train_size, gen)
        te = stratified_subset(test_y, self.test_size, gen)
        train_y, test_y = train_y[tr], test_y[te]
        size = min(self.train_eval_size or len(train_y), len(train_y))
        train_eval = stratified_subset(train_y, size, gen)
        channels = int(self.input_shape[0]) if self.input_shape is not None else 3
        shape = self.view_shape(channels)
        if self.input_shape is not None and tuple(self.input_shape) != shape:
            raise RethinkError(f"dataset.input_shape={list(self.input_shape)} does not match dataset.image_size / "
                               f"crop_size: the model sees {list(shape)}; use that or null")
        self.input_shape = shape
        return StreamedData(root, train_files[tr.numpy()], train_y, test_files[te.numpy()], test_y, classes,
                            train_eval, self)


INDEX_KEYS = ("train_files", "train_y", "test_files", "test_y", "classes")  # the cached index file's


def index_tree(root: Path, train_dir: str, test_dir: str) -> tuple[np.ndarray, Tensor, np.ndarray, Tensor, list[str]]:
    """(train files, labels, test files, labels, classes) of the tree, scanned once and cached: class index = the
    sorted training class folders; every test class must be one of them."""
    for split in (train_dir, test_dir):
        if not (root / split).is_dir():
            raise RethinkError(f"dataset.root={root} has no {split}/ folder: a streamed image tree needs "
                               f"<root>/{train_dir}/<class>/<images> and <root>/{test_dir}/<class>/<images>")
    key = hashlib.sha256(f"stream-index-v1:{root.resolve()}:{train_dir}:{test_dir}".encode()).hexdigest()[:12]
    path = cache_dir(root) / f"stream-index-{key}.pt"

    def scan() -> tuple[np.ndarray, Tensor, np.ndarray, Tensor, list[str]]:
        from rethink.data.imagefolder import class_folders, names, split_files

        log.info("indexing the image files under %s (once; cached afterwards)", root)
        classes = class_folders(root, train_dir)
        test_classes = class_folders(root, test_dir)
        if unseen := [c for c in test_classes if c not in classes]:
            raise RethinkError(f"dataset.root={root}: the {test_dir} class {unseen[0]!r} has no folder in {train_dir}/ "
                               f"(which holds {names(classes)}): every test class must be a training class")
        index = {c: i for i, c in enumerate(classes)}
        out = []
        for split, cls in ((train_dir, classes), (test_dir, test_classes)):
            samples = split_files(root, split, cls, index)
            files = np.array([os.path.relpath(p, root).encode() for p, _ in samples], dtype=np.bytes_)
            out += [files, torch.tensor([y for _, y in samples], dtype=torch.int64)]
        return out[0], out[1], out[2], out[3], classes

    # One process scans (a million files take minutes); the other ranks and jobs wait for its file.
    return cached_file(path, _load_index, scan, lambda index, tmp: torch.save(dict(zip(INDEX_KEYS, index, strict=True)), tmp),
                       f"indexing {root}")


def _load_index(path: Path) -> tuple[np.ndarray, Tensor, np.ndarray, Tensor, list[str]]:
    """The cached index (KeyError, or torch's error, when the file is not one)."""
    saved = torch.load(path, weights_only=False)
    return tuple(saved[k] for k in INDEX_KEYS)
