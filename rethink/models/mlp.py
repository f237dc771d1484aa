"""Multi-layer perceptrons: MLP 1x512 (1,209,866 params) and 3x512 (1,735,178) at 3x28x28."""

from collections.abc import Sequence
from math import prod

from torch import nn

from rethink.checks import dropout_rate
from rethink.models.init import check_init, initialize


def dense_stack(width: int, hidden_sizes: Sequence[int], num_classes: int, dropout: float = 0.0) -> list[nn.Module]:
    """[Linear -> ReLU] per hidden size, optional Dropout, then the Linear output layer."""
    dropout = dropout_rate(dropout)
    layers: list[nn.Module] = []
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers + [nn.Linear(width, num_classes)]


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU] * len(hidden_sizes) -> (Dropout) -> Linear."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden_sizes: Sequence[int] = (512,),
        dropout: float = 0.0,
        init: str = "torch",
    ) -> None:
        init = check_init(init)
        super().__init__(nn.Flatten(), *dense_stack(prod(in_shape), hidden_sizes, num_classes, dropout))
        initialize(self, init)
