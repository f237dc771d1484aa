"""The paper's CIFAR-10 models (Appendix A), built for any input shape and class count."""

from rethink.models.alexnet import SmallAlexNet
from rethink.models.inception import SmallInception
from rethink.models.mlp import MLP

__all__ = ["MLP", "SmallAlexNet", "SmallInception", "count_params"]


def count_params(model) -> int:
    """Number of trainable parameters (what the paper's counts refer to)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
