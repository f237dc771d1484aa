"""rethink.measures: every measure against a value computed by hand or by numpy on a tiny network,
the BatchNorm folding, the sharpness measures' determinism and hygiene, and compute_all on the
paper's three model classes."""

from __future__ import annotations

import copy
import functools
import itertools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rethink.measures import (
    MEASURES,
    compute_all,
    distance_from_init,
    frobenius_product,
    frobenius_sum,
    log_frobenius_product,
    log_spectral_complexity,
    log_spectral_product,
    margin_p10,
    margin_p10_normalized,
    pacbayes_sigma,
    path_norm,
    spectral_product,
    worst_case_sharpness,
)
from rethink.measures.evaluate import eval_mode
from rethink.measures.fold import fold_batchnorm
from rethink.measures.layers import as_matrix
from rethink.measures.norms import spectral_norm
from rethink.measures.sharpness import drop_within, perturbable_copy
from rethink.models import MLP, SmallAlexNet, SmallInception
from rethink.models.alexnet import LocalResponseNorm
from rethink.models.inception import ConvModule


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter of `module` with N(0, 1) draws of a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return module


def two_layer(seed: int = 0) -> nn.Sequential:
    """Linear(3, 4) -> ReLU -> Linear(4, 2), N(0, 1) parameters."""
    return seeded(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), seed)


def blobs(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well-separated Gaussian classes in 2-D: a tiny net gets them ~all right."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen) * 0.5 + (2 * y[:, None] - 1) * torch.tensor([1.5, 1.5])
    return x, y


@functools.cache
def _blob_fit() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 2-16-2 ReLU net trained to fit `blobs` (train accuracy checked > 0.95), trained once."""
    x, y = blobs()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    opt.zero_grad()
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() > 0.95
    return net, x, y


def trained_blob_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A fresh copy of `_blob_fit`'s net, with its data."""
    net, x, y = _blob_fit()
    return copy.deepcopy(net), x, y


# --- norms -------------------------------------------------------------------------------------

def test_spectral_norm_matches_numpy_svd():
    gen = torch.Generator().manual_seed(0)
    for shape in [(5, 12), (12, 5), (7, 7)]:
        w = torch.randn(*shape, generator=gen, dtype=torch.float64)
        expected = np.linalg.svd(w.numpy(), compute_uv=False)[0]
        assert float(spectral_norm(w)) == pytest.approx(expected, rel=1e-12)


def test_conv_kernel_reshaped_to_out_by_in_kh_kw():
    conv = seeded(nn.Conv2d(2, 3, (2, 3)))
    w = conv.weight.detach()
    m = as_matrix(w)
    assert m.shape == (3, 2 * 2 * 3) and m.dtype == torch.float64
    for o, i, a, b in itertools.product(range(3), range(2), range(2), range(3)):
        assert m[o, i * 6 + a * 3 + b] == w[o, i, a, b].double()


def test_spectral_product_is_product_of_numpy_singular_values_of_reshaped_kernels():
    net = seeded(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 4)))
    mats = [net[0].weight.detach().numpy().reshape(3, 18), net[3].weight.detach().numpy()]
    expected = np.prod([np.linalg.svd(m.astype(np.float64), compute_uv=False)[0] for m in mats])
    assert spectral_product(net) == pytest.approx(expected, rel=1e-10)
    assert log_spectral_product(net) == pytest.approx(math.log(expected), rel=1e-10)


def test_frobenius_sum_and_product_by_hand():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))  # ||.||_F = 5
        net[2].weight.copy_(torch.tensor([[6.0, 8.0]]))  # ||.||_F = 10
        net[0].bias.fill_(100.0)  # biases are not layers
        net[2].bias.fill_(-100.0)
    assert frobenius_sum(net) == pytest.approx(15.0, rel=1e-12)
    assert frobenius_product(net) == pytest.approx(50.0, rel=1e-12)
    assert log_frobenius_product(net) == pytest.approx(math.log(50.0), rel=1e-12)


def test_product_overflow_gives_inf_and_a_finite_log():
    net = nn.Sequential(*[nn.Linear(1, 1, bias=False, dtype=torch.float64) for _ in range(3)])
    with torch.no_grad():
        for layer in net:
            layer.weight.fill_(1e150)
    assert frobenius_product(net) == math.inf
    assert log_frobenius_product(net) == pytest.approx(3 * 150 * math.log(10), rel=1e-12)


def test_distance_from_init_over_weights_only():
    init = two_layer(0)
    net = two_layer(1)
    with torch.no_grad():
        net[0].bias.add_(7.0)  # a bias change does not count
    expected = math.sqrt(sum(np.sum((a.weight.detach().numpy().astype(np.float64)
                                      - b.weight.detach().numpy().astype(np.float64)) ** 2)
                             for a, b in [(net[0], init[0]), (net[2], init[2])]))
    assert distance_from_init(net, init) == pytest.approx(expected, rel=1e-12)
    assert distance_from_init(init, init) == 0.0
    with pytest.raises(ValueError, match="differ"):
        distance_from_init(net, nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)))


def test_spectral_complexity_matches_numpy():
    init, net = two_layer(0), two_layer(1)
    ws = [net[i].weight.detach().double().numpy() for i in (0, 2)]
    w0s = [init[i].weight.detach().double().numpy() for i in (0, 2)]
    spec = [np.linalg.svd(w, compute_uv=False)[0] for w in ws]
    l21 = [np.linalg.norm(w - w0, axis=1).sum() for w, w0 in zip(ws, w0s, strict=True)]  # ||(W-W0)^T||_{2,1}
    expected = np.prod(spec) * sum((a / s) ** (2 / 3) for a, s in zip(l21, spec, strict=True)) ** 1.5
    assert log_spectral_complexity(net, init) == pytest.approx(math.log(expected), rel=1e-10)


# --- BatchNorm folding --------------------------------------------------------------------------

def bn_net() -> nn.Sequential:
    """Linear(3, 4) -> BatchNorm1d(4) with non-trivial statistics, scale and shift -> ReLU -> Linear."""
    net = seeded(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)))
    bn = net[1]
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 9.0]))
    return net


def test_fold_by_hand_and_path_norm_of_the_folded_net():
    net = bn_net()
    lin, bn = net[0], net[1]
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    by_hand = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        by_hand[0].weight.copy_(lin.weight * s[:, None])
        by_hand[0].bias.copy_(s * (lin.bias - bn.running_mean) + bn.bias)
        by_hand[2].load_state_dict(net[3].state_dict())
    folded = fold_batchnorm(net)
    assert isinstance(folded[1], nn.Identity) and isinstance(net[1], nn.BatchNorm1d)  # a copy
    torch.testing.assert_close(folded[0].weight, by_hand[0].weight)
    torch.testing.assert_close(folded[0].bias, by_hand[0].bias)
    x = torch.randn(5, 3)
    with eval_mode(net), torch.no_grad():
        torch.testing.assert_close(folded(x), net(x))
    assert path_norm(net, (3,)) == pytest.approx(path_norm(by_hand, (3,)), rel=1e-6)
    assert frobenius_sum(net) == pytest.approx(frobenius_sum(by_hand), rel=1e-6)


def test_fold_tf_slim_conv_module_gains_the_shift_as_bias():
    module = seeded(ConvModule(2, 3, 3, conv_module="tf_slim"))
    assert module[0].bias is None
    module.train()
    module(torch.randn(8, 2, 5, 5))  # running statistics away from 0 / 1
    folded = fold_batchnorm(module)
    assert folded[0].bias is not None and isinstance(folded[1], nn.Identity)
    x = torch.randn(4, 2, 5, 5)
    with eval_mode(module), torch.no_grad():
        torch.testing.assert_close(folded(x), module(x))
    assert module.training  # eval_mode put it back


def test_fold_refuses_a_batchnorm_it_cannot_place():
    with pytest.raises(ValueError, match="BatchNorm not directly after"):
        fold_batchnorm(nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2)))


# --- path norm ----------------------------------------------------------------------------------

def test_path_norm_of_one_hidden_layer_relu_net_by_enumerating_paths():
    net = two_layer(3)
    w1, b1 = net[0].weight.detach().double(), net[0].bias.detach().double()
    w2, b2 = net[2].weight.detach().double(), net[2].bias.detach().double()
    through_inputs = sum(float(w1[j, i] * w2[k, j]) ** 2
                         for i, j, k in itertools.product(range(3), range(4), range(2)))
    from_hidden_biases = sum(float(b1[j] * w2[k, j]) ** 2 for j, k in itertools.product(range(4), range(2)))
    from_output_biases = sum(float(b2[k]) ** 2 for k in range(2))
    assert path_norm(net, (3,), include_bias=False) == pytest.approx(math.sqrt(through_inputs), rel=1e-12)
    assert path_norm(net, (3,)) == pytest.approx(
        math.sqrt(through_inputs + from_hidden_biases + from_output_biases), rel=1e-12)


def test_path_norm_maxpool_keeps_the_largest_path_sum_and_lrn_is_skipped():
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(3.0)
        net[4].weight.fill_(-2.0)
    # four pixels, each with path sum 3^2; the pool keeps one of them, then (-2)^2: sqrt(36)
    assert path_norm(net, (1, 2, 2)) == pytest.approx(6.0, rel=1e-12)
    with_lrn = nn.Sequential(nn.Conv2d(1, 2, 1), LocalResponseNorm(), nn.Flatten(), nn.Linear(2, 1))
    without = nn.Sequential(with_lrn[0], nn.Identity(), nn.Flatten(), with_lrn[3])
    seeded(with_lrn)
    assert path_norm(with_lrn, (1, 1, 1)) == pytest.approx(path_norm(without, (1, 1, 1)), rel=1e-12)
    assert isinstance(with_lrn[1], LocalResponseNorm)  # the model itself keeps it


# --- margins ------------------------------------------------------------------------------------

def test_margin_p10_on_three_examples_by_hand():
    x = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 3.0], [1.0, 0.0, 5.0]])
    y = torch.tensor([0, 1, 2])  # margins 2 - 1 = 1, 2 - 3 = -1, 5 - 1 = 4
    net = nn.Sequential(nn.Linear(3, 3, bias=False))
    init = copy.deepcopy(net)
    with torch.no_grad():
        net[0].weight.copy_(2 * torch.eye(3))  # doubles the margins
        init[0].weight.copy_(torch.eye(3))
    # 10th percentile of (-2, 2, 8), linear interpolation: -2 + 0.2 * (2 - (-2)) = -1.2
    assert margin_p10(net, x, y) == pytest.approx(-1.2, rel=1e-12)
    assert np.percentile([2.0, -2.0, 8.0], 10) == pytest.approx(-1.2)
    # One layer: R = ||W||_2 * (||(W - W0)^T||_{2,1} / ||W||_2) = sum of the rows' norms of I = 3.
    assert margin_p10_normalized(net, init, x, y) == pytest.approx(-1.2 / 3, rel=1e-12)


def test_margin_restores_train_and_eval_modes():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 3))
    net.train()
    net[1].eval()
    x, y = torch.randn(10, 3), torch.randint(0, 3, (10,))
    first = margin_p10(net, x, y)
    assert net.training and net[0].training and not net[1].training
    assert margin_p10(net, x, y) == first  # eval mode: dropout off, the same value


# --- sharpness ----------------------------------------------------------------------------------

def test_pacbayes_sigma_monotone_in_the_threshold():
    net, x, y = trained_blob_net()
    sigmas = [pacbayes_sigma(net, x, y, threshold=t, iterations=10) for t in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a <= b for a, b in itertools.pairwise(sigmas)), sigmas
    assert sigmas[0] < sigmas[-1], sigmas


def test_pacbayes_sigma_bisection_bounds():
    net, x, y = trained_blob_net()
    # A drop <= 1 always holds: every step moves up, to sigma_max ** (1 - 2^-k) * sigma_min ** 2^-k.
    got = pacbayes_sigma(net, x, y, threshold=1.0, iterations=3, sigma_min=1e-4, sigma_max=1.0)
    assert got == pytest.approx(1e-4 ** (1 / 8), rel=1e-12)
    # A drop <= -1 never holds: sigma_min.
    assert pacbayes_sigma(net, x, y, threshold=-1.0, iterations=3, sigma_min=1e-4) == pytest.approx(1e-4)


def test_drop_within_stops_early_with_the_full_evaluation_s_answer():
    net, x, y = trained_blob_net()
    copy_, params, base = perturbable_copy(net)
    gen = torch.Generator().manual_seed(0)
    noise = [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(3)]
    base_acc = float((net(x).argmax(1) == y).float().mean())
    for sigma in (0.05, 0.3, 0.5, 1.0, 3.0):
        accs = []
        for eps in noise:
            probe = copy.deepcopy(net)
            with torch.no_grad():
                for p, e in zip(probe.parameters(), eps, strict=True):
                    p.add_(sigma * e)
                accs.append(float((probe(x).argmax(1) == y).float().mean()))
        drop = base_acc - sum(accs) / 3
        for threshold in (0.0, 0.05, 0.1, 0.3):
            got = drop_within(copy_, params, base, noise, sigma, x, y, round(base_acc * len(x)), threshold, 16)
            assert got == (drop <= threshold + 1e-9), (sigma, threshold, drop)


def test_worst_case_sharpness_one_step_by_hand():
    net, x, y = trained_blob_net()
    rho, eps = 1e-2, 1e-3
    probe = copy.deepcopy(net)
    loss = F.cross_entropy(probe(x), y)
    grads = torch.autograd.grad(loss, list(probe.parameters()))
    with torch.no_grad():
        for p, g in zip(probe.parameters(), grads, strict=True):
            p.add_(rho * (p.abs() + eps) * g.sign())  # one step of 2r, clipped to the box: r * sign(g)
        expected = max(0.0, float(F.cross_entropy(probe(x), y)) - float(loss))
    got = worst_case_sharpness(net, x, y, rho=rho, eps=eps, steps=1, samples=None)
    assert expected > 0
    assert got == pytest.approx(expected, rel=1e-4)
    assert worst_case_sharpness(net, x, y, rho=rho, eps=eps, steps=3, samples=None) >= got - 1e-7


@pytest.mark.parametrize("measure", [pacbayes_sigma, worst_case_sharpness])
def test_sharpness_deterministic_restores_weights_and_leaves_rng_alone(measure):
    net, x, y = trained_blob_net()
    net.train()
    before = copy.deepcopy(net.state_dict())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first = measure(net, x, y, samples=100, seed=7)
    second = measure(net, x, y, samples=100, seed=7)
    assert first == second  # bit for bit
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.training and all(p.grad is None for p in net.parameters())


# --- compute_all on the paper's models ------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: MLP((3, 28, 28), 10),
    lambda: SmallAlexNet((3, 28, 28), 10),
    lambda: SmallInception((3, 28, 28), 10, conv_module="tf_slim"),
    lambda: SmallInception((3, 28, 28), 10, batchnorm=False),
], ids=["mlp", "alexnet", "inception", "inception_nobn"])
def test_compute_all_on_the_paper_models(make):
    torch.manual_seed(0)
    model = make()
    init = copy.deepcopy(model)
    x, y = torch.randn(4, 3, 28, 28), torch.randint(0, 10, (4,))
    model.train()
    with torch.no_grad():
        model(x)  # BatchNorm statistics away from their initial 0 / 1
        for p in model.parameters():
            p.mul_(1.1)
    before = copy.deepcopy(model.state_dict())
    out = compute_all(model, init, x, y, batch_size=3)  # two batches
    assert list(out) == list(MEASURES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values()), out
    assert out["distance_from_init"] > 0 and out["path_norm"] > 0 and out["pacbayes_sigma"] > 0
    assert out["worst_case_sharpness"] >= 0
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
