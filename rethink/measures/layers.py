"""The "layers" the norm-based measures range over: every conv and linear weight of the
BatchNorm-folded model, each as a matrix [out, in * kh * kw] (Jiang et al. 2019's reshape).

Biases (those the folding creates or changes included) and BatchNorm shifts, which the folding moves
into the biases, are not layers: as in Neyshabur et al. 2017 and Jiang et al. 2019 the norms are of
the weight matrices only. Parallel branches (Inception's) are separate layers, in module order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rethink.measures.fold import FOLDABLE, fold_batchnorm


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv/linear submodules of `model`, by qualified name, in module (registration) order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, FOLDABLE)]


def as_matrix(weight: Tensor) -> Tensor:
    """A weight as a float64 CPU matrix: linear [out, in] as is, conv [out, in, kh, kw] reshaped to
    [out, in * kh * kw] (each row: one output channel's incoming kernel; not the operator norm of the
    convolution itself, which would need Sedghi et al. 2019's FFT)."""
    return weight.detach().to("cpu", torch.float64).reshape(weight.shape[0], -1)


def weight_matrices(model: nn.Module) -> dict[str, Tensor]:
    """Every layer's weight matrix (`as_matrix`) of the BatchNorm-folded copy of `model`, by name."""
    layers = weight_layers(fold_batchnorm(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no conv or linear layer")
    return {name: as_matrix(m.weight) for name, m in layers}


def paired_matrices(model: nn.Module, init_model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """(W_i, W0_i): each folded layer matrix of `model` with the same layer's of `init_model`."""
    trained, initial = weight_matrices(model), weight_matrices(init_model)
    if list(trained) != list(initial) or any(trained[k].shape != initial[k].shape for k in trained):
        raise ValueError("model and init_model differ in their conv/linear layers (names or shapes)")
    return [(trained[k], initial[k]) for k in trained]
