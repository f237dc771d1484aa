"""Output-margin measures (Bartlett et al. 2017; Jiang et al. 2019): the 10th percentile of the
margin over the given training examples, raw and divided by the spectral complexity."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rethink.measures.evaluate import logits
from rethink.measures.norms import exp_or_inf, log_spectral_complexity


def output_margins(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 64) -> Tensor:
    """f(x)[y] - max_{j != y} f(x)[j] per example (eval mode), float64: negative where misclassified."""
    out = logits(model, x, batch_size).double()
    y = y.to(out.device)
    rows = torch.arange(len(out))
    correct = out[rows, y].clone()
    out[rows, y] = -math.inf
    return correct - out.max(dim=1).values


def margin_p10(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 64) -> float:
    """The 10th percentile of `output_margins` over (x, y), interpolating linearly between order
    statistics (numpy.percentile's default); signed, so it is negative if over 10 % are misclassified."""
    return float(torch.quantile(output_margins(model, x, y, batch_size), 0.1))


def normalize_margin(margin: float, log_complexity: float) -> float:
    """margin / R computed from log R (sign(m) * exp(log|m| - log R)), finite where R overflows."""
    if margin == 0:
        return 0.0
    return math.copysign(exp_or_inf(math.log(abs(margin)) - log_complexity), margin)


def margin_p10_normalized(model: nn.Module, init_model: nn.Module, x: Tensor, y: Tensor,
                          batch_size: int = 64) -> float:
    """margin_p10 / R, R Bartlett et al. 2017's spectral complexity with reference matrices M_i = the
    initial weights (`rethink.measures.norms.log_spectral_complexity`)."""
    return normalize_margin(margin_p10(model, x, y, batch_size), log_spectral_complexity(model, init_model))
