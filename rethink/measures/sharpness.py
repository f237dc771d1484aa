"""Perturbation measures: PAC-Bayes flatness (Jiang et al. 2019's sigma search) and worst-case
sharpness in a magnitude-relative box (Keskar et al. 2017; Andriushchenko et al. 2023's adaptive
l_inf sharpness), both on a seeded training-set sample.

Both perturb every parameter (weights and biases) of a BatchNorm-folded copy of the model in eval
mode, so the model passed in is never written to (its weights and modes stay as they were), and
draw their randomness from a local ``torch.Generator`` seeded by `seed`: the caller's global RNG
states are untouched, and the same inputs and seed give the same float on the same CPU setup.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rethink.measures.evaluate import batches, correct_count, device_of, subsample
from rethink.measures.fold import fold_batchnorm


def perturbable_copy(model: nn.Module) -> tuple[nn.Module, list[nn.Parameter], list[Tensor]]:
    """A BatchNorm-folded eval-mode copy of `model`, its parameters, and a copy of their values."""
    net = fold_batchnorm(model).eval()
    params = list(net.parameters())
    return net, params, [p.detach().clone() for p in params]


@torch.no_grad()
def set_weights(params: list[nn.Parameter], base: list[Tensor], delta: list[Tensor] | None = None,
                scale: float = 1.0) -> None:
    """params := base (+ scale * delta)."""
    for i, p in enumerate(params):
        p.copy_(base[i])
        if delta is not None:
            p.add_(delta[i], alpha=scale)


def pacbayes_sigma(model: nn.Module, x: Tensor, y: Tensor, *, threshold: float = 0.1, draws: int = 2,
                   iterations: int = 7, sigma_min: float = 1e-4, sigma_max: float = 1.0,
                   samples: int | None = 256, seed: int = 0, batch_size: int = 64) -> float:
    """PAC-Bayes flatness (Jiang et al. 2019, sec. "pacbayes.flatness"): the largest sigma such that
    perturbing every parameter by sigma * N(0, I) lowers the training accuracy on average by at most
    `threshold` (absolute): acc(w) - mean_k acc(w + sigma * eps_k) <= threshold.

    Bisection on log(sigma) over [sigma_min, sigma_max] for a fixed number of `iterations`; returns
    the last sigma that passed (sigma_min if none did, so the result lies in [sigma_min, sigma_max)).
    The `draws` noise vectors eps_k are drawn once (seeded) and reused at every sigma, so the
    accuracy drop is a fixed function of sigma and the result is monotone in `threshold`; each test
    stops as soon as its outcome is certain (`drop_within`). Accuracy is measured on `samples`
    training examples drawn by `seed` (all when None or more than given).
    Jiang et al. report 1 / sigma^2 and search a linear scale for a drop of 0.1 +- 0.01; this returns
    sigma itself (larger = flatter) and bisects on a log scale, whose steps are relative.
    """
    if not 0 < sigma_min < sigma_max or draws < 1 or iterations < 1:
        raise ValueError("pacbayes_sigma needs 0 < sigma_min < sigma_max, draws >= 1, iterations >= 1")
    xs, ys = subsample(x, y, samples, seed)
    net, params, base = perturbable_copy(model)
    gen = torch.Generator().manual_seed(seed)
    noise = [[torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
             for _ in range(draws)]
    base_correct = correct_count(net, xs, ys, batch_size)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if drop_within(net, params, base, noise, math.exp(mid), xs, ys, base_correct, threshold, batch_size):
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


def drop_within(net: nn.Module, params: list[nn.Parameter], base: list[Tensor], noise: list[list[Tensor]],
                sigma: float, x: Tensor, y: Tensor, base_correct: int, threshold: float,
                batch_size: int) -> bool:
    """Whether acc(w) - mean_k acc(w + sigma * eps_k) <= threshold on (x, y), i.e. whether the
    correct predictions lost over the draws, K * base_correct - correct, are <= threshold * K * N.
    Evaluated batch by batch, it stops as soon as the answer is certain (enough correct already, or
    too few even if every remaining example were right): the same answer as a full evaluation."""
    total = len(noise) * len(x)
    allowed, target = threshold * total, len(noise) * base_correct
    correct = seen = 0
    device = device_of(net)
    for eps in noise:
        set_weights(params, base, eps, sigma)
        with torch.inference_mode():
            for xb, yb in batches(x, y, batch_size):
                correct += int((net(xb.to(device)).argmax(dim=1) == yb.to(device)).sum())
                seen += len(xb)
                if target - correct <= allowed:
                    return True
                if target - correct - (total - seen) > allowed:
                    return False
    return target - correct <= allowed


def mean_loss(net: nn.Module, params: list[nn.Parameter], x: Tensor, y: Tensor, batch_size: int,
              grad: bool) -> float:
    """Mean cross-entropy of `net` on (x, y), batch by batch; with `grad`, its gradient is left in
    each parameter's .grad (accumulated over the batches, so it is the gradient of the mean)."""
    device = device_of(net)
    for p in params:
        p.grad = None
    total = 0.0
    with torch.inference_mode(False), torch.set_grad_enabled(grad):
        for xb, yb in batches(x, y, batch_size):
            loss = F.cross_entropy(net(xb.to(device)).float(), yb.to(device), reduction="sum") / len(x)
            if grad:
                loss.backward()
            total += loss.detach().item()
    return total


def worst_case_sharpness(model: nn.Module, x: Tensor, y: Tensor, *, rho: float = 1e-3, eps: float = 1e-3,
                         steps: int = 3, samples: int | None = 256, seed: int = 0,
                         batch_size: int = 64) -> float:
    """max_k L(w + d_k) - L(w): the largest increase of the mean training cross-entropy L found by
    `steps` steps of sign-gradient (l_inf steepest) ascent in the box |d_i| <= rho * (|w_i| + eps),
    each step d := clip(d + (2 / steps) * r * sign(grad L(w + d)), -r, r), r = rho * (|w| + eps),
    from d_0 = 0; the maximum includes d_0, so the value is >= 0.

    Keskar et al. 2017's sharpness box (there eps = 1, and L-BFGS-B instead of sign steps) made
    relative to each weight's magnitude as in Jiang et al. 2019's magnitude-aware measures: eps =
    1e-3 only keeps zero weights movable. Not divided by 1 + L(w) (Keskar's normalisation). L is
    measured on `samples` training examples drawn by `seed` (all when None or more than given).
    """
    if rho <= 0 or eps < 0 or steps < 1:
        raise ValueError("worst_case_sharpness needs rho > 0, eps >= 0, steps >= 1")
    xs, ys = subsample(x, y, samples, seed)
    if xs.is_inference():  # made under inference_mode: an ordinary copy, which autograd may save
        with torch.inference_mode(False):
            xs = xs.clone()
    net, params, base = perturbable_copy(model)
    for p in params:
        p.requires_grad_(True)
    radius = [rho * (b.abs() + eps) for b in base]
    delta = [torch.zeros_like(b) for b in base]
    start = worst = mean_loss(net, params, xs, ys, batch_size, grad=True)
    for k in range(steps):
        with torch.no_grad():
            for p, d, r in zip(params, delta, radius, strict=True):
                if p.grad is not None:
                    d.add_(p.grad.sign() * r, alpha=2 / steps)
                    torch.clamp(d, -r, r, out=d)
        set_weights(params, base, delta)
        worst = max(worst, mean_loss(net, params, xs, ys, batch_size, grad=k < steps - 1))
    return worst - start
