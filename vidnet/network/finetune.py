"""Fine-tuning helpers: parameter groups, freezing the early stages, and a new classifier head."""

from __future__ import annotations

import torch.nn as nn

from vidnet.errors import UsageError

__all__ = ["find_head", "replace_head", "param_groups", "freeze_up_to"]


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier: the last ``nn.Linear`` registered in the model (its qualified name and the module).

    Raises:
        UsageError: the model has no linear layer.
    """
    heads = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise UsageError(f"{type(model).__name__} has no nn.Linear classifier to find")
    return heads[-1]


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the classifier for a freshly initialised one with ``num_classes`` outputs (in place).

    The new layer keeps the old one's input size, bias setting, device and dtype, and is initialised
    N(0, 0.01) with zero bias like the video ResNets' classifier.

    Returns:
        The new ``nn.Linear``.
    """
    if num_classes < 1:
        raise UsageError(f"num_classes must be positive, got {num_classes}")
    name, old = find_head(model)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device,
                    dtype=old.weight.dtype)
    nn.init.normal_(new.weight, 0, 0.01)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return new


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr_mult: float = 1.0,
    head_lr_mult: float = 1.0,
    recurrent_lr_mult: float | None = None,
) -> list[dict]:
    """Optimizer parameter groups: backbone, recurrent layers (LSTM/GRU/RNN) and classifier head.

    Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped. The original code
    meant to do this but its recurrent test only matched ``lstm`` and its classifier prefix never matched
    ``fc``.

    Args:
        model: the model.
        lr: base learning rate.
        backbone_lr_mult: multiplier for everything that is neither head nor recurrent (e.g. 0.1 to fine-tune).
        head_lr_mult: multiplier for the classifier (:func:`find_head`).
        recurrent_lr_mult: multiplier for recurrent layers; None uses ``backbone_lr_mult``.

    Returns:
        A list of ``{"name", "params", "lr"}`` dicts for ``torch.optim`` (extra keys are kept by optimizers).
    """
    head_name, _ = find_head(model)
    rec_mult = backbone_lr_mult if recurrent_lr_mult is None else recurrent_lr_mult
    recurrent = {id(p) for m in model.modules() if isinstance(m, nn.RNNBase) for p in m.parameters()}
    groups: dict[str, list] = {"backbone": [], "recurrent": [], "head": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(head_name + "."):
            groups["head"].append(p)
        elif id(p) in recurrent:
            groups["recurrent"].append(p)
        else:
            groups["backbone"].append(p)
    mults = {"backbone": backbone_lr_mult, "recurrent": rec_mult, "head": head_lr_mult}
    return [{"name": k, "params": v, "lr": lr * mults[k]} for k, v in groups.items() if v]


def _keep_eval(module: nn.Module, args: tuple) -> None:
    module.training = False


def freeze_up_to(model: nn.Module, stage: str, *, freeze_norm_stats: bool = True) -> list[str]:
    """Freeze the model's top-level children up to and including ``stage`` (e.g. ``"layer2"``).

    Args:
        model: the model; its direct children in registration order are the stages (for the video ResNets:
            ``stem``, ``pool``, ``layer1`` ... ``layer4``, ``avgpool``, ``dropout``, ``fc``).
        stage: name of the last child to freeze.
        freeze_norm_stats: also keep the frozen batch-norm layers in eval mode (their running statistics
            stop updating even while the model trains).

    Returns:
        The names of the frozen children.

    Raises:
        UsageError: ``stage`` is not a direct child of the model.
    """
    names = [n for n, _ in model.named_children()]
    if stage not in names:
        raise UsageError(f"{type(model).__name__} has no stage {stage!r}; stages: {', '.join(names)}")
    frozen = names[: names.index(stage) + 1]
    for name in frozen:
        child = model.get_submodule(name)
        for p in child.parameters():
            p.requires_grad_(False)
        if freeze_norm_stats:
            for m in child.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not getattr(m, "_vidnet_frozen", False):
                    m.register_forward_pre_hook(_keep_eval)
                    m._vidnet_frozen = True
    return frozen
