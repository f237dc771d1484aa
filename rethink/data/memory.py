"""Data sets held in memory: uint8 tensors [N, C, H, W] + int64 labels, decoded once and cached on disk.

Sources: a local ImageFolder tree (`{train,test}/<class>/*`, rules in `rethink.data.imagefolder`),
torchvision's CIFAR-10 downloader, and torchvision's MNIST layout.

`dataset.root` must exist, except that a download (cifar10/mnist with download on) may create it
inside an existing folder. Subset sizes larger than a split are errors, never silently clamped.
Decoded tensors are cached by `rethink.data.cache` (one decode between parallel jobs; a file that does
not read back whole is logged, deleted and decoded again).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from rethink.checks import check, is_int
from rethink.data.cache import cache_dir, cached_file
from rethink.data.imagefolder import names, read_tree
from rethink.data.subsets import stratified_subset
from rethink.errors import RethinkError

log = logging.getLogger(__name__)

DATASETS = ("cifar10", "mnist", "imagefolder")


@dataclass
class ImageData:
    """A data set held as tensors: images uint8 (or float in 0..255 after gaussian noise)."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]
    streamed: ClassVar[bool] = False

    @property
    def num_classes(self) -> int:
        """The number of training classes (labels are indices into `classes`)."""
        return len(self.classes)


@dataclass
class DatasetSpec:
    """The `dataset` config group: where the data is and which stratified subset to use.

    `num_classes` and `input_shape` (the [C, H, W] the MODEL sees: after `crop_size`) may be None:
    `load()` infers them from the data; when given, `load()` checks them against it.
    """

    name: str
    root: str
    download: bool = True
    train_size: int | None = None
    test_size: int | None = None
    subset_seed: int = 0
    crop_size: int | None = None
    num_classes: int | None = None
    input_shape: tuple[int, int, int] | list[int] | None = None
    streamed: ClassVar[bool] = False  # held in memory, on the training device (`rethink.data.streamed`: not)

    def __post_init__(self) -> None:
        """Check every value's type and range, and that input_shape agrees with crop_size."""
        if self.name not in DATASETS:
            raise RethinkError(f"dataset.name={self.name!r} is not known: use one of {', '.join(DATASETS)}")
        d, shape = "dataset.", self.input_shape
        check([
            (d + "root", self.root, isinstance(self.root, str | os.PathLike) and str(self.root) != "",
             "the path of the folder that holds the data"),
            (d + "download", self.download, isinstance(self.download, bool), "true or false"),
            (d + "subset_seed", self.subset_seed, is_int(self.subset_seed, 0), "an integer >= 0"),
            (d + "crop_size", self.crop_size, self.crop_size is None or is_int(self.crop_size, 1), "null or an integer > 0"),
            (d + "num_classes", self.num_classes, self.num_classes is None or is_int(self.num_classes, 2),
             "null (infer from the data) or an integer >= 2"),
            (d + "input_shape", shape, shape is None or (isinstance(shape, Sequence) and not isinstance(shape, str)
                                                          and len(shape) == 3 and all(is_int(v, 1) for v in shape)),
             "null (infer from the data) or [C, H, W], three integers > 0"),
        ])
        for key in ("train_size", "test_size"):
            self.check_size(key, getattr(self, key))
        if shape is not None and self.crop_size is not None and tuple(shape[1:]) != (self.crop_size, self.crop_size):
            raise RethinkError(f"dataset.input_shape={list(shape)} is not allowed with dataset.crop_size={self.crop_size}: "
                               f"the model sees {self.crop_size}x{self.crop_size} crops, use [{shape[0]}, {self.crop_size}, "
                               f"{self.crop_size}] or null")

    def check_size(self, key: str, value: object, available: int | None = None, split: str = "") -> None:
        """A subset size: null, or an integer >= num_classes (and, once the data is known, <= `available`)."""
        minimum = self.num_classes or 1
        if value is not None and not is_int(value, minimum):
            allowed = f"an integer >= num_classes ({self.num_classes})" if self.num_classes else "an integer > 0"
            raise RethinkError(f"dataset.{key}={value!r} is not allowed: use null (all) or {allowed}")
        if value is not None and available is not None and value > available:
            raise RethinkError(f"dataset.{key}={value} is not allowed: the {split} split of {self.root} holds {available} "
                               f"images; use null (all) or at most {available}")

    def load(self) -> ImageData:
        """Load (from cache when possible), check against the config, infer what is null, and subset."""
        data = load_full(self.name, Path(self.root), self.download)
        self.num_classes, self.input_shape = self.resolve(data)
        self.check_size("train_size", self.train_size, len(data.train_y), "training")
        self.check_size("test_size", self.test_size, len(data.test_y), "test")
        gen = torch.Generator().manual_seed(self.subset_seed)
        train_idx = stratified_subset(data.train_y, self.train_size, gen)
        test_idx = stratified_subset(data.test_y, self.test_size, gen)
        return ImageData(data.train_x[train_idx], data.train_y[train_idx], data.test_x[test_idx], data.test_y[test_idx], data.classes)

    def resolve(self, data: ImageData) -> tuple[int, tuple[int, int, int]]:
        """(num_classes, input_shape) of `data`: what the config gives, checked, or what the data holds."""
        k = data.num_classes
        if self.num_classes is not None and self.num_classes != k:
            raise RethinkError(f"dataset.num_classes={self.num_classes} does not match the data: the training split of "
                               f"{self.root} holds {k} classes ({names(data.classes)}); use {k} or null (infer)")
        c, h, w = data.train_x.shape[1:]
        crop = self.crop_size
        if crop is not None and min(h, w) < crop:
            raise RethinkError(f"dataset.crop_size={crop} is larger than the images ({h}x{w})")
        seen = (c, crop, crop) if crop is not None else (c, h, w)
        if self.input_shape is not None and tuple(self.input_shape) != seen:
            cropped = f", cropped to {crop}x{crop}" if crop is not None else ""
            raise RethinkError(f"dataset.input_shape={list(self.input_shape)} does not match the data: {self.root} holds "
                               f"{c}x{h}x{w} images (CxHxW{cropped}), so the model sees {list(seen)}; use that or null (infer)")
        return k, seen


def check_root(name: str, root: Path, download: bool) -> None:
    """`dataset.root` must be a folder; for a download (cifar10/mnist, download on), a missing folder
    may be created, but only inside an existing one (a typo in the path is not made into folders)."""
    if root.is_dir():
        return
    if root.exists():
        raise RethinkError(f"dataset.root={root} is not a folder: point it at the folder that holds the data")
    if name == "imagefolder":
        raise RethinkError(f"dataset.root={root} has no train/ and test/ folders (the folder does not exist): "
                           "an imagefolder needs <root>/{train,test}/<class>/<images>")
    if not download:
        raise RethinkError(f"dataset.root={root} does not hold {name.upper()}: the folder does not exist "
                           "(and dataset.download=false)")
    if not root.parent.is_dir():
        raise RethinkError(f"dataset.root={root} does not exist, nor does {root.parent}: point it at the data, or at a "
                           "new folder inside an existing one to download into")


TORCHVISION_SOURCES = {"cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/"}


def source_of(name: str, root: Path) -> tuple[str, str]:
    """(source type, source) of the copy `load_full` reads: the local tree, or torchvision's files
    (with where they come from): provenance for the run's dataset inputs."""
    if name == "cifar10" and (root / "cifar10" / "train").is_dir():
        return "local", str((root / "cifar10").resolve())
    if name in TORCHVISION_SOURCES:
        return "torchvision", f"{TORCHVISION_SOURCES[name]} -> {root.resolve()}"
    return "local", str(root.resolve())


def load_full(name: str, root: Path, download: bool) -> ImageData:
    """The whole data set as tensors, decoded at most once per source (then read from cache)."""
    check_root(name, root, download)
    if name == "cifar10" and (root / "cifar10" / "train").is_dir():
        return _cached(root, "cifar10-imagefolder-v2", root / "cifar10", lambda: read_imagefolder(root / "cifar10"))
    if name == "cifar10":
        return _cached(root, "cifar10-torchvision", root, lambda: read_torchvision("CIFAR10", root, download))
    if name == "mnist":
        return _cached(root, "mnist", root, lambda: read_torchvision("MNIST", root, download))
    return _cached(root, "imagefolder-v2", root, lambda: read_imagefolder(root))


def _cached(root: Path, kind: str, source: Path, read: Callable[[], ImageData]) -> ImageData:
    """`read()`, decoded once (`cached_file`): later calls read the cache file."""
    key = hashlib.sha256(f"{kind}:{source.resolve()}".encode()).hexdigest()[:12]
    path = cache_dir(root) / f"{kind}-{key}.pt"
    return cached_file(path, read_cache, read, lambda data, tmp: torch.save(vars(data), tmp), f"decoding {kind}")


def read_cache(path: Path) -> ImageData:
    """A cache file as ImageData, checked whole; ValueError (or torch's error) when it is not one."""
    saved = torch.load(path, weights_only=True)
    expected = {f.name for f in fields(ImageData)}
    if not isinstance(saved, dict) or set(saved) != expected:
        raise ValueError(f"it holds {sorted(saved) if isinstance(saved, dict) else type(saved).__name__}, "
                         f"not {sorted(expected)}")
    data = ImageData(**saved)
    if problem := tensor_problem(data):
        raise ValueError(problem)
    return data


def tensor_problem(d: ImageData) -> str | None:
    """What makes `d` inconsistent (None if nothing): dtypes, shapes, label range, class names."""
    if not isinstance(d.classes, list) or not d.classes or not all(isinstance(c, str) for c in d.classes):
        return "classes is not a list of names"
    for split in ("train", "test"):
        x, y = getattr(d, f"{split}_x"), getattr(d, f"{split}_y")
        if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.ndim != 4 or len(x) == 0:
            return f"{split}_x is not a non-empty uint8 [N, C, H, W] tensor"
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (len(x),):
            return f"{split}_y is not {len(x)} int64 labels"
        if int(y.min()) < 0 or int(y.max()) >= len(d.classes):
            return f"{split}_y holds labels outside 0..{len(d.classes) - 1}"
    if d.train_x.shape[1:] != d.test_x.shape[1:]:
        return f"train_x {tuple(d.train_x.shape[1:])} and test_x {tuple(d.test_x.shape[1:])} differ in shape"
    return None


def read_imagefolder(root: Path) -> ImageData:
    """Decode a `{train,test}/<class>/*` tree into uint8 tensors (rules: rethink.data.imagefolder)."""
    return ImageData(*read_tree(root))


def read_torchvision(cls_name: str, root: Path, download: bool) -> ImageData:
    """Read CIFAR10 or MNIST through torchvision (downloading if allowed), as uint8 NCHW tensors."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        train, test = (cls(str(root), train=t, download=download) for t in (True, False))
    except Exception as e:
        how = "the download failed" if download else "download is off (dataset.download=false)"
        tree = " (nor a cifar10/{train,test} image tree)" if cls_name == "CIFAR10" else ""
        raise RethinkError(
            f"dataset.root={root} does not hold {cls_name}{tree} and {how}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None

    def tensors(ds) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # MNIST NHW, CIFAR NHWC
        return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)

    return ImageData(*tensors(train), *tensors(test), list(train.classes))
