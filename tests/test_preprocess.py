import math

import numpy as np
import torch

from rethink.training.preprocess import (
    Preprocess,
    center_crop,
    random_crop,
    random_flip,
    random_rotate,
    whiten,
)


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
    assert not pre.augments and Preprocess(28, random_crop=True).augments and Preprocess(28, rotate=25).augments


def test_random_rotation_turns_each_image_by_its_own_angle_within_the_range():
    # One bright pixel on the horizontal axis, 10 pixels right of the centre of a 33x33 image: after a rotation by
    # a it lands at angle a about the centre (image y points down, so a positive angle turns it clockwise).
    x = torch.zeros(256, 1, 33, 33)
    x[:, 0, 16, 26] = 1.0
    out = random_rotate(x, 25.0, torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    mass = out[:, 0].sum(dim=(1, 2))
    cy, cx = (out[:, 0] * ys).sum(dim=(1, 2)) / mass - 16, (out[:, 0] * xs).sum(dim=(1, 2)) / mass - 16
    angles = torch.rad2deg(torch.atan2(cy, cx))
    radius = torch.sqrt(cx**2 + cy**2)
    assert angles.abs().max() <= 25.5 and angles.min() < -20 and angles.max() > 20  # spread over the range
    assert angles.std() > 10 and torch.allclose(radius, torch.full_like(radius, 10.0), atol=0.3)
    assert torch.allclose(random_rotate(x[:2], 0.0), x[:2], atol=1e-6)  # 0 degrees: unchanged
    # In the training path: rotation before the crop, draws from the run's generator, test images untouched.
    img = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    pre = Preprocess(28, flip=True, rotate=25)
    a, b = pre.train(img, torch.Generator().manual_seed(1)), pre.train(img, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, Preprocess(28, flip=True).train(img, torch.Generator().manual_seed(1)))
    assert torch.equal(pre.test(img), Preprocess(28).test(img)) and math.isclose(float(a.flatten(1).std(1, correction=0).mean()), 1.0, rel_tol=1e-3)
