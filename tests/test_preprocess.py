import numpy as np
import torch

from rethink.preprocess import Preprocess, center_crop, random_crop, random_flip, whiten


def test_whitening_matches_the_formula():
    x = torch.rand(5, 3, 28, 28) * 255
    x[0] = 7.0  # constant image: std 0 -> divided by 1/sqrt(N)
    out = whiten(x).numpy()
    for img, got in zip(x.numpy(), out, strict=True):
        n = img.size
        expected = (img - img.mean()) / max(img.std(ddof=0), 1 / np.sqrt(n))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_center_crop_takes_the_middle():
    x = torch.arange(32 * 32).reshape(1, 1, 32, 32)
    assert torch.equal(center_crop(x, 28), x[..., 2:30, 2:30])


def test_random_crop_takes_a_window_of_each_image():
    x = torch.arange(2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    out = random_crop(x, 28, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 28, 28)
    for i in range(2):
        top, left = divmod(int(out[i, 0, 0, 0] - x[i, 0, 0, 0]), 32)
        assert 0 <= top <= 4 and 0 <= left <= 4
        assert torch.equal(out[i], x[i, :, top : top + 28, left : left + 28])


def test_random_flip_mirrors_some_images():
    x = torch.rand(64, 3, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 10 < sum(flipped) < 54


def test_test_preprocessing_is_crop_then_scale_then_whiten():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    pre = Preprocess(28)
    assert torch.allclose(pre.test(x), whiten(center_crop(x, 28).float() / 255))
    assert not pre.augments and Preprocess(28, random_crop=True).augments
