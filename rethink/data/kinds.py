"""Which kind of data set a `dataset=imagefolder` config builds: held in memory (`rethink.data.memory.DatasetSpec`)
or streamed (`rethink.data.streamed.StreamSpec`), decided here once, when the spec is built. Everything after asks
the built object (`spec.streamed`, `data.streamed`), never the config.
"""

from __future__ import annotations

import os
from pathlib import Path

from rethink.checks import check
from rethink.data.imagefolder import read_image
from rethink.data.memory import DatasetSpec
from rethink.data.streamed import StreamSpec, index_tree
from rethink.errors import RethinkError

STREAM_FRACTION = 0.25  # dataset.stream=auto streams an image tree whose decoded tensors would exceed this share of RAM


def imagefolder_spec(stream: str | bool = "auto", workers: int | str = "auto", decode: str = "auto",
                     train_eval_size: int | None = 10_000, **spec) -> DatasetSpec | StreamSpec:
    """`dataset=imagefolder`: held in memory (`DatasetSpec`), or streamed (`StreamSpec`, pipeline `fixed`: the
    same device-side preprocessing) when `stream` is true, or auto and the decoded tree would not fit
    (`STREAM_FRACTION` of this machine's memory)."""
    check([("dataset.stream", stream, stream in (True, False, "auto"), "auto, true or false")])
    if stream == "auto":
        stream = spec.get("root") is not None and too_large(Path(str(spec["root"])))
    if not stream:
        return DatasetSpec(**spec)
    shape = spec.pop("input_shape", None)
    spec.pop("download", None)
    if spec.get("root") is None:
        raise RethinkError("dataset.root=null: an imagefolder needs <root>/{train,test}/<class>/<images>")
    c, h, w = first_image_shape(Path(str(spec["root"])))
    crop = spec.get("crop_size")
    shape = shape or [c, crop or h, crop or w]
    return StreamSpec(pipeline="fixed", train_dir="train", test_dir="test", image_size=h, image_width=w, workers=workers,
                      decode=decode, train_eval_size=train_eval_size, input_shape=shape, stream=True, **spec)


def first_image_shape(root: Path, train_files=None) -> tuple[int, int, int]:
    """[C, H, W] of the first training image of a tree (a streamed imagefolder: all images share the size)."""
    files = index_tree(root, "train", "test")[0] if train_files is None else train_files
    return tuple(read_image(str(root / files[0].decode())).shape)


def too_large(root: Path) -> bool:
    """Whether the tree's images, decoded as uint8, would take more than STREAM_FRACTION of this machine's memory."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        return False  # DatasetSpec says what is missing
    train_files, _, test_files, _, _ = index_tree(root, "train", "test")
    c, h, w = first_image_shape(root, train_files)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (len(train_files) + len(test_files)) * c * h * w > STREAM_FRACTION * memory
