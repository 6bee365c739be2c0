"""Knowledge distillation (Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv 1503.02531):
the loss, and the frozen teacher that ``vidnet train --teacher`` runs beside the student."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidnet._log import get_logger
from vidnet.checkpoint import CheckpointError
from vidnet.errors import UsageError

__all__ = ["distillation_loss", "Teacher", "load_teacher"]

log = get_logger(__name__)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 4.0,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Knowledge-distillation loss (Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv 1503.02531).

    ``alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)``.
    The ``T^2`` factor keeps the soft term's gradient scale independent of the temperature; the teacher's
    logits are detached.

    Args:
        student_logits: ``[N, classes]`` logits of the model being trained.
        teacher_logits: ``[N, classes]`` logits of the teacher.
        labels: ``[N]`` class indices.
        alpha: weight of the soft (teacher) term, in [0, 1].
        temperature: softmax temperature, > 0.
        label_smoothing: label smoothing of the hard (cross-entropy) term.
    """
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"distillation alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise UsageError(f"distillation temperature must be positive, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise UsageError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits.detach() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard




class Teacher:
    """A frozen teacher in eval mode; resizes and renormalises the student's clips to what it was trained on.

    A teacher whose checkpoint records its clip shape (``preprocessing``) sees every batch resized
    (trilinear, in time and space) to that shape: a model trained at one shape is most accurate there, and
    networks with fixed-size classifiers (C3D) accept no other. Mean/std differing from the student's are
    undone and reapplied.
    """

    def __init__(self, model: nn.Module, shape: tuple[int, int, int] | None,
                 renorm: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.model, self.shape, self.renorm = model, shape, renorm

    def describe(self) -> str:
        name = type(self.model).__name__
        return name + (f", clips resized to {'x'.join(map(str, self.shape))}" if self.shape else "")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.renorm is not None:
            scale, shift = self.renorm
            x = x * scale.to(x.device, x.dtype) + shift.to(x.device, x.dtype)
        if self.shape is not None and tuple(x.shape[2:]) != self.shape:
            x = F.interpolate(x, size=self.shape, mode="trilinear", align_corners=False)
        return self.model(x)


def load_teacher(
    path: str | Path,
    *,
    network: str | None,
    labels: dict[str, int],
    num_classes: int,
    clip: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    resize_always: bool,
    device: torch.device,
) -> Teacher:
    """Load the teacher through the one weight door, check that it predicts the student's classes in the
    same order, and freeze it.

    Args:
        path: the teacher's file (a vidnet checkpoint, or weights with ``network``).
        network: its registered name, for files that do not name it.
        labels: the student's label map.
        num_classes: the student's classes.
        clip: the student's (frames, height, width).
        mean, std: the student's normalisation.
        resize_always: resize to the teacher's clip shape even when the student's base shape equals it
            (multigrid changes the student's shape every step).
        device: where it runs.

    Raises:
        UsageError: missing file, other classes, unknown network; CheckpointError: unreadable or refused file.
    """
    from vidnet.network.finetune import find_head
    from vidnet.network.weights import load_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--teacher {path}: checkpoint not found")
    try:
        loaded = load_model(path, network=network)
    except UsageError as err:
        raise UsageError(f"--teacher: {err}") from None
    teacher, name, t_labels = loaded.model, loaded.network, loaded.labels
    if t_labels and labels and t_labels != labels:
        diff = sorted(set(t_labels.items()) ^ set(labels.items()))[:3]
        raise UsageError(f"--teacher {path}: its label map ({len(t_labels)} classes) differs from the dataset's "
                         f"({len(labels)} classes), e.g. {diff}")
    try:
        t_classes = find_head(teacher)[1].out_features
    except UsageError:
        t_classes = None
    if t_classes is not None and t_classes != num_classes:
        raise UsageError(f"--teacher {path}: {name} predicts {t_classes} classes, the dataset has {num_classes}")
    if not t_labels:
        log.warning(f"--teacher {path} records no label map: its class order is assumed to be the dataset's")
    teacher.eval().requires_grad_(False).to(device)
    pre: dict[str, Any] = loaded.meta.get("preprocessing") or {}
    shape = None
    if pre.get("clip_length") and pre.get("clip_size"):
        shape = (int(pre["clip_length"]), *(int(v) for v in pre["clip_size"]))
        if shape == tuple(clip) and not resize_always:
            shape = None  # same clips as the student's: nothing to resize
    renorm = None
    if pre.get("mean") and pre.get("std") and (tuple(pre["mean"]), tuple(pre["std"])) != (tuple(mean), tuple(std)):
        # student input x = (p - m) / s; the teacher wants (p - tm) / ts = x * s / ts + (m - tm) / ts
        m, s_, tm, ts = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1, 1)
                         for v in (mean, std, pre["mean"], pre["std"]))
        renorm = (s_ / ts, (m - tm) / ts)
    return Teacher(teacher, shape, renorm)
