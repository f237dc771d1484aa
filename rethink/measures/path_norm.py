"""The l2 path norm (Neyshabur et al. 2015; the measure of Neyshabur et al. 2017 and Jiang et al.
2019), computed as bneyshabur/generalization-bounds does: square the weights, forward ones, sum.

What the forward pass does, module by module, on the BatchNorm-folded float64 copy:
- every parameter is squared: weights, and biases too (a bias is the weight of an edge from an
  always-one unit, so its paths start there), unless `include_bias=False`, which zeroes them;
- ReLU: with squared (non-negative) weights and an all-ones input every pre-activation is >= 0,
  so ReLU passes everything and the output sums prod(w^2) over all input-output paths exactly;
- concatenation (Inception's branches) stacks units: a later layer sums the paths of all branches;
- max-pooling keeps, per output unit, the input unit with the largest path sum (not the sum over
  the window), as running the network does; zero padding adds no paths;
- LRN (SmallAlexNet's, or nn.LocalResponseNorm) is replaced by the identity: it divides a unit by an
  activation-dependent factor >= 1, which is not an edge weight; keeping it would make the value
  depend on how large the squared activations happen to be;
- parameter-free linear maps (Flatten, Inception's global mean pool, Dropout's eval identity) are
  applied as they are, not squared (as in the reference code): the mean pool enters once as 1/(H*W);
- BatchNorm is folded into the layer before it first (`rethink.measures.fold`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rethink.measures.fold import fold_batchnorm, replace_modules
from rethink.models.alexnet import LocalResponseNorm

LRN_KINDS = (LocalResponseNorm, nn.LocalResponseNorm)


def path_norm(model: nn.Module, in_shape: Sequence[int], include_bias: bool = True) -> float:
    """sqrt(sum_k f_{w^2}(1)[k]): the l2 path norm, f_{w^2} being the network with every parameter
    squared (BatchNorm folded, LRN skipped; module docstring) and 1 the all-ones input of `in_shape`."""
    net = fold_batchnorm(model).double().eval()
    replace_modules(net, LRN_KINDS)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") and not include_bias:
                p.zero_()
            else:
                p.square_()
    param = next(net.parameters())
    with torch.inference_mode():
        total = float(net(torch.ones(1, *in_shape, dtype=torch.float64, device=param.device)).sum())
    return math.sqrt(total)
