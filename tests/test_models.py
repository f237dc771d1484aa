import pytest
import torch
from torch import nn

from rethink.models import MLP, SmallAlexNet, SmallInception, count_params
from rethink.models.alexnet import LocalResponseNorm

CIFAR = (3, 28, 28)


@pytest.mark.parametrize(
    "model, expected",
    [
        (lambda: SmallInception(CIFAR, 10), 1_649_402),
        (lambda: SmallInception(CIFAR, 10, batchnorm=False), 1_649_402),
        (lambda: SmallAlexNet(CIFAR, 10), 1_387_786),
        (lambda: MLP(CIFAR, 10, [512]), 1_209_866),
        (lambda: MLP(CIFAR, 10, [512, 512, 512]), 1_735_178),
    ],
    ids=["inception", "inception_nobn", "alexnet", "mlp_1x512", "mlp_3x512"],
)
def test_paper_parameter_counts(model, expected):
    m = model()
    assert count_params(m) == expected
    assert m(torch.randn(2, *CIFAR)).shape == (2, 10)


@pytest.mark.parametrize("cls", [SmallInception, SmallAlexNet, MLP])
def test_models_build_for_mnist_shape_and_other_class_counts(cls):
    m = cls((1, 28, 28), 7)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 7)


def test_inception_without_bn_has_no_batchnorm():
    m = SmallInception(CIFAR, 10, batchnorm=False)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert sum(isinstance(x, nn.BatchNorm2d) for x in SmallInception(CIFAR, 10).modules()) > 0


def test_cumsum_lrn_matches_torch_lrn():
    x = torch.randn(4, 64, 14, 14) * 3
    ref = nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)(x)  # TF alpha 0.001/9 times size 9
    assert torch.allclose(LocalResponseNorm()(x), ref, atol=1e-5, rtol=1e-5)


def test_dropout_is_added_only_when_asked():
    assert not any(isinstance(x, nn.Dropout) for x in MLP(CIFAR, 10, [512]).modules())
    assert any(isinstance(x, nn.Dropout) for x in MLP(CIFAR, 10, [512], dropout=0.5).modules())
