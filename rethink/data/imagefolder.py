"""An image tree `<root>/{train,test}/<class>/*` (torchvision's ImageFolder layout) -> uint8 tensors.

- Classes: every non-hidden folder of train/ is a class; class index = position in the sorted list
  of the TRAINING classes, for both splits. A test class with no training folder is an error (the
  model could never predict it); a training class missing from test/ is fine. A class folder
  without images (.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp) is an error.
- Channels: if every image of the tree is grayscale (PIL modes 1, L, LA, I, I;16, F) the data has
  1 channel; otherwise 3 (RGB): grayscale images are replicated to 3 channels, an alpha channel is
  dropped (RGBA -> RGB, LA -> L), palette and CMYK images are converted to RGB.
- Size: every image of the tree (both splits) must have the same height and width.

Every problem stops with one line (RethinkError) naming the folder or file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from rethink.errors import RethinkError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
LAYOUT = "an imagefolder needs <root>/{train,test}/<class>/<images>"


def names(classes: list[str], limit: int = 10) -> str:
    """`a, b, c` (the first `limit` names, then how many more)."""
    more = f", ... ({len(classes) - limit} more)" if len(classes) > limit else ""
    return ", ".join(classes[:limit]) + more


def class_folders(root: Path, split: str) -> list[str]:
    """The sorted class folder names of one split (hidden folders, e.g. .ipynb_checkpoints, skipped)."""
    folder = root / split
    if not root.is_dir() or not folder.is_dir():
        missing = " (the folder does not exist)" if not root.exists() else ""
        raise RethinkError(f"dataset.root={root} has no train/ and test/ folders{missing}: {LAYOUT}")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise RethinkError(f"dataset.root={root}: {split}/ holds no class folders: {LAYOUT}")
    return classes


def split_files(root: Path, split: str, classes: list[str], index: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of every image of one split, in torchvision's order; no class folder may be empty."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    samples = make_dataset(str(root / split), {c: index[c] for c in classes}, extensions=IMG_EXTENSIONS,
                           allow_empty=True)
    counts = torch.bincount(torch.tensor([y for _, y in samples], dtype=torch.int64), minlength=len(index))
    for c in classes:
        if counts[index[c]] == 0:
            raise RethinkError(f"dataset.root={root}: the class folder {split}/{c} holds no images "
                               f"({' '.join(IMG_EXTENSIONS)})")
    return samples


def is_gray(path: str) -> bool:
    """Whether the file is a grayscale image (read from its header)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.mode in GRAY_MODES


def decode(path: str, gray: bool) -> Tensor:
    """One image as uint8 [C, H, W], C = 1 (`gray`) or 3; formats torchvision cannot decode go through PIL."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        x = decode_image(read_file(path), mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB)
    except RuntimeError:  # e.g. .bmp, .ppm, .pgm, .tif: not torchvision's formats
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            x = torch.from_numpy(np.array(img.convert("L" if gray else "RGB")))
        x = x.unsqueeze(0) if gray else x.permute(2, 0, 1)
    if x.dtype != torch.uint8:  # 16-bit PNG: keep the high byte
        x = (x.to(torch.int32) >> 8).to(torch.uint8)
    return x.contiguous()


def read_image(path: str) -> Tensor:
    """`decode` in the file's own colour kind, or a RethinkError naming the file."""
    try:
        return decode(path, is_gray(path))
    except Exception as e:  # PIL and torchvision raise OSError/RuntimeError/ValueError variants
        raise RethinkError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def read_tree(root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """Decode the tree: (train images, train labels, test images, test labels, training classes)."""
    classes = class_folders(root, "train")
    test_classes = class_folders(root, "test")
    unseen = [c for c in test_classes if c not in classes]
    if unseen:
        raise RethinkError(f"dataset.root={root}: the test class {unseen[0]!r} has no folder in train/ (which holds "
                           f"{names(classes)}): every test class must be a training class")
    index = {c: i for i, c in enumerate(classes)}
    samples = {"train": split_files(root, "train", classes, index), "test": split_files(root, "test", test_classes, index)}
    log.info("decoding images under %s (once; cached afterwards)", root)
    first_path, size = samples["train"][0][0], None
    decoded: dict[str, list[Tensor]] = {}
    for split in SPLITS:
        decoded[split] = []
        for path, _ in samples[split]:
            x = read_image(path)
            size = size or tuple(x.shape[1:])
            if tuple(x.shape[1:]) != size:
                raise RethinkError(f"image {path} is {x.shape[1]}x{x.shape[2]} but {first_path} is {size[0]}x{size[1]}: "
                                   "all images of an imagefolder must have one size")
            decoded[split].append(x)
    channels = 3 if any(x.shape[0] == 3 for xs in decoded.values() for x in xs) else 1
    out = [t for s in SPLITS for t in (torch.stack([x.expand(channels, -1, -1) for x in decoded[s]]),
                                       torch.tensor([y for _, y in samples[s]], dtype=torch.int64))]
    return out[0], out[1], out[2], out[3], classes
