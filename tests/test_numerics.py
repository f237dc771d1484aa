"""The fast training path computes what a straightforward loop computes (same seed, CPU, float32)."""

import math

import pytest
import torch
import torch.nn.functional as F

from rethink.corrupt import Corruption
from rethink.data.memory import ImageData
from rethink.models import MLP, SmallAlexNet
from rethink.training.fit import fit
from rethink.training.optim import param_groups
from rethink.training.preprocess import center_crop, whiten
from rethink.training.settings import TrainSettings


def tiny_problem() -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (300, 3, 32, 32), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (300,), generator=g),
                     torch.randint(0, 256, (100, 3, 32, 32), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (100,), generator=g), [str(i) for i in range(10)])


def reference_loop(model, data, s: TrainSettings) -> list[tuple[float, float, float]]:
    """Textbook SGD: preprocess every batch as it is drawn, read the loss every step."""
    gen = torch.Generator().manual_seed(s.seed + 1)
    opt = torch.optim.SGD(param_groups(model, s.weight_decay, s.weight_decay_on), lr=s.lr, momentum=s.momentum)
    prep = lambda x: whiten(center_crop(x, s.crop_size).float() / 255)  # noqa: E731
    n, step, out = len(data.train_y), 0, []
    period = s.lr_decay_period or math.ceil(n / s.batch_size)
    for _ in range(s.max_epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, s.batch_size):
            for g in opt.param_groups:
                g["lr"] = s.lr * s.lr_decay ** (step // period)
            idx = perm[i : i + s.batch_size]
            loss = F.cross_entropy(model(prep(data.train_x[idx])), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            step += 1
        model.eval()
        with torch.no_grad():
            train_acc = (model(prep(data.train_x)).argmax(1) == data.train_y).float().mean().item()
            test_acc = (model(prep(data.test_x)).argmax(1) == data.test_y).float().mean().item()
        out.append((total / n, train_acc, test_acc))
    return out


@pytest.mark.parametrize("model_fn", [lambda: MLP((3, 28, 28), 10, [64]), lambda: SmallAlexNet((3, 28, 28), 10)],
                         ids=["mlp", "alexnet"])
def test_fast_path_matches_reference_loop(model_fn):
    data = Corruption(kind="labels", level=0.5, seed=0).apply(tiny_problem())
    # Contiguous layout here: channels_last (the default for conv nets) changes the convolutions'
    # summation order, so it is compared separately below, with a tolerance.
    s = TrainSettings(lr=0.01, max_epochs=4, stop_at_target=False, device="cpu", crop_size=28, lr_decay_period=2,
                      weight_decay=5e-4, channels_last=False)
    torch.manual_seed(0)
    ref = reference_loop(model_fn(), data, s)
    torch.manual_seed(0)
    fast = fit(model_fn(), data, s).history
    for (loss, train_acc, test_acc), h in zip(ref, fast, strict=True):
        assert h["train/loss"] == pytest.approx(loss, rel=1e-4, abs=1e-5)
        assert h["train/acc"] == pytest.approx(train_acc, abs=1e-6)
        assert h["test/acc"] == pytest.approx(test_acc, abs=1e-6)
    # the logged lr is the one of the epoch's last step: 3 steps per epoch, decay every 2 steps
    assert [h["lr"] for h in fast] == pytest.approx([0.01 * 0.95 ** ((3 * e + 2) // 2) for e in range(4)])


def test_channels_last_follows_the_same_trajectory():
    data = Corruption(kind="labels", level=0.5, seed=0).apply(tiny_problem())
    runs = []
    for layout in (False, True):
        torch.manual_seed(0)
        s = TrainSettings(lr=0.01, max_epochs=3, stop_at_target=False, device="cpu", crop_size=28, channels_last=layout)
        runs.append([h["train/loss"] for h in fit(SmallAlexNet((3, 28, 28), 10), data, s).history])
    assert runs[1] == pytest.approx(runs[0], rel=1e-3)
