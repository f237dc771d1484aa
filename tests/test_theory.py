"""Fast checks of the theory code: Theorem 1 construction, min-norm SGD, kernel interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rethink.theory import expressivity as ex
from rethink.theory import features as ft
from rethink.theory import kernels as kr
from rethink.theory import minnorm as mn


@pytest.fixture
def random_task() -> tuple[np.ndarray, np.ndarray]:
    """n=200 points in R^50 with random real targets."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((200, 50)), rng.standard_normal(200)


# --- Theorem 1 ---


def test_construction_fits_random_targets_exactly(random_task):
    x, y = random_task
    net = ex.fit_two_layer_relu(x, y, seed=1)
    assert net.num_weights == 2 * 200 + 50
    assert np.max(np.abs(net(x) - y)) < 1e-8
    # the literal sum over units cancels large weights of both signs: exact, but less accurate
    assert np.max(np.abs(ex.evaluate_direct(net, x) - y)) < 1e-6


def test_biases_interleave_sorted_projections(random_task):
    x, y = random_task
    net = ex.fit_two_layer_relu(x, y, seed=1)
    p = np.sort(x @ net.a)
    assert np.all(np.diff(net.b) > 0)
    assert net.b[0] < p[0]
    assert np.all((net.b[1:] > p[:-1]) & (net.b[1:] < p[1:]))
    assert np.array_equal(p, (x @ net.a)[net.order])


def test_prefix_solver_matches_dense_triangular_solve(random_task):
    x, y = random_task
    net = ex.fit_two_layer_relu(x, y, seed=2)
    p_sorted = (x @ net.a)[net.order]
    dense = ex.solve_dense(p_sorted, net.b, y[net.order])
    np.testing.assert_allclose(net.w, dense, rtol=1e-9, atol=1e-9 * np.abs(dense).max())


def test_prefix_eval_equals_direct_eval_on_new_points(random_task):
    x, y = random_task
    net = ex.fit_two_layer_relu(x, y, seed=3)
    fresh = np.random.default_rng(9).standard_normal((300, 50))
    direct = ex.evaluate_direct(net, fresh)
    np.testing.assert_allclose(
        ex.evaluate_prefix(net, fresh), direct, rtol=1e-9, atol=1e-9 * np.abs(direct).max()
    )


def test_network_is_the_relu_sum_it_claims_to_be(random_task):
    x, y = random_task
    net = ex.fit_two_layer_relu(x, y, seed=4)
    point = np.random.default_rng(5).standard_normal(50)
    by_hand = sum(
        w_j * max(point @ net.a - b_j, 0.0) for w_j, b_j in zip(net.w, net.b, strict=True)
    )
    assert ex.evaluate_prefix(net, point[None])[0] == pytest.approx(by_hand, rel=1e-9)


def test_duplicate_points_raise_clear_error():
    x = np.random.default_rng(0).standard_normal((10, 4))
    x[7] = x[2]
    with pytest.raises(ValueError, match="equal projections"):
        ex.fit_two_layer_relu(x, np.arange(10.0))


def test_integer_labels_are_memorized_and_report_is_consistent():
    rng = np.random.default_rng(0)
    x, labels = rng.random((500, 30)), rng.integers(0, 10, 500)
    net = ex.fit_two_layer_relu(x, labels.astype(float), seed=0)
    assert ex.classification_accuracy(net, x, labels, num_classes=10) == 1.0
    report = ex.theorem1_report(x, labels, seed=0)
    assert report["num_weights"] == 2 * 500 + 30
    assert report["max_abs_error_prefix"] < 1e-6
    assert report["min_gap"] > 0 and report["max_abs_w"] > 0


def test_float32_construction_really_runs_in_float32(random_task):
    x, y = random_task
    net = ex.fit_two_layer_relu(x, y, seed=1, dtype=np.float32)
    assert net.w.dtype == np.float32 and net.b.dtype == np.float32
    assert ex.evaluate_prefix(net, x).dtype == np.float32


# --- min-norm SGD (Section 5, linear case) ---


def test_sgd_from_zero_converges_to_pinv_solution():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 100)), rng.standard_normal(20)
    trace = mn.sgd_least_squares(x, y, epochs=300, seed=0)
    assert trace.relative_distance[-1] < 1e-3
    assert trace.residual[-1] < 1e-3 * np.linalg.norm(y)
    assert trace.distance[-1] < trace.distance[0]


def test_sgd_from_nonzero_start_keeps_null_space_component():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 100)), rng.standard_normal(20)
    w0 = rng.standard_normal(100)
    trace = mn.sgd_least_squares(x, y, epochs=300, seed=0, w0=w0)
    null_part = w0 - np.linalg.pinv(x) @ (x @ w0)
    assert trace.residual[-1] < 1e-3 * np.linalg.norm(y)  # it still interpolates ...
    # ... but not the min-norm one: the null-space part of w0 never moves
    assert trace.distance[-1] == pytest.approx(np.linalg.norm(null_part), rel=1e-3)


def test_minibatch_sgd_also_converges():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 100)), rng.standard_normal(20)
    seen = []
    trace = mn.sgd_least_squares(
        x, y, epochs=400, seed=0, batch_size=5, callback=lambda e, w, d, r: seen.append(e)
    )
    assert seen == list(range(400))
    assert trace.relative_distance[-1] < 1e-3


# --- kernels (Table 3) ---


def test_blockwise_kernel_matches_direct_formula():
    rng = np.random.default_rng(0)
    x, z = rng.random((37, 11)), rng.random((23, 11))
    direct = np.exp(-0.7 * ((x[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    got = kr.rbf_kernel_blockwise(torch.from_numpy(x), torch.from_numpy(z), 0.7, block=5)
    np.testing.assert_allclose(got.numpy(), direct, rtol=1e-12, atol=1e-12)
    out = torch.empty((37, 23), dtype=torch.float64)
    assert (
        kr.rbf_kernel_blockwise(torch.from_numpy(x), torch.from_numpy(z), 0.7, block=8, out=out)
        is out
    )
    np.testing.assert_allclose(out.numpy(), direct, rtol=1e-12, atol=1e-12)


def test_upper_gram_build_matches_full_kernel_on_upper_triangle():
    x = torch.from_numpy(np.random.default_rng(1).random((29, 5)))
    full = kr.rbf_kernel_blockwise(x, x, 0.9)
    upper = kr.rbf_gram_upper_blockwise(
        x, 0.9, block=4, out=torch.full((29, 29), float("nan"), dtype=torch.float64)
    )
    mask = torch.ones(29, 29, dtype=torch.bool).triu()
    torch.testing.assert_close(upper[mask], full[mask], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", ["scipy", "torch"])
def test_kernel_solve_matches_numpy_solve(solver):
    rng = np.random.default_rng(0)
    x, labels = rng.random((60, 8)), rng.integers(0, 4, 60)
    y = kr.one_hot(labels, 4, dtype=torch.float64)
    fit = kr.fit_kernel_interpolant(x, y, gamma=0.5, dtype=torch.float64, solver=solver)
    k = np.exp(-0.5 * ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    expected = np.linalg.solve(k, y.numpy())
    assert fit.jitter == 0.0 and fit.attempts == 1
    np.testing.assert_allclose(
        fit.alpha.numpy(), expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max()
    )
    # RKHS norm shortcut sqrt(sum(alpha * Y)) equals sqrt(trace(alpha^T K alpha))
    assert fit.rkhs_norm == pytest.approx(np.sqrt(np.trace(expected.T @ k @ expected)), rel=1e-8)
    np.testing.assert_allclose(
        fit.rkhs_norm_per_class, np.sqrt(np.diag(expected.T @ k @ expected)), rtol=1e-8
    )


def test_singular_kernel_gets_jitter_and_still_solves():
    x = np.zeros((5, 3))  # all points equal: K is the all-ones matrix, rank 1
    y = kr.one_hot([0, 1, 0, 1, 0], 2, dtype=torch.float64)
    fit = kr.fit_kernel_interpolant(x, y, gamma=1.0, dtype=torch.float64, max_tries=20)
    assert fit.jitter > 0 and fit.attempts > 1
    k = np.ones((5, 5)) + fit.jitter * np.eye(5)
    alpha = fit.alpha.numpy()
    # K + jitter I is barely PD (condition ~ 5 / jitter): Cholesky guarantees a small backward error only
    backward_error = np.linalg.norm(k @ alpha - y.numpy()) / (
        np.linalg.norm(k, 2) * np.linalg.norm(alpha)
    )
    assert backward_error < 1e-12


def test_kernel_interpolant_interpolates_training_labels():
    rng = np.random.default_rng(1)
    x, labels = rng.random((80, 6)), rng.integers(0, 3, 80)
    fit = kr.fit_kernel_interpolant(
        x, kr.one_hot(labels, 3, torch.float64), gamma=2.0, dtype=torch.float64
    )
    assert torch.equal(kr.predict(x, fit.alpha, x, 2.0), torch.as_tensor(labels))


def test_chunked_predictions_equal_unchunked():
    rng = np.random.default_rng(2)
    train, test = torch.from_numpy(rng.random((50, 7))), torch.from_numpy(rng.random((33, 7)))
    alpha = torch.from_numpy(rng.standard_normal((50, 4)))
    whole = kr.rbf_kernel_blockwise(test, train, 1.3) @ alpha
    chunked = kr.kernel_scores(train, alpha, test, 1.3, chunk=4)
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), rtol=1e-12, atol=1e-12)
    assert torch.equal(kr.predict(train, alpha, test, 1.3, chunk=4), whole.argmax(1))
    assert torch.equal(kr.predict(train, alpha, test, 1.3, chunk=1000), whole.argmax(1))


def test_scipy_cpu_solve_works_in_float32():
    rng = np.random.default_rng(3)
    x, labels = rng.random((100, 20)).astype(np.float32), rng.integers(0, 10, 100)
    fit = kr.fit_kernel_interpolant(x, kr.one_hot(labels, 10), gamma=0.5)
    assert fit.alpha.dtype == torch.float32
    assert torch.equal(kr.predict(x, fit.alpha, x, 0.5), torch.as_tensor(labels))


def test_preprocessing_and_gamma_heuristic():
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    flat = kr.scale_and_flatten(images)
    assert flat.shape == (40, 3072) and float(flat.max()) <= 1.0 and flat.dtype == torch.float32
    gamma = kr.median_heuristic_gamma(flat, num_pairs=2000)
    d2 = torch.cdist(flat.double(), flat.double()).pow(2)
    off_diag = d2[~torch.eye(40, dtype=torch.bool)]
    assert off_diag.min() < 1 / gamma < off_diag.max()


def test_random_conv_features_shape_and_batching():
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    feats = ft.random_conv_features(images, num_filters=16, seed=0, kernel_size=5, pool=2, batch=3)
    assert feats.shape == (7, 16 * 4)
    assert torch.all(feats >= 0)
    whole = ft.random_conv_features(
        images, num_filters=16, seed=0, kernel_size=5, pool=2, batch=100
    )
    torch.testing.assert_close(feats, whole)


def test_gabor_bank_and_features():
    bank = ft.gabor_filters(kernel_size=11, orientations=8, wavelengths=(4.0, 8.0))
    assert bank.shape == (32, 1, 11, 11)
    assert torch.allclose(bank.flatten(1).sum(1), torch.zeros(32), atol=1e-5)
    assert torch.allclose(bank.flatten(1).norm(dim=1), torch.ones(32), atol=1e-5)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    feats = ft.gabor_features(images, bank, pool=4)
    assert feats.shape == (5, 16 * 16) and bool((feats >= 0).all())
    assert torch.allclose(ft.gabor_features(images[:2], bank, pool=4), feats[:2])
