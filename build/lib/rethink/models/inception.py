"""Small Inception (Appendix A): 1,649,402 params at 3x28x28, with or without BatchNorm.

The paper's count holds when every conv carries exactly one per-channel vector: here a conv bias,
followed by ``BatchNorm2d(affine=False)`` (normalisation without a second shift or a scale).
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rethink.checks import dropout_rate


class ConvModule(nn.Sequential):
    """Conv(k, C, s): kxk conv with SAME padding -> BatchNorm (optional) -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, batchnorm: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding=k // 2)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout, affine=False))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InceptionModule(nn.Module):
    """Conv(1, c1) and Conv(3, c3) in parallel, concatenated over channels."""

    def __init__(self, cin: int, c1: int, c3: int, batchnorm: bool = True):
        super().__init__()
        self.branch1 = ConvModule(cin, c1, 1, batchnorm=batchnorm)
        self.branch3 = ConvModule(cin, c3, 3, batchnorm=batchnorm)
        self.out_channels = c1 + c3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class DownsampleModule(nn.Module):
    """Conv(3, c3, stride 2) and a 3x3/2 max-pool in parallel, concatenated."""

    def __init__(self, cin: int, c3: int, batchnorm: bool = True):
        super().__init__()
        self.conv = ConvModule(cin, c3, 3, stride=2, batchnorm=batchnorm)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.out_channels = c3 + cin

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class SmallInception(nn.Module):
    """Conv(3,96) -> 2 Inc -> Down(80) -> 4 Inc -> Down(96) -> 2 Inc -> global mean pool -> FC."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dropout = dropout_rate(dropout)
        bn = batchnorm
        blocks: list[nn.Module] = [ConvModule(in_shape[0], 96, 3, batchnorm=bn)]
        cin = 96
        plan = [("inc", 32, 32), ("inc", 32, 48), ("down", 80), ("inc", 112, 48), ("inc", 96, 64),
                ("inc", 80, 80), ("inc", 48, 96), ("down", 96), ("inc", 176, 160), ("inc", 176, 160)]
        for kind, *widths in plan:
            block = InceptionModule(cin, *widths, batchnorm=bn) if kind == "inc" else DownsampleModule(cin, *widths, batchnorm=bn)
            blocks.append(block)
            cin = block.out_channels
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.features(x).mean(dim=(2, 3))))
