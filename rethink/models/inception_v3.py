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


def tf_init(model: nn.Module) -> None:
    """The initialization of the TensorFlow code the paper ran (tensorflow/models inception/slim: inception_model.py
    and ops.py): normals truncated at 2 standard deviations, std 0.1 for the convolutions (the arg_scope of
    inception_v3_parameters), 0.01 for the logits layer (ops.fc's default; torchvision draws it with 0.1), 0.01 and
    0.001 for the auxiliary head's last convolution and logits; zero biases."""
    aux = getattr(model, "AuxLogits", None)
    special = {model.fc: 0.01} | ({aux.conv1.conv: 0.01, aux.fc: 0.001} if aux is not None else {})
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = special.get(m, 0.1)
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build(num_classes: int, in_shape: list[int] | tuple[int, int, int], aux_logits: bool | str = "auto",
          dropout: float = 0.0, init: str = "tf") -> nn.Module:
    """torchvision's Inception v3 with `num_classes` outputs, from scratch: `init` "tf" (the paper's TensorFlow
    code's, `tf_init`) or "torch" (torchvision's own: std 0.1 for the logits too, truncated only at +-2).

    `aux_logits`: true | false | auto (on where the input allows it). In training mode the model returns
    (logits, aux_logits) when the head is on; `rethink.training.stream_loop` weighs the auxiliary loss.
    """
    from torchvision.models import inception_v3

    c, h, w = in_shape
    check([("model.net.aux_logits", aux_logits, aux_logits in (True, False, "auto"), "true, false or auto"),
           ("model.init", init, init in ("tf", "torch"), "tf (the TensorFlow recipe's) or torch (torchvision's own)"),
           ("dataset.input_shape", list(in_shape), c == 3 and min(h, w) >= 75,
            "[3, H, W] with H, W >= 75 (Inception v3's smallest input)")])
    if aux_logits == "auto":
        aux_logits = aux_fits(min(h, w))
    elif aux_logits and not aux_fits(min(h, w)):
        from rethink.errors import RethinkError

        raise RethinkError(f"model.net.aux_logits=true needs a larger input than {h}x{w} (the head pools the 17x17 grid "
                           "of 299x299 inputs): use model.net.aux_logits=false or auto")
    model = inception_v3(weights=None, num_classes=num_classes, aux_logits=bool(aux_logits), init_weights=True,
                         dropout=float(dropout), transform_input=False)
    if init == "tf":
        tf_init(model)
    return model
