"""Inception v3 for the paper's ImageNet half (Table 2, Fig. 2a): torchvision's architecture, trained from scratch.

The paper trained TensorFlow's Inception v3 (tensorflow/models, `inception/`); torchvision's module is the same
network (BatchNorm eps 1e-3 as there). The auxiliary head is kept, as in the original recipe, when the input is
large enough for it (it needs the 17x17 grid of 299x299 inputs); dropout before the classifier is Table 2's
dropout switch (`regularizer.dropout`; the recipe's keep probability 0.8 is dropout 0.2).
"""

from __future__ import annotations

import torch
from torch import nn

from rethink.checks import check


def aux_fits(image_size: int) -> bool:
    """Whether the auxiliary head works at this input size (a shape-only forward on the meta device)."""
    from torchvision.models import inception_v3

    with torch.device("meta"):
        probe = inception_v3(weights=None, num_classes=10, aux_logits=True, init_weights=False)
        probe.train()
        try:
            probe(torch.empty(2, 3, image_size, image_size))
        except (RuntimeError, ValueError):  # a kernel larger than its input; a 1x1 map under BatchNorm
            return False
    return True


def build(num_classes: int, in_shape: list[int] | tuple[int, int, int], aux_logits: bool | str = "auto",
          dropout: float = 0.0, init: str = "torch") -> nn.Module:
    """torchvision's Inception v3 with `num_classes` outputs, from scratch (its own truncated-normal init).

    `aux_logits`: true | false | auto (on where the input allows it). In training mode the model returns
    (logits, aux_logits) when the head is on; `rethink.stream_train` weighs the auxiliary loss.
    """
    from torchvision.models import inception_v3

    c, h, w = in_shape
    check([("model.net.aux_logits", aux_logits, aux_logits in (True, False, "auto"), "true, false or auto"),
           ("model.init", init, init == "torch", "torch (torchvision's own initialization of Inception v3)"),
           ("dataset.input_shape", list(in_shape), c == 3 and min(h, w) >= 75,
            "[3, H, W] with H, W >= 75 (Inception v3's smallest input)")])
    if aux_logits == "auto":
        aux_logits = aux_fits(min(h, w))
    elif aux_logits and not aux_fits(min(h, w)):
        from rethink.errors import RethinkError

        raise RethinkError(f"model.net.aux_logits=true needs a larger input than {h}x{w} (the head pools the 17x17 grid "
                           "of 299x299 inputs): use model.net.aux_logits=false or auto")
    return inception_v3(weights=None, num_classes=num_classes, aux_logits=bool(aux_logits), init_weights=True,
                        dropout=float(dropout), transform_input=False)
