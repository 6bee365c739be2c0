"""Model cost: parameter counts and multiply-accumulates, measured without allocating real weights."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from vidnet.network._registry import create_model

__all__ = ["count_parameters", "count_macs", "model_cost"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, clip: tuple[int, int, int], *, batch: int = 1) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a ``batch x 3 x T x H x W`` clip.

    Counted by ``torch.utils.flop_counter`` (matrix products and convolutions, LSTM/GRU included through
    their matrix products) and halved: one MAC is two FLOPs. Normalisation, pooling and element-wise ops are
    not counted, so figures sit slightly below thop's (which counts BatchNorm).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(batch, 3, *clip, device=device)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_cost(name: str, *, num_classes: int = 400, clip: tuple[int, int, int] | None = (16, 112, 112),
               **options) -> tuple[int, int | None]:
    """(parameters, MACs) of a registered model; MACs is None when ``clip`` is None.

    The model is built on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic), so even the
    billion-parameter models cost nothing; a model whose forward pass cannot run on ``meta`` (data-dependent
    control flow) is measured with real CPU tensors instead.
    """
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **options)
    params = count_parameters(model)
    if clip is None:
        return params, None
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, TypeError):
        with torch.device("meta"):
            return params, count_macs(model, clip)
    model = create_model(name, num_classes=num_classes, **options)
    return params, count_macs(model, clip)
