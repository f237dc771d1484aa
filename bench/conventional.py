"""The yardstick: the conventional pipeline most public reproductions use.

torchvision ImageFolder + per-image PIL transforms + DataLoader(num_workers=1), and a separate full
pass over the training set (eval mode) each epoch to measure training accuracy.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms


class PerImageStandardize:
    """(x - mean) / max(std, 1/sqrt(N)) on one image tensor (what tf.image.per_image_standardization does)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()) / x.std(correction=0).clamp_min(1 / math.sqrt(x.numel()))


def loaders(root: str, n: int, n_test: int, batch_size: int = 128, workers: int = 1) -> tuple[DataLoader, ...]:
    """Shuffled training loader, and in-order loaders to evaluate the same training images and n_test test images."""
    tf = transforms.Compose([transforms.CenterCrop(28), transforms.ToTensor(), PerImageStandardize()])
    subsets = []
    for split, size in (("train", n), ("test", n_test)):
        ds = datasets.ImageFolder(f"{root}/{split}", transform=tf)
        subsets.append(Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:size].tolist()))
    kw = {"batch_size": batch_size, "num_workers": workers, "persistent_workers": workers > 0}
    return (DataLoader(subsets[0], shuffle=True, **kw), DataLoader(subsets[0], shuffle=False, **kw),
            DataLoader(subsets[1], shuffle=False, **kw))


def epoch_images_per_s(model: nn.Module, root: str, n: int, n_test: int, device: torch.device, epochs: int = 1,
                       workers: int = 1, lr: float = 0.01) -> float:
    """Training images/s of full epochs: an SGD pass plus evaluation of the training and test images
    (the same work a rethink epoch does), as conventional code does it."""
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    train, train_eval, test_eval = loaders(root, n, n_test, workers=workers)
    total = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step logging sync
        model.eval()
        correct = 0
        with torch.no_grad():
            for loader in (train_eval, test_eval):
                for x, y in loader:
                    correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        total += time.perf_counter() - t0
    return n * epochs / total
