"""Weight initialization, a recorded choice (`model.init`): the paper's TensorFlow defaults or PyTorch's.

`glorot`: TF's defaults, Glorot-uniform conv/linear kernels and zero biases (the likely original).
`torch`: the layers' own PyTorch initialization, left untouched (the behaviour before the key existed).
"""

from __future__ import annotations

from torch import nn

from rethink.checks import check

INITS = ("glorot", "torch")


def check_init(init: str) -> str:
    """`model.init` as given, or the one-line error (a typo must not fall back to a default)."""
    check([("model.init", init, init in INITS, " or ".join(INITS))])
    return init


def initialize(model: nn.Module, init: str) -> nn.Module:
    """Re-initialize `model`'s conv/linear layers per `init` (in place); `torch` draws nothing."""
    if check_init(init) == "glorot":
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)  # fan_in/out = channels x kernel area, as TF's glorot_uniform
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model
