import pytest
import torch
from torchvision.io import encode_jpeg

from rethink import data as data_mod
from rethink.data import DatasetSpec, stratified_subset
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
