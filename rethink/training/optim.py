"""The optimizers a job can train with (`trainer.optimizer`), over the parameter groups of `param_groups`.

`sgd`: torch's SGD with momentum, the paper's CIFAR-10 optimizer. `adam`: torch's Adam (beta1 = trainer.momentum),
not the paper's, for small experiments (bench/inception_fit.py: it fits 100 random labels in a third of the epochs
the Inception v3 recipe's optimizer needs). `rmsprop_tf`: TensorFlow 1's RMSProp with momentum, the optimizer of
the Inception v3 recipe the paper's ImageNet runs used (tensorflow/models, inception/inception_train.py: decay 0.9,
momentum 0.9, epsilon 1.0). It is not torch's RMSprop: TF adds epsilon
inside the square root, starts the mean square at 1 (not 0), and folds the learning rate into the momentum.
"""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adam", "rmsprop_tf")


class TFRMSprop(torch.optim.Optimizer):
    """TF1's `RMSPropOptimizer(momentum>0)`: ms = decay*ms + (1-decay)*g^2 (ms starts at 1);
    mom = momentum*mom + lr*g/sqrt(ms + eps); p -= mom. Weight decay adds wd*p to g (an L2 loss wd/2*|p|^2)."""

    def __init__(self, params, lr: float, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum, eps, wd = (group[k] for k in ("lr", "decay", "momentum", "eps", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=wd) if wd else p.grad
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms, mom = state["square_avg"], state["momentum_buffer"]
                ms.mul_(decay).addcmul_(g, g, value=1 - decay)
                mom.mul_(momentum).addcdiv_(g, ms.add(eps).sqrt_(), value=lr)
                p.sub_(mom)
        return loss


def param_groups(model: nn.Module, weight_decay: float, on: str) -> list[dict]:
    """Weight decay on conv/linear kernels only (`weights`) or on every parameter (`all`)."""
    if on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(name: str, groups: list[dict], lr: float, momentum: float, rmsprop_decay: float = 0.9,
          rmsprop_eps: float = 1.0) -> torch.optim.Optimizer:
    """The optimizer `name` over `groups` (each with its own weight_decay)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999))
    if name == "rmsprop_tf":
        return TFRMSprop(groups, lr=lr, decay=rmsprop_decay, momentum=momentum, eps=rmsprop_eps)
    raise ValueError(f"unknown optimizer {name!r}")
