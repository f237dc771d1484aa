import pytest
import torch

from rethink.corrupt import Corruption
from rethink.data.memory import ImageData
from rethink.errors import RethinkError


def synthetic(n=4000, n_test=500, seed=0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    return ImageData(
        torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n,), generator=g),
        torch.randint(0, 256, (n_test, 3, 8, 8), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n_test,), generator=g),
        [str(i) for i in range(10)],
    )


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_label_corruption_changes_about_p_times_nine_tenths(p):
    d = synthetic(n=20000)
    c = Corruption(kind="labels", level=p, seed=1).apply(d)
    frac = c.changed.float().mean().item()
    assert abs(frac - p * 0.9) < 0.015  # a uniformly drawn class equals the true one 1/10 of the time
    assert torch.equal(c.changed, c.train_y != d.train_y)
    assert torch.equal(c.true_train_y, d.train_y)
    assert torch.equal(c.test_y, d.test_y) and torch.equal(c.test_x, d.test_x)  # test never corrupted
    assert torch.equal(c.train_x, d.train_x)
    if p == 1.0:  # random labels: uniform over classes, independent of the true ones
        counts = c.train_y.bincount(minlength=10).float() / len(c.train_y)
        assert (counts - 0.1).abs().max() < 0.015


def test_label_corruption_is_deterministic_per_seed_and_nested_across_levels():
    d = synthetic()
    a = Corruption(level=0.5, seed=3).apply(d)
    b = Corruption(level=0.5, seed=3).apply(d)
    other = Corruption(level=0.5, seed=4).apply(d)
    assert torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.train_y, other.train_y)
    low, high = Corruption(level=0.2, seed=3).apply(d), Corruption(level=0.8, seed=3).apply(d)
    assert bool((low.changed & ~high.changed).sum() == 0)


@pytest.mark.parametrize("permute", ["spatial", "all"])
def test_shuffled_pixels_use_one_fixed_permutation_for_train_and_test(permute):
    d = synthetic(n=50, n_test=20)
    c = Corruption(kind="shuffled_pixels", level=1.0, permute=permute, seed=0).apply(d)
    assert c.changed.all() and torch.equal(c.train_y, d.train_y)
    # Recover the permutation from one image with all-distinct values and check it on every image.
    probe = ImageData(torch.arange(3 * 64, dtype=torch.int64).reshape(1, 3, 8, 8).to(torch.uint8) if permute == "all"
                      else (torch.arange(64).repeat(3, 1).reshape(1, 3, 8, 8) + torch.tensor([0, 64, 128]).reshape(1, 3, 1, 1)).to(torch.uint8),
                      torch.zeros(1, dtype=torch.long), d.test_x[:1], d.test_y[:1], d.classes)
    perm = Corruption(kind="shuffled_pixels", level=1.0, permute=permute, seed=0).apply(probe).train_x.flatten().long()
    for src, out in [(d.train_x, c.train_x), (d.test_x, c.test_x)]:
        assert torch.equal(src.flatten(1)[:, perm], out.flatten(1))
    if permute == "spatial":  # channels of a pixel stay together
        assert torch.equal(perm.reshape(3, 64)[1], perm.reshape(3, 64)[0] + 64)


def test_random_pixels_permute_each_image_independently():
    d = synthetic(n=200, n_test=50)
    c = Corruption(kind="random_pixels", level=1.0, seed=0).apply(d)
    again = Corruption(kind="random_pixels", level=1.0, seed=0).apply(d)
    assert torch.equal(c.train_x, again.train_x)
    for i in range(20):  # each image keeps its pixels (as RGB triples), only their places change
        src = d.train_x[i].flatten(1).T.tolist()
        out = c.train_x[i].flatten(1).T.tolist()
        assert sorted(src) == sorted(out)
    # Different images get different permutations: test with two identical images.
    twin = ImageData(d.train_x[:1].repeat(2, 1, 1, 1), d.train_y[:2], d.test_x, d.test_y, d.classes)
    t = Corruption(kind="random_pixels", level=1.0, seed=0).apply(twin)
    assert not torch.equal(t.train_x[0], t.train_x[1])


@pytest.mark.parametrize("stats", ["global", "per_channel"])
def test_gaussian_matches_data_mean_and_std(stats):
    d = synthetic(n=3000, n_test=100)
    d.train_x[:, 0] //= 2  # make channels differ
    c = Corruption(kind="gaussian", level=1.0, gaussian_stats=stats, seed=0).apply(d)
    x, ref = c.train_x.double(), d.train_x.double()
    if stats == "global":
        assert abs(x.mean() - ref.mean()) < 0.5 and abs(x.std() - ref.std()) / ref.std() < 0.01
    else:
        assert torch.allclose(x.mean(dim=(0, 2, 3)), ref.mean(dim=(0, 2, 3)), atol=0.5)
        assert torch.allclose(x.std(dim=(0, 2, 3)), ref.std(dim=(0, 2, 3)), rtol=0.01)
    assert torch.equal(c.train_y, d.train_y) and c.changed.all()


def test_partial_pixel_corruption_touches_about_p_of_the_images():
    d = synthetic(n=4000)
    c = Corruption(kind="random_pixels", level=0.3, seed=0).apply(d)
    assert abs(c.changed.float().mean().item() - 0.3) < 0.03
    assert torch.equal(c.train_x[~c.changed], d.train_x[~c.changed])


@pytest.mark.parametrize("bad", [dict(level=1.5), dict(level=-0.1), dict(kind="nope"), dict(permute="rows")])
def test_bad_corruption_values_are_refused(bad):
    with pytest.raises(RethinkError, match="corruption"):
        Corruption(**bad)


@pytest.mark.parametrize("bad, message", [
    (dict(level=float("nan")), "corruption.level=nan is not allowed: use a number in [0, 1]"),
    (dict(level=float("inf")), "corruption.level=inf is not allowed: use a number in [0, 1]"),
    (dict(level="abc"), "corruption.level='abc' is not allowed: use a number in [0, 1]"),
    (dict(level=True), "corruption.level=True is not allowed: use a number in [0, 1]"),
    (dict(gaussian_stats="pixel"), "corruption.gaussian_stats='pixel' is not allowed: use global or per_channel"),
    (dict(seed=-1), "corruption.seed=-1 is not allowed: use an integer >= 0"),
    (dict(seed="x"), "corruption.seed='x' is not allowed: use an integer >= 0"),  # seed=x: corruption.seed is ${seed}
    (dict(seed=1.5), "corruption.seed=1.5 is not allowed: use an integer >= 0"),
])
def test_bad_corruption_values_name_the_value_and_what_is_allowed(bad, message):
    with pytest.raises(RethinkError) as e:
        Corruption(**bad)
    assert str(e.value) == message


def test_integer_levels_become_floats():
    assert Corruption(level=1).level == 1.0 and isinstance(Corruption(level=0).level, float)
