"""Small Inception (Appendix A): 1,649,402 params at 3x28x28, with or without BatchNorm.

The paper's count holds when every conv carries exactly one per-channel vector. With BatchNorm,
`conv_module` (a recorded config choice) says which:

- `tf_slim`: conv without bias -> BatchNorm with a learnable shift (beta) and no scale -> ReLU, as
  TF-slim's conv + batch_norm builds it (the paper's code was TensorFlow): each unit can move its
  ReLU threshold.
- `bias_bn_noaffine`: conv with bias -> ``BatchNorm2d(affine=False)`` -> ReLU, this project's first
  build (kept to reproduce old runs): the normalisation cancels the bias (its gradient is ~0), so
  no unit can move its threshold; same count, a different function.

Without BatchNorm every conv keeps its bias, whatever `conv_module` says. The class defaults to
`bias_bn_noaffine` (what code building it directly got before); conf/model/inception.yaml picks `tf_slim`.

BatchNorm's running statistics are another recorded choice the paper leaves unstated: `bn_momentum` and
`bn_eps` (PyTorch's 0.1 and 1e-5, the defaults; TF-slim's batch_norm has decay 0.999, i.e. momentum 0.001,
and epsilon 1e-3).
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rethink.checks import check, dropout_rate, in_range, is_number
from rethink.models.init import check_init, initialize

CONV_MODULES = ("tf_slim", "bias_bn_noaffine")
BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # PyTorch's BatchNorm defaults: what every run before the keys existed used


class BatchNormShift(nn.BatchNorm2d):
    """BatchNorm with a learnable per-channel shift and no scale (TF's `scale=False`), still one fused call."""

    def __init__(self, channels: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM) -> None:
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)
        # BatchNorm's forward passes `self.weight` (None here) and `self.bias` to F.batch_norm separately.
        self.bias = nn.Parameter(torch.zeros(channels))


class ConvModule(nn.Sequential):
    """Conv(k, C, s): kxk conv with SAME padding -> BatchNorm (optional, per `conv_module`; its running statistics'
    `bn_momentum` and `bn_eps`) -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, batchnorm: bool = True,
                 conv_module: str = "bias_bn_noaffine", bn_momentum: float = BN_MOMENTUM, bn_eps: float = BN_EPS):
        tf_slim = batchnorm and conv_module == "tf_slim"
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=not tf_slim)]
        if batchnorm:
            bn = dict(eps=bn_eps, momentum=bn_momentum)
            layers.append(BatchNormShift(cout, **bn) if tf_slim else nn.BatchNorm2d(cout, affine=False, **bn))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InceptionModule(nn.Module):
    """Conv(1, c1) and Conv(3, c3) in parallel, concatenated over channels."""

    def __init__(self, cin: int, c1: int, c3: int, **bn) -> None:
        super().__init__()
        self.branch1 = ConvModule(cin, c1, 1, **bn)
        self.branch3 = ConvModule(cin, c3, 3, **bn)
        self.out_channels = c1 + c3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class DownsampleModule(nn.Module):
    """Conv(3, c3, stride 2) and a 3x3/2 max-pool in parallel, concatenated."""

    def __init__(self, cin: int, c3: int, **bn) -> None:
        super().__init__()
        self.conv = ConvModule(cin, c3, 3, stride=2, **bn)
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
        conv_module: str = "bias_bn_noaffine",
        init: str = "torch",
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        dropout, init = dropout_rate(dropout), check_init(init)
        check([("model.net.conv_module", conv_module, conv_module in CONV_MODULES, " or ".join(CONV_MODULES)),
               ("model.net.bn_momentum", bn_momentum, in_range(bn_momentum, 0, 1, low_open=True), "a number in (0, 1]"),
               ("model.net.bn_eps", bn_eps, is_number(bn_eps) and bn_eps > 0, "a number > 0")])
        bn = dict(batchnorm=batchnorm, conv_module=conv_module, bn_momentum=bn_momentum, bn_eps=bn_eps)
        blocks: list[nn.Module] = [ConvModule(in_shape[0], 96, 3, **bn)]
        cin = 96
        plan = [("inc", 32, 32), ("inc", 32, 48), ("down", 80), ("inc", 112, 48), ("inc", 96, 64),
                ("inc", 80, 80), ("inc", 48, 96), ("down", 96), ("inc", 176, 160), ("inc", 176, 160)]
        for kind, *widths in plan:
            block = InceptionModule(cin, *widths, **bn) if kind == "inc" else DownsampleModule(cin, *widths, **bn)
            blocks.append(block)
            cin = block.out_channels
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)
        initialize(self, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.features(x).mean(dim=(2, 3))))
