import pytest
import torch
from torch import nn

from rethink.errors import RethinkError
from rethink.models import MLP, SmallAlexNet, SmallInception, count_params
from rethink.models.alexnet import LocalResponseNorm
from rethink.models.inception import BatchNormShift

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


def test_inception_conv_module_is_a_choice_with_the_same_count():
    tf, old = SmallInception(CIFAR, 10, conv_module="tf_slim"), SmallInception(CIFAR, 10, conv_module="bias_bn_noaffine")
    assert count_params(tf) == count_params(old) == 1_649_402
    assert all(c.bias is None for c in tf.modules() if isinstance(c, nn.Conv2d))
    assert all(c.bias is not None for c in old.modules() if isinstance(c, nn.Conv2d))
    shifts = [m.bias for m in tf.modules() if isinstance(m, BatchNormShift)]
    assert len(shifts) == sum(isinstance(m, nn.Conv2d) for m in tf.modules())
    assert all(s.ndim == 1 for s in shifts)  # 1-D: `weight_decay_on: weights` (kernels, ndim > 1) leaves them alone
    nobn = SmallInception(CIFAR, 10, batchnorm=False, conv_module="tf_slim")  # w/o BN every conv keeps its bias
    assert all(c.bias is not None for c in nobn.modules() if isinstance(c, nn.Conv2d))


def test_bad_conv_module_or_init_is_refused():
    with pytest.raises(RethinkError, match="model.net.conv_module"):
        SmallInception((3, 8, 8), 10, conv_module="tf")
    with pytest.raises(RethinkError, match="model.init"):
        MLP((3, 8, 8), 10, [8], init="xavier")


def test_tf_slim_shift_learns_where_the_cancelled_bias_cannot():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 10, (16,))
    grads = {}
    for module in ("tf_slim", "bias_bn_noaffine"):
        m = SmallInception((3, 12, 12), 10, conv_module=module)
        nn.functional.cross_entropy(m(x), y).backward()
        first = m.features[0]
        grads[module] = (first[1].bias if module == "tf_slim" else first[0].bias).grad.abs().max().item()
    assert grads["tf_slim"] > 1e-4
    assert grads["bias_bn_noaffine"] < 1e-6 * grads["tf_slim"] + 1e-7  # the BN subtracts the bias back out


def test_a_few_sgd_steps_lower_the_tf_slim_inception_loss():
    torch.manual_seed(0)
    m = SmallInception((3, 12, 12), 10, conv_module="tf_slim", init="glorot")
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("cls", [MLP, SmallAlexNet, SmallInception])
def test_glorot_init_is_tf_default(cls):
    torch.manual_seed(0)
    m = cls(CIFAR, 10, init="glorot")
    for layer in m.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            w = layer.weight
            fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
            limit = (6 / (fan_in + fan_out)) ** 0.5
            assert w.abs().max() <= limit and w.abs().max() > 0.9 * limit
            assert layer.bias is None or not layer.bias.any()


@pytest.mark.parametrize("cls", [MLP, SmallAlexNet, SmallInception])
def test_torch_init_leaves_the_model_as_before(cls):
    """`init=torch` draws nothing more: the same seed gives the same weights as the plain constructor."""
    torch.manual_seed(0)
    a = cls(CIFAR, 10)
    torch.manual_seed(0)
    b = cls(CIFAR, 10, init="torch")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    first = next(x for x in a.modules() if isinstance(x, nn.Linear | nn.Conv2d))
    assert first.bias is not None and first.bias.any()  # PyTorch's uniform biases, not TF's zeros


def test_model_configs_default_to_glorot_and_the_tf_slim_module():
    from conftest import composed

    for name in ("mlp_1x512", "mlp_3x512", "alexnet", "inception", "inception_nobn"):
        cfg = composed(f"model={name}")
        assert cfg.model.init == cfg.model.net.init == "glorot", name
    assert composed("model=inception").model.net.conv_module == "tf_slim"
    assert composed("model=inception", "model.init=torch").model.net.init == "torch"


def test_batchnorm_momentum_and_eps_reach_every_layer_and_the_identity():
    """`model.net.bn_momentum` / `bn_eps` are config choices: a non-default value reaches every BatchNorm layer
    of the built model and is a new job (hash); the default (PyTorch's) is what runs before the keys computed."""
    from conftest import composed
    from hydra.utils import instantiate

    from rethink.run import identity

    def bn_layers(cfg):
        return [m for m in instantiate(cfg.model.net).modules() if isinstance(m, nn.BatchNorm2d)]

    default = composed("model=inception")
    assert {(m.momentum, m.eps) for m in bn_layers(default)} == {(0.1, 1e-5)}
    tf = composed("model=inception", "model.net.bn_momentum=0.001", "model.net.bn_eps=0.001")
    layers = bn_layers(tf)
    assert len(layers) == len(bn_layers(default)) > 0 and {(m.momentum, m.eps) for m in layers} == {(0.001, 0.001)}
    # The default hashes as a config without the keys (a stored run's), and any other value differently.
    old = {k: v for k, v in identity.identity_values(default).items() if not k.startswith("model.net.bn_")}
    assert identity.config_hash(default) == identity.hash_values(old)
    assert identity.config_hash(tf) != identity.config_hash(default)
    assert identity.config_hash(composed("model=inception", "model.net.bn_eps=0.001")) != identity.config_hash(default)
    with pytest.raises(RethinkError, match="model.net.bn_momentum"):
        SmallInception((3, 8, 8), 10, bn_momentum=0)
