"""Data sets -> uint8 tensors [N, C, H, W] + int64 labels, decoded once and cached on disk.

Sources: a local ImageFolder tree (`{train,test}/<class>/*`), torchvision's CIFAR-10 downloader,
and torchvision's MNIST layout. The cache lives in `<root>/.rethink-cache/` (or `$RETHINK_CACHE`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

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

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class DatasetSpec:
    """The `dataset` config group: where the data is and which stratified subset to use."""

    name: str
    root: str
    download: bool = True
    train_size: int | None = None
    test_size: int | None = None
    subset_seed: int = 0
    crop_size: int | None = None
    num_classes: int = 10
    input_shape: tuple[int, int, int] | list[int] = (3, 28, 28)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise RethinkError(f"dataset.name={self.name!r} is not known: use one of {', '.join(DATASETS)}")
        for key in ("train_size", "test_size"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < self.num_classes):
                raise RethinkError(
                    f"dataset.{key}={value!r} is not allowed: use null (all) or an integer >= num_classes ({self.num_classes})"
                )

    def load(self) -> ImageData:
        """Load (from cache when possible), check, and subset the data set."""
        data = load_full(self.name, Path(self.root), self.download)
        if data.num_classes != self.num_classes:
            raise RethinkError(
                f"dataset.num_classes={self.num_classes} but {self.root} holds {data.num_classes} classes"
            )
        shape = tuple(data.train_x.shape[1:])
        if self.crop_size is not None and min(shape[1:]) < self.crop_size:
            raise RethinkError(f"dataset.crop_size={self.crop_size} is larger than the images ({shape[1]}x{shape[2]})")
        gen = torch.Generator().manual_seed(self.subset_seed)
        train_idx = stratified_subset(data.train_y, self.train_size, gen)
        test_idx = stratified_subset(data.test_y, self.test_size, gen)
        return ImageData(data.train_x[train_idx], data.train_y[train_idx], data.test_x[test_idx], data.test_y[test_idx], data.classes)


def stratified_subset(labels: Tensor, size: int | None, generator: torch.Generator) -> Tensor:
    """Indices of a class-balanced random subset of `size` examples (all, in order, if None)."""
    if size is None or size >= len(labels):
        return torch.arange(len(labels))
    classes = labels.unique()
    per_class = [size // len(classes) + (i < size % len(classes)) for i in range(len(classes))]
    picks = []
    for c, k in zip(classes.tolist(), per_class, strict=True):
        idx = (labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:k]])
    return torch.cat(picks).sort().values


def cache_dir(root: Path) -> Path:
    """Where decoded tensors are cached: $RETHINK_CACHE, else <root>/.rethink-cache."""
    return Path(os.environ.get("RETHINK_CACHE") or root / ".rethink-cache")


def load_full(name: str, root: Path, download: bool) -> ImageData:
    """The whole data set as tensors, decoded at most once per source (then read from cache)."""
    if name == "cifar10" and (root / "cifar10" / "train").is_dir():
        return _cached(root, "cifar10-imagefolder", root / "cifar10", lambda: read_imagefolder(root / "cifar10"))
    if name == "cifar10":
        return _cached(root, "cifar10-torchvision", root, lambda: read_torchvision("CIFAR10", root, download))
    if name == "mnist":
        return _cached(root, "mnist", root, lambda: read_torchvision("MNIST", root, download))
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise RethinkError(f"dataset.root={root} has no train/ and test/ folders: an imagefolder needs <root>/{{train,test}}/<class>/*")
    return _cached(root, "imagefolder", root, lambda: read_imagefolder(root))


def _cached(root: Path, kind: str, source: Path, read) -> ImageData:
    key = hashlib.sha256(f"{kind}:{source.resolve()}".encode()).hexdigest()[:12]
    path = cache_dir(root) / f"{kind}-{key}.pt"
    if path.exists():
        return ImageData(**torch.load(path, weights_only=True))
    data = read()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(vars(data), tmp)
        os.replace(tmp, path)  # atomic: parallel jobs never see a half-written cache
        log.info("cached decoded %s at %s", kind, path)
    except OSError as e:
        log.warning("could not write the data cache %s (%s); decoding again next time", path, e)
    return data


def read_imagefolder(root: Path) -> ImageData:
    """Decode a `{train,test}/<class>/*` tree (torchvision's ImageFolder layout) into uint8 tensors."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
    from torchvision.io import ImageReadMode, decode_image, read_file

    log.info("decoding images under %s (once; cached afterwards)", root)
    splits = {}
    classes: list[str] = []
    for split in ("train", "test"):
        classes, class_to_idx = find_classes(str(root / split))
        samples = make_dataset(str(root / split), class_to_idx, extensions=IMG_EXTENSIONS)
        images = []
        for path, _ in samples:
            try:
                images.append(decode_image(read_file(path), mode=ImageReadMode.RGB))
            except Exception as e:  # torchvision raises RuntimeError/ValueError variants
                raise RethinkError(f"cannot read image {path}: {e}") from None
            if images[-1].shape != images[0].shape:
                raise RethinkError(f"image {path} is {tuple(images[-1].shape)}, expected {tuple(images[0].shape)} like the others")
        if not images:
            raise RethinkError(f"no images found under {root / split}")
        splits[split] = (torch.stack(images), torch.tensor([y for _, y in samples], dtype=torch.int64))
    return ImageData(*splits["train"], *splits["test"], classes)


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
