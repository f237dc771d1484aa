"""Feature maps for the kernel rows of Table 3: random conv-net features (CIFAR-10) and Gabor
energy features (MNIST), both computed in batches on CPU or GPU."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Array = np.ndarray | torch.Tensor


# --- random conv-net features for CIFAR-10 (Table 3, "random conv-net" row) ---


def standardize_images(images: Array) -> torch.Tensor:
    """x / 255, then per-image zero mean and unit std over all pixels and channels."""
    x = torch.as_tensor(images).to(torch.float32) / 255.0
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(1).view(-1, *([1] * (x.dim() - 1)))
    std = flat.std(1, correction=0).clamp(min=1e-6).view(-1, *([1] * (x.dim() - 1)))
    return (x - mean) / std


def random_filters(
    num_filters: int,
    kernel_size: int,
    seed: int,
    source: torch.Tensor | None = None,
    channels: int = 3,
) -> torch.Tensor:
    """Unit-norm, zero-mean filters (F, C, k, k): Gaussian, or random patches of `source` images if given."""
    gen = torch.Generator().manual_seed(seed)
    if source is None:
        w = torch.randn((num_filters, channels, kernel_size, kernel_size), generator=gen)
    else:
        n, c, h, wd = source.shape
        idx = torch.randint(0, n, (num_filters,), generator=gen)
        rows = torch.randint(0, h - kernel_size + 1, (num_filters,), generator=gen)
        cols = torch.randint(0, wd - kernel_size + 1, (num_filters,), generator=gen)
        w = torch.stack(
            [
                source[i, :, r : r + kernel_size, q : q + kernel_size]
                for i, r, q in zip(idx.tolist(), rows.tolist(), cols.tolist(), strict=True)
            ]
        )
    w = w - w.mean(dim=(1, 2, 3), keepdim=True)
    return w / w.flatten(1).norm(dim=1).clamp(min=1e-6).view(-1, 1, 1, 1)


def random_conv_features(
    images: Array,
    num_filters: int = 1024,
    seed: int = 0,
    kernel_size: int = 6,
    pool: int = 2,
    filters: torch.Tensor | None = None,
    batch: int | None = None,
    device: str | torch.device = "cpu",
    max_batch_bytes: int | None = None,
) -> torch.Tensor:
    """Features of an untrained one-layer conv net: conv(k x k filters) -> ReLU -> average pool to pool x pool.

    An approximation of the paper's "random conv-net with 32,000 random filters" (its exact
    architecture is not given): images are standardized per image, convolved (stride 1, no
    padding) with `filters` (default: Gaussian, zero-mean, unit-norm), rectified and
    average-pooled over a pool x pool grid of quadrants, giving num_filters * pool^2 features.
    Computed `batch` images at a time (default: as many as keep the conv output, batch * F *
    (H - k + 1)^2 floats, under max_batch_bytes: 8 MiB on CPU, where small cache-resident
    batches ran 3-7x faster here than 1 GiB ones, 2 GiB on CUDA); the result lives on `device`.
    """
    device = torch.device(device)
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if filters is None:
        filters = random_filters(num_filters, kernel_size, seed)
    filters = filters.to(device=device, dtype=torch.float32)
    if max_batch_bytes is None:
        max_batch_bytes = 2 << 30 if device.type == "cuda" else 8 << 20
    if batch is None:
        positions = (images.shape[2] - filters.shape[2] + 1) * (
            images.shape[3] - filters.shape[3] + 1
        )
        batch = max(1, max_batch_bytes // (4 * filters.shape[0] * positions))
    out = torch.empty(
        (images.shape[0], filters.shape[0] * pool * pool), dtype=torch.float32, device=device
    )
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            x = standardize_images(images[start : start + batch].to(device))
            h = F.relu(F.conv2d(x, filters))
            out[start : start + batch] = F.adaptive_avg_pool2d(h, pool).flatten(1)
    return out


def standardize_features(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every feature to zero mean, unit variance using train statistics (so no feature dominates ||.||)."""
    mean = train.mean(0)
    std = train.std(0, correction=0).clamp(min=1e-6)
    return [(t - mean) / std for t in (train, *others)]


def gabor_filters(kernel_size: int = 11, orientations: int = 8, wavelengths: tuple[float, ...] = (4.0, 8.0)) -> torch.Tensor:
    """A Gabor filter bank, even (cosine) and odd (sine) phase for each orientation and wavelength.

    Shape (2 * orientations * len(wavelengths), 1, k, k), each filter zero-mean and unit-norm; the
    Gaussian envelope's width is half the wavelength. The paper's "Gabor filters" for MNIST are not
    specified further; this is a standard bank.
    """
    r = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    bank = []
    for lam in wavelengths:
        for i in range(orientations):
            theta = torch.tensor(torch.pi * i / orientations, dtype=torch.float64)
            u = x * torch.cos(theta) + y * torch.sin(theta)
            envelope = torch.exp(-(x**2 + y**2) / (2 * (lam / 2) ** 2))
            for phase in (torch.cos, torch.sin):
                f = envelope * phase(2 * torch.pi * u / lam)
                f = f - f.mean()
                bank.append(f / f.norm())
    return torch.stack(bank).unsqueeze(1).float()


def gabor_features(images: Array, filters: torch.Tensor | None = None, pool: int = 4, batch: int = 2048) -> torch.Tensor:
    """Gabor energy features of grey images: x/255, filter, magnitude of each even/odd pair, average-pool to pool x pool.

    Gives (filters / 2) * pool^2 features per image (8 orientations x 2 wavelengths x 16 cells = 256 by default).
    """
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got {tuple(images.shape)}")
    if filters is None:
        filters = gabor_filters()
    pad = filters.shape[-1] // 2
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            x = images[start : start + batch].float() / 255.0
            h = F.conv2d(x, filters, padding=pad)
            energy = (h[:, 0::2] ** 2 + h[:, 1::2] ** 2).sqrt()
            out.append(F.adaptive_avg_pool2d(energy, pool).flatten(1))
    return torch.cat(out)
