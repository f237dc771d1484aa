"""Numerical theory of the paper: Theorem 1 (expressivity), min-norm SGD (Section 5), kernel Table 3."""

from rethink.theory.expressivity import (
    TwoLayerReLU,
    classification_accuracy,
    evaluate_direct,
    evaluate_prefix,
    fit_two_layer_relu,
    predict_labels,
    solve_dense,
    solve_prefix,
    theorem1_report,
)
from rethink.theory.features import random_conv_features
from rethink.theory.kernels import (
    MNIST_GAMMA,
    KernelFit,
    error_rate,
    fit_kernel_interpolant,
    kernel_scores,
    median_heuristic_gamma,
    one_hot,
    predict,
    rbf_gram_upper_blockwise,
    rbf_kernel_blockwise,
    scale_and_flatten,
)
from rethink.theory.minnorm import SGDTrace, min_norm_solution, sgd_least_squares

__all__ = [
    "MNIST_GAMMA",
    "KernelFit",
    "SGDTrace",
    "TwoLayerReLU",
    "classification_accuracy",
    "error_rate",
    "evaluate_direct",
    "evaluate_prefix",
    "fit_kernel_interpolant",
    "fit_two_layer_relu",
    "kernel_scores",
    "median_heuristic_gamma",
    "min_norm_solution",
    "one_hot",
    "predict",
    "predict_labels",
    "random_conv_features",
    "rbf_gram_upper_blockwise",
    "rbf_kernel_blockwise",
    "scale_and_flatten",
    "sgd_least_squares",
    "solve_dense",
    "solve_prefix",
    "theorem1_report",
]
