"""Generalization measures of a trained network (issue 24): pure functions of (model, initial model,
training tensors) that depend on torch and `rethink.models` only, and `compute_all`, every measure
by name.

Modules: `fold` (BatchNorm folding), `layers` (which weights count as layers), `norms`
(Frobenius/spectral norms, distance from init, Bartlett's spectral complexity), `path_norm`,
`margins`, `sharpness` (PAC-Bayes flatness, worst-case sharpness), `evaluate` (batched eval-mode
helpers). Each function's docstring gives its definition and reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from torch import Tensor, nn

from rethink.measures.margins import margin_p10, margin_p10_normalized, normalize_margin
from rethink.measures.norms import (
    distance_from_init,
    exp_or_inf,
    frobenius_product,
    frobenius_sum,
    log_frobenius_product,
    log_spectral_complexity,
    log_spectral_product,
    spectral_complexity,
    spectral_product,
)
from rethink.measures.path_norm import path_norm
from rethink.measures.sharpness import pacbayes_sigma, worst_case_sharpness

__all__ = ["MEASURES", "compute_all", "distance_from_init", "frobenius_product", "frobenius_sum",
           "log_frobenius_product", "log_spectral_complexity", "log_spectral_product", "margin_p10",
           "margin_p10_normalized", "pacbayes_sigma", "path_norm", "spectral_complexity",
           "spectral_product", "worst_case_sharpness"]

MEASURES = ("frobenius_sum", "log_frobenius_product", "frobenius_product", "log_spectral_product",
            "spectral_product", "distance_from_init", "path_norm", "margin_p10",
            "log_spectral_complexity", "spectral_complexity", "margin_p10_normalized",
            "pacbayes_sigma", "worst_case_sharpness")


def compute_all(model: nn.Module, init_model: nn.Module, x: Tensor, y: Tensor, *, seed: int = 0,
                sharpness_samples: int | None = 256, batch_size: int = 64,
                timings: dict[str, float] | None = None) -> dict[str, float]:
    """Every measure of MEASURES, keyed by name, with each function's defaults: margins over all of
    (x, y), the two perturbation measures over `sharpness_samples` of them drawn by `seed`
    (pacbayes_sigma: threshold 0.1, 2 draws, 7 bisections over [1e-4, 1]; worst_case_sharpness:
    rho 1e-3, eps 1e-3, 3 steps). bench/measures.py: 1.3 % of a CPU-scale MLP 1x512 run, 4.1 % of
    an AlexNet one, 7.8 % of an Inception one (18 of its 20 s are the perturbation measures, which
    scale with sharpness_samples: 128 should about halve it).

    `x` [N, C, H, W] are preprocessed training images, `y` their int64 labels; `init_model` is the
    same architecture at initialization. A product computed from its log (`frobenius_product`,
    `spectral_product`, `spectral_complexity`) is inf where float64 overflows, the log stays finite;
    `margin_p10_normalized` is computed from the log. If `timings` is a dict, the seconds each
    entry took are stored in it under the same keys.
    """
    in_shape = tuple(x.shape[1:])
    steps: dict[str, Callable[[dict[str, float]], float]] = {
        "frobenius_sum": lambda _: frobenius_sum(model),
        "log_frobenius_product": lambda _: log_frobenius_product(model),
        "frobenius_product": lambda out: exp_or_inf(out["log_frobenius_product"]),
        "log_spectral_product": lambda _: log_spectral_product(model),
        "spectral_product": lambda out: exp_or_inf(out["log_spectral_product"]),
        "distance_from_init": lambda _: distance_from_init(model, init_model),
        "path_norm": lambda _: path_norm(model, in_shape),
        "margin_p10": lambda _: margin_p10(model, x, y, batch_size),
        "log_spectral_complexity": lambda _: log_spectral_complexity(model, init_model),
        "spectral_complexity": lambda out: exp_or_inf(out["log_spectral_complexity"]),
        "margin_p10_normalized": lambda out: normalize_margin(out["margin_p10"], out["log_spectral_complexity"]),
        "pacbayes_sigma": lambda _: pacbayes_sigma(model, x, y, samples=sharpness_samples, seed=seed,
                                                   batch_size=batch_size),
        "worst_case_sharpness": lambda _: worst_case_sharpness(model, x, y, samples=sharpness_samples,
                                                               seed=seed, batch_size=batch_size),
    }
    assert tuple(steps) == MEASURES
    out: dict[str, float] = {}
    for name, step in steps.items():
        start = time.perf_counter()
        out[name] = float(step(out))
        if timings is not None:
            timings[name] = time.perf_counter() - start
    return out
