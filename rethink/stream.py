"""Streamed image folders (ImageNet, or any tree too large to decode into memory): the file lists and labels
are held, the images are read and decoded batch by batch by DataLoader workers (or by the GPU), never whole.

Layout: torchvision's ImageFolder, `<root>/<train_dir>/<class>/*` and `<root>/<test_dir>/<class>/*` (ImageNet:
`train/<wnid>/*.JPEG`, `val/<wnid>/*`). The file index is scanned once and cached beside the decoded-data cache
(`rethink.data.cache_dir`). Pipelines (`dataset.pipeline`):
- `inception`: Inception v3's input pipeline as TensorFlow's `inception/image_processing.py` has it. Training
  with `regularizer.random_crop`: a random crop of 5-100 % of the area, aspect 3/4-4/3, resized to
  image_size (torchvision's RandomResizedCrop), and `regularizer.flip`; without them, the evaluation view.
  Evaluation: the central 87.5 % of the image resized to image_size x image_size. Pixels scaled to [-1, 1].
- `fixed`: images of one size (an imagefolder), decoded as they are; the paper's crop, flip, rotation and
  per-image whitening run on the device (`rethink.preprocess`), exactly as for data held in memory.
Only label corruption applies to streamed data (`Corruption.apply` says so for the pixel kinds).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rethink.checks import check, in_range, is_int
from rethink.errors import RethinkError

log = logging.getLogger(__name__)

PIPELINES = ("inception", "fixed")
DECODERS = ("auto", "workers", "device")
CROP_AREA, CROP_RATIO = (0.05, 1.0), (0.75, 1.33)  # TF inception: sample_distorted_bounding_box's area and aspect ranges


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
        from rethink.data import stratified_subset

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
    from rethink.data import cache_dir, cached_file

    for split in (train_dir, test_dir):
        if not (root / split).is_dir():
            raise RethinkError(f"dataset.root={root} has no {split}/ folder: a streamed image tree needs "
                               f"<root>/{train_dir}/<class>/<images> and <root>/{test_dir}/<class>/<images>")
    key = hashlib.sha256(f"stream-index-v1:{root.resolve()}:{train_dir}:{test_dir}".encode()).hexdigest()[:12]
    path = cache_dir(root) / f"stream-index-{key}.pt"

    def scan() -> tuple[np.ndarray, Tensor, np.ndarray, Tensor, list[str]]:
        from rethink.imagefolder import class_folders, names, split_files

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
    from rethink.imagefolder import decode

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
