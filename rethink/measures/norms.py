"""Norm-based measures of the weights (Neyshabur et al. 2017, Bartlett et al. 2017, Jiang et al.
2019), over the layers of `rethink.measures.layers`: conv/linear weight matrices of the
BatchNorm-folded model, conv kernels reshaped to [out, in * kh * kw], biases left out.

Products are computed as sums of logs in float64 and exponentiated last: the `log_*` variants
stay finite where a product would overflow (the product is then inf).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rethink.measures.layers import paired_matrices, weight_matrices


def exp_or_inf(log_value: float) -> float:
    """exp(log_value), inf where a float64 overflows."""
    try:
        return math.exp(log_value)
    except OverflowError:
        return math.inf


def frobenius_norms(model: nn.Module) -> Tensor:
    """||W_i||_F of each layer (float64)."""
    return torch.stack([torch.linalg.matrix_norm(w, "fro") for w in weight_matrices(model).values()])


def spectral_norm(w: Tensor) -> Tensor:
    """||W||_2, the largest singular value of a matrix: sqrt of the top eigenvalue of the smaller
    Gram matrix (W W^T or W^T W), in float64 as accurate as the SVD and ~50x faster on a 512 x 2352."""
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.linalg.eigvalsh(gram)[-1].clamp(min=0).sqrt()


def spectral_norms(model: nn.Module) -> Tensor:
    """||W_i||_2 of each layer's matrix (float64)."""
    return torch.stack([spectral_norm(w) for w in weight_matrices(model).values()])


def frobenius_sum(model: nn.Module) -> float:
    """sum_i ||W_i||_F: the sum of the layers' Frobenius norms."""
    return float(frobenius_norms(model).sum())


def log_frobenius_product(model: nn.Module) -> float:
    """sum_i log ||W_i||_F: the log of the product of the layers' Frobenius norms."""
    return float(frobenius_norms(model).log().sum())


def frobenius_product(model: nn.Module) -> float:
    """prod_i ||W_i||_F (Neyshabur et al. 2015's Frobenius capacity, without margin); inf on overflow."""
    return exp_or_inf(log_frobenius_product(model))


def log_spectral_product(model: nn.Module) -> float:
    """sum_i log ||W_i||_2: the log of the product of the layers' spectral norms."""
    return float(spectral_norms(model).log().sum())


def spectral_product(model: nn.Module) -> float:
    """prod_i ||W_i||_2, conv kernels as [out, in*kh*kw] matrices as Jiang et al. 2019 do (not the
    convolution's operator norm); inf on overflow."""
    return exp_or_inf(log_spectral_product(model))


def distance_from_init(model: nn.Module, init_model: nn.Module) -> float:
    """sqrt(sum_i ||W_i - W0_i||_F^2): the Frobenius distance of all layer weights (both models
    BatchNorm-folded, each with its own running statistics) from those at initialization."""
    total = sum(float(((w - w0) ** 2).sum()) for w, w0 in paired_matrices(model, init_model))
    return math.sqrt(total)


def l21_rows(w: Tensor) -> Tensor:
    """||W^T||_{2,1} = sum over rows (output units) of the row's l2 norm, the (2,1) norm Bartlett et
    al. 2017 apply to A_i^T - M_i^T."""
    return w.norm(dim=1).sum()


def log_spectral_complexity(model: nn.Module, init_model: nn.Module) -> float:
    """log R of Bartlett et al. 2017's spectral complexity, with reference matrices M_i = the layer's
    weights at initialization (as Neyshabur et al.'s code) and Lipschitz constants rho_i = 1:
        R = prod_i ||W_i||_2 * (sum_i ||(W_i - W0_i)^T||_{2,1}^{2/3} / ||W_i||_2^{2/3})^{3/2}."""
    pairs = paired_matrices(model, init_model)
    spectral = torch.stack([spectral_norm(w) for w, _ in pairs])
    l21 = torch.stack([l21_rows(w - w0) for w, w0 in pairs])
    ratio = ((l21 / spectral) ** (2 / 3)).sum()
    return float(spectral.log().sum() + 1.5 * ratio.log())


def spectral_complexity(model: nn.Module, init_model: nn.Module) -> float:
    """R of `log_spectral_complexity` (Bartlett et al. 2017, M_i = init); inf on overflow."""
    return exp_or_inf(log_spectral_complexity(model, init_model))
