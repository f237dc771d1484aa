import os
import re

import pytest
import torch
from torchvision.io import encode_jpeg

from rethink.data import memory as data_mod
from rethink.data import subsets
from rethink.data.memory import DatasetSpec
from rethink.data.subsets import stratified_subset
from rethink.errors import RethinkError


def make_tree(root, classes=("a", "b", "c"), per_class=4, size=16):
    for split in ("train", "test"):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for k in range(per_class):
                img = torch.full((3, size, size), 40 * i + k, dtype=torch.uint8)
                (root / split / c / f"{k}.jpg").write_bytes(encode_jpeg(img).numpy().tobytes())


def test_imagefolder_is_decoded_once_then_read_from_cache(tmp_path, monkeypatch):
    make_tree(tmp_path / "tree")
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "cache"))
    calls = []
    real = data_mod.read_imagefolder
    monkeypatch.setattr(data_mod, "read_imagefolder", lambda root: calls.append(root) or real(root))
    spec = DatasetSpec(name="imagefolder", root=str(tmp_path / "tree"), num_classes=3, input_shape=[3, 16, 16])
    first, second = spec.load(), spec.load()
    assert len(calls) == 1
    assert first.train_x.shape == (12, 3, 16, 16) and first.train_x.dtype == torch.uint8
    assert torch.equal(first.train_x, second.train_x) and first.classes == ["a", "b", "c"]
    assert first.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_unreadable_image_names_the_file(tmp_path, monkeypatch):
    make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "b" / "1.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "cache"))
    spec = DatasetSpec(name="imagefolder", root=str(tmp_path / "tree"), num_classes=3)
    with pytest.raises(RethinkError, match=r"cannot read image .*train/b/1\.jpg"):
        spec.load()


def test_stratified_subset_is_balanced_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)
    idx = stratified_subset(labels, 95, torch.Generator().manual_seed(0))
    counts = labels[idx].bincount()
    assert len(idx) == 95 and counts.max() - counts.min() <= 1
    assert torch.equal(idx, stratified_subset(labels, 95, torch.Generator().manual_seed(0)))
    assert torch.equal(stratified_subset(labels, None, torch.Generator()), torch.arange(1000))


def test_real_cifar10_subset(data_root):
    d = DatasetSpec(name="cifar10", root=str(data_root), train_size=300, test_size=100).load()
    assert d.train_x.shape == (300, 3, 32, 32) and d.test_x.shape == (100, 3, 32, 32)
    assert d.train_y.bincount().tolist() == [30] * 10 and d.classes[0] == "airplane"


def test_real_mnist_through_torchvision_layout(data_root):
    d = DatasetSpec(name="mnist", root=str(data_root), download=False, train_size=200, test_size=50).load()
    assert d.train_x.shape == (200, 1, 28, 28) and d.train_x.dtype == torch.uint8 and d.num_classes == 10


@pytest.mark.parametrize("bad", [dict(train_size=0), dict(test_size=-5), dict(name="svhn")])
def test_bad_dataset_values(bad, tmp_path):
    with pytest.raises(RethinkError, match="dataset"):
        DatasetSpec(**({"name": "cifar10", "root": str(tmp_path)} | bad))


# --- ImageFolder trees: classes across splits, inference, bad trees -------------------------------

VALUE = {"a": 10, "b": 20, "c": 30, "d": 40}  # every pixel of class c's images is VALUE[c] (+ the image number)


def write_tree(root, splits, size=16, mode="RGB", ext="png"):
    """`splits` = {"train": {"a": 3, ...}, "test": {...}}: that many `mode` images per class folder."""
    from PIL import Image

    for split, classes in splits.items():
        for c, n in classes.items():
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                img = Image.new("L", (size, size), VALUE[c] + k).convert(mode)
                img.save(root / split / c / f"{k}.{ext}")
    return root


def spec(root, **kw):
    return DatasetSpec(**({"name": "imagefolder", "root": str(root), "download": False} | kw))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def class_of(x):
    """The class name an image was written for (from its pixel value)."""
    v = int(x.flatten()[0]) // 10 * 10
    return {value: c for c, value in VALUE.items()}[v]


def test_one_class_index_per_name_across_splits(tmp_path, cache):
    """train {a,b,c}, test {b,c}: per-split indices would label test b as 0 and c as 1 (all wrong)."""
    root = write_tree(tmp_path / "t", {"train": {"a": 3, "b": 3, "c": 3}, "test": {"b": 2, "c": 2}})
    d = spec(root).load()
    assert d.classes == ["a", "b", "c"] and d.test_y.tolist() == [1, 1, 2, 2]
    for x, y in [*zip(d.train_x, d.train_y, strict=True), *zip(d.test_x, d.test_y, strict=True)]:
        assert d.classes[y] == class_of(x)


def test_a_test_class_unseen_in_training_is_an_error(tmp_path, cache):
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"b": 2, "c": 2}})
    with pytest.raises(RethinkError) as e:
        spec(root).load()
    assert str(e.value) == (f"dataset.root={root}: the test class 'c' has no folder in train/ (which holds a, b): "
                            "every test class must be a training class")


@pytest.mark.parametrize("mode, crop, shape", [("RGB", None, (3, 16, 16)), ("L", None, (1, 16, 16)),
                                               ("RGBA", None, (3, 16, 16)), ("LA", 12, (1, 12, 12))])
def test_num_classes_and_input_shape_are_inferred(tmp_path, cache, mode, crop, shape):
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2, "c": 2}, "test": {"a": 1, "b": 1, "c": 1}}, mode=mode)
    s = spec(root, crop_size=crop)
    d = s.load()
    assert (s.num_classes, s.input_shape) == (3, shape)
    assert d.train_x.shape == (6, shape[0], 16, 16) and d.train_x.dtype == torch.uint8
    assert d.train_x[2].unique().tolist() == [VALUE["b"]]  # the grey level, in every channel
    spec(root, crop_size=crop, num_classes=3, input_shape=list(shape)).load()  # the same values, given: fine


def test_grayscale_images_in_a_colour_tree_become_rgb(tmp_path, cache):
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1}}, mode="L")
    from PIL import Image

    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "test" / "a" / "rgb.png")
    d = spec(root).load()
    assert d.train_x.shape[1] == 3 and torch.equal(d.train_x[:, 0], d.train_x[:, 2])
    assert d.test_x[1, :, 0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("given, message", [
    (dict(num_classes=5), "dataset.num_classes=5 does not match the data: the training split of {root} holds 3 classes "
                          "(a, b, c); use 3 or null (infer)"),
    (dict(input_shape=[3, 8, 8]), "dataset.input_shape=[3, 8, 8] does not match the data: {root} holds 1x16x16 images "
                                  "(CxHxW), so the model sees [1, 16, 16]; use that or null (infer)"),
    (dict(input_shape=[1, 8, 8], crop_size=8), None),
    (dict(crop_size=20), "dataset.crop_size=20 is larger than the images (16x16)"),
    (dict(train_size=7), "dataset.train_size=7 is not allowed: the training split of {root} holds 6 images; "
                         "use null (all) or at most 6"),
    (dict(test_size=4), "dataset.test_size=4 is not allowed: the test split of {root} holds 3 images; "
                        "use null (all) or at most 3"),
    (dict(train_size=2), "dataset.train_size=2 is not allowed: use null (all) or an integer >= num_classes (3)"),
])
def test_given_values_are_checked_against_the_tree(tmp_path, cache, given, message):
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2, "c": 2}, "test": {"a": 1, "b": 1, "c": 1}}, mode="L")
    if message is None:
        assert spec(root, **given).load().train_x.shape == (6, 1, 16, 16)
        return
    with pytest.raises(RethinkError) as e:
        spec(root, **given).load()
    assert str(e.value) == message.format(root=root)


@pytest.mark.parametrize("splits, message", [
    ({"train": {"a": 2, "b": 0}, "test": {"a": 1}}, "dataset.root={root}: the class folder train/b holds no images"),
    ({"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 0}}, "dataset.root={root}: the class folder test/b holds no images"),
    ({"train": {}, "test": {"a": 1}}, "dataset.root={root}: train/ holds no class folders"),
    ({"train": {"a": 1}}, "dataset.root={root} has no train/ and test/ folders: an imagefolder needs"),
])
def test_empty_or_incomplete_trees_are_errors(tmp_path, cache, splits, message):
    root = write_tree(tmp_path / "t", splits, mode="L")
    (root / "train").mkdir(exist_ok=True)
    (root / "train" / "notes.txt").write_text("not a class")  # a file beside the class folders is ignored
    with pytest.raises(RethinkError, match="^" + re.escape(message.format(root=root))):
        spec(root).load()


def test_images_of_another_size_name_the_file(tmp_path, cache):
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1}})
    (root / "test" / "a" / "big.png").write_bytes(png(20, "RGB"))
    with pytest.raises(RethinkError) as e:
        spec(root).load()
    assert str(e.value) == (f"image {root}/test/a/big.png is 20x20 but {root}/train/a/0.png is 16x16: "
                            "all images of an imagefolder must have one size")


def test_formats_torchvision_does_not_decode_are_read_through_pil(tmp_path, cache):
    root = write_tree(tmp_path / "t", {"train": {"a": 1, "b": 1}, "test": {"a": 1}}, ext="bmp")
    d = spec(root).load()
    assert d.train_x.shape == (2, 3, 16, 16) and d.train_x[1].unique().tolist() == [VALUE["b"]]


def png(size, mode):
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new(mode, (size, size)).save(out, format="PNG")
    return out.getvalue()


# --- dataset.root -------------------------------------------------------------------------

@pytest.mark.parametrize("name, download, message", [
    ("imagefolder", False, "dataset.root={root} has no train/ and test/ folders (the folder does not exist): "),
    ("cifar10", False, "dataset.root={root} does not hold CIFAR10: the folder does not exist (and dataset.download=false)"),
    ("mnist", True, "dataset.root={root} does not exist, nor does {parent}: point it at the data, or at a new "
                    "folder inside an existing one to download into"),
])
def test_a_missing_root_is_an_error_unless_a_download_can_create_it(tmp_path, name, download, message):
    root = tmp_path / "no" / "such"
    with pytest.raises(RethinkError, match="^" + re.escape(message.format(root=root, parent=root.parent))):
        DatasetSpec(name=name, root=str(root), download=download).load()
    assert not root.parent.exists()  # nothing created


def test_a_root_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(RethinkError, match="is not a folder"):
        DatasetSpec(name="mnist", root=str(tmp_path / "f")).load()


@pytest.mark.parametrize("bad, message", [
    (dict(root=None), "dataset.root=None is not allowed: use the path of the folder that holds the data"),
    (dict(download="yes"), "dataset.download='yes' is not allowed: use true or false"),
    (dict(subset_seed=-1), "dataset.subset_seed=-1 is not allowed: use an integer >= 0"),
    (dict(crop_size=0), "dataset.crop_size=0 is not allowed: use null or an integer > 0"),
    (dict(num_classes=1), "dataset.num_classes=1 is not allowed: use null (infer from the data) or an integer >= 2"),
    (dict(num_classes="ten"), "dataset.num_classes='ten' is not allowed: use null (infer from the data) or an integer >= 2"),
    (dict(input_shape=[3, 28]), "dataset.input_shape=[3, 28] is not allowed: use null (infer from the data) or [C, H, W], "
                                "three integers > 0"),
    (dict(input_shape=[3, 32, 32], crop_size=28), "dataset.input_shape=[3, 32, 32] is not allowed with dataset.crop_size=28: "
                                                  "the model sees 28x28 crops, use [3, 28, 28] or null"),
    (dict(train_size="abc"), "dataset.train_size='abc' is not allowed: use null (all) or an integer > 0"),
    (dict(test_size=5, num_classes=10), "dataset.test_size=5 is not allowed: use null (all) or an integer >= num_classes (10)"),
])
def test_dataset_values_name_the_value_and_what_is_allowed(tmp_path, bad, message):
    with pytest.raises(RethinkError) as e:
        DatasetSpec(**({"name": "cifar10", "root": str(tmp_path)} | bad))
    assert str(e.value) == message


# --- subsets --------------------------------------------------------------------------------

def test_subset_of_the_real_data_larger_than_a_split_names_the_count(data_root):
    with pytest.raises(RethinkError, match=r"dataset.test_size=10001 is not allowed: the test split of .* holds 10000 images"):
        DatasetSpec(name="cifar10", root=str(data_root), test_size=10001).load()


def test_stratified_subset_gives_the_size_asked_when_a_class_is_short():
    labels = torch.tensor([0] * 8 + [1] * 1 + [2] * 2)
    idx = stratified_subset(labels, 7, torch.Generator().manual_seed(0))
    assert len(idx) == 7 and labels[idx].bincount().tolist() == [4, 1, 2]


@pytest.mark.parametrize("size, counts", [(95, [100] * 10), (7, [5, 5, 5]), (10, [4, 4, 4])])
def test_balanced_quota_is_the_even_split_when_no_class_is_short(size, counts):
    k = len(counts)
    assert subsets.balanced_quota(size, counts) == [size // k + (i < size % k) for i in range(k)]


# --- the cache ------------------------------------------------------------------------------

def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path):
    path.write_bytes(b"\x00garbage" * 100)


def foreign(path):
    torch.save({"train_x": torch.zeros(2)}, path)


def bad_labels(path):
    saved = torch.load(path, weights_only=True)
    torch.save(saved | {"test_y": saved["test_y"] + 5}, path)


@pytest.mark.parametrize("damage", [truncate, garbage, foreign, bad_labels])
def test_a_corrupt_cache_is_deleted_and_decoded_again(tmp_path, cache, monkeypatch, caplog, damage):
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    calls = []
    real = data_mod.read_imagefolder
    monkeypatch.setattr(data_mod, "read_imagefolder", lambda r: calls.append(r) or real(r))
    first = spec(root).load()
    [path] = cache.glob("*.pt")
    damage(path)
    with caplog.at_level("WARNING", logger="rethink.data"):
        again = spec(root).load()
    assert len(calls) == 2 and "is unreadable" in caplog.text and str(path) in caplog.text
    assert again.classes == first.classes
    assert all(torch.equal(getattr(again, k), getattr(first, k)) for k in ("train_x", "train_y", "test_x", "test_y"))
    assert sorted(p.name for p in cache.iterdir()) == [path.with_suffix(".lock").name, path.name]  # no temporary left
    spec(root).load()
    assert len(calls) == 2  # and read from the cache again


DECODE_SLOWLY = """
import logging, sys, time
from rethink.data import memory as data
from rethink.data.memory import DatasetSpec
real = data.read_imagefolder
def slow(root):  # a decode that takes seconds, as CIFAR-10's does: every job starts before the first is done
    print("decoding", flush=True)
    time.sleep(3)
    return real(root)
data.read_imagefolder = slow
logging.basicConfig(level=logging.INFO)
d = DatasetSpec(name="imagefolder", root=sys.argv[1], download=False).load()
print("loaded", d.train_x.shape[0], flush=True)
"""


def test_parallel_jobs_decode_a_data_set_once_between_them(tmp_path, cache):
    """Jobs started together on a fresh machine: one decodes, the others wait for its cache file and read it."""
    import subprocess
    import sys

    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    env = os.environ | {"RETHINK_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", DECODE_SLOWLY, str(root)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    printed = "".join(out for out, _ in outs)
    assert printed.count("loaded 4") == 3 and printed.count("decoding") == 1, outs
    assert sum("waiting for another process decoding" in err for _, err in outs) >= 1, outs


def test_a_cache_folder_that_cannot_be_made_costs_a_warning_not_the_job(tmp_path, monkeypatch, caplog):
    """No lock file and no cache where the folder cannot be made: the data set is decoded, with a warning."""
    root = write_tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "file" / "cache"))  # under a file: mkdir fails
    with caplog.at_level("WARNING", logger="rethink.data"):
        d = spec(root).load()
    assert d.train_x.shape[0] == 4 and "could not write the data cache" in caplog.text
