"""Multi-layer perceptrons: MLP 1x512 (1,209,866 params) and 3x512 (1,735,178) at 3x28x28."""

from collections.abc import Sequence
from math import prod

from torch import Tensor, nn


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU] * len(hidden_sizes) -> (Dropout) -> Linear."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden_sizes: Sequence[int] = (512,),
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(in_shape)
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - nn.Sequential's
        return super().forward(x)
