"""BatchNorm folding: a copy of the model computing its eval-mode function with every BatchNorm
merged into the conv/linear layer before it, so the weights alone carry the scale the measures see.

As Neyshabur et al.'s `reparam` (bneyshabur/generalization-bounds, measures.py), which Jiang et al.
2019 reuse. An eval-mode BatchNorm after a layer z = W u + b computes
    gamma * (z - running_mean) / sqrt(running_var + eps) + beta,
so with s = gamma / sqrt(running_var + eps) (gamma = 1 without a learnable scale) the folded layer has
    W' = s * W (row / output channel c scaled by s_c),   b' = s * (b - running_mean) + beta,
with b = 0 for a layer without bias (the TF-slim conv of rethink's Inception, which gains a bias)
and beta = 0 for a BatchNorm without shift (``BatchNorm2d(affine=False)``); the BatchNorm becomes
an ``nn.Identity``. Unlike `reparam`, which folds into whichever layer came before in module order,
only a BatchNorm that directly follows a conv/linear layer inside an ``nn.Sequential`` (how every
rethink model places them) is folded, and any other BatchNorm is an error rather than a silent
miscalculation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def fold_into(layer: nn.Module, bn: _BatchNorm) -> None:
    """Merge eval-mode `bn` into `layer` (conv/linear) in place: `layer` alone then computes both."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it keeps no running statistics (track_running_stats=False)")
    if bn.num_features != layer.weight.shape[0]:
        raise ValueError(f"cannot fold {bn} into {layer}: {bn.num_features} features vs {layer.weight.shape[0]} outputs")
    weight = layer.weight
    scale = (bn.running_var.to(weight.dtype) + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.to(weight.dtype)
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    new_bias = scale * (bias - bn.running_mean.to(weight.dtype))
    if bn.bias is not None:
        new_bias = new_bias + bn.bias.to(weight.dtype)
    weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
    else:
        layer.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every BatchNorm folded into the conv/linear layer before it (see
    the module docstring); a plain copy when there is none. Raises if a BatchNorm cannot be folded."""
    folded = copy.deepcopy(model)
    for parent in list(folded.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (_, prev), (name, child) in zip(children, children[1:], strict=False):
            if isinstance(child, _BatchNorm) and isinstance(prev, FOLDABLE):
                fold_into(prev, child)
                setattr(parent, name, nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, _BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm not directly after a conv/linear layer in an nn.Sequential: {left}")
    return folded


def replace_modules(model: nn.Module, kinds: tuple[type, ...], make: type[nn.Module] = nn.Identity) -> int:
    """Replace, in place, every submodule of `model` that is an instance of `kinds` by `make()`;
    returns how many were replaced."""
    targets: list[str] = []
    for name, m in model.named_modules():
        if name and isinstance(m, kinds) and not any(name.startswith(t + ".") for t in targets):
            targets.append(name)  # an outermost match: whatever it contains goes with it
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, make())
    return len(targets)
