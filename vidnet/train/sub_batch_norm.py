"""Sub-batch BatchNorm: batch statistics over fixed-size groups of a larger mini-batch (multigrid training).

Multigrid (Wu et al., arXiv 1912.00998) multiplies the per-GPU batch by up to 32 at the coarse shapes. BatchNorm
statistics over such a batch are far less noisy than over the base batch B, and the network then meets
base-shape statistics only in the short base-shape stretches and at evaluation. The paper therefore computes
the statistics over sub-batches of a fixed size; with ``sub_batch = B`` every multigrid shape normalises like
the base shape.

`SubBatchNorm3d` is a `torch.nn.BatchNorm3d` (same parameters, buffers and state-dict keys, so checkpoints
and reference layouts load unchanged, and ``isinstance(m, nn.BatchNorm3d)`` still holds) whose training
forward splits a batch of N > ``sub_batch`` clips into consecutive groups of ``sub_batch`` and normalises each
group with its own mean and variance. The running statistics take one update per forward from the mean over
groups of the group means and of the group (unbiased) variances: the quantities plain BN's running
statistics estimate at batch ``sub_batch``. (PySlowFast's ``SubBatchNorm3d`` adds the variance between group
means, i.e. estimates the full-batch variance; we keep the base shape's estimate, which is what the
network is normalised with during training.) Evaluation uses the running statistics exactly as
``BatchNorm3d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidnet.errors import UsageError

__all__ = ["SubBatchNorm3d", "convert_sub_batch_norm", "set_sub_batch", "resolve_sub_batch"]


class SubBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d whose training statistics are computed over groups of ``sub_batch`` clips.

    Args:
        num_features: Channels C of the ``[N, C, T, H, W]`` input.
        sub_batch: Clips per statistics group; None (or N <= sub_batch) behaves exactly as ``BatchNorm3d``.
            A batch that is not a multiple of it ends with one smaller group.
        eps, momentum, affine, track_running_stats: As ``BatchNorm3d``.
    """

    def __init__(
        self,
        num_features: int,
        *,
        sub_batch: int | None = None,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)
        self.sub_batch = sub_batch

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sub_batch={self.sub_batch}"

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` [N, C, T, H, W]; per ``sub_batch`` group in training, by running statistics in eval."""
        self._check_input_dim(x)
        k = self.sub_batch
        n = x.shape[0]
        if not self.training or k is None or n <= k:
            return super().forward(x)
        c = self.num_features
        # Scratch buffers receive each group's batch statistics (F.batch_norm with momentum 1 overwrites them);
        # fp32 like the running statistics, also under autocast.
        stat = {"device": x.device, "dtype": self.weight.dtype if self.weight is not None else torch.float32}
        sizes = [k] * (n // k) + ([n % k] if n % k else [])
        if len(set(sizes)) == 1:
            # One batch_norm call over all groups: group g's channels become channels g*C .. g*C + C - 1.
            g = len(sizes)
            spatial = x.shape[2:]
            xs = x.reshape(g, k, c, *spatial).transpose(0, 1).reshape(k, g * c, *spatial)
            means, vars_ = torch.zeros(g * c, **stat), torch.ones(g * c, **stat)
            y = F.batch_norm(xs, means, vars_, self.weight.repeat(g) if self.weight is not None else None,
                             self.bias.repeat(g) if self.bias is not None else None, True, 1.0, self.eps)
            y = y.reshape(k, g, c, *spatial).transpose(0, 1).reshape(x.shape)
            group_mean, group_var = means.view(g, c).mean(0), vars_.view(g, c).mean(0)
        else:
            outs, ms, vs = [], [], []
            for part in torch.split(x, sizes):
                m, v = torch.zeros(c, **stat), torch.ones(c, **stat)
                outs.append(F.batch_norm(part, m, v, self.weight, self.bias, True, 1.0, self.eps))
                ms.append(m * part.shape[0])
                vs.append(v * part.shape[0])
            y = torch.cat(outs)
            group_mean, group_var = torch.stack(ms).sum(0) / n, torch.stack(vs).sum(0) / n
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(group_mean, group_var)
        return y

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor) -> None:
        # BatchNorm's own rule: exponential average with `momentum`, or a cumulative average when it is None.
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)


def convert_sub_batch_norm(module: nn.Module, sub_batch: int | None) -> nn.Module:
    """Replace every ``BatchNorm3d`` in ``module`` by a `SubBatchNorm3d` sharing its parameters and buffers.

    Args:
        module: A model (converted in place) or a single ``BatchNorm3d`` (returned converted).
        sub_batch: Clips per statistics group (the multigrid base batch B).

    Returns:
        The converted module. Parameters keep their identity, so an optimizer built before still holds them;
        ``SyncBatchNorm`` and 2D/1D norms are left alone.
    """
    if type(module) is nn.BatchNorm3d:
        new = SubBatchNorm3d(module.num_features, sub_batch=sub_batch, eps=module.eps, momentum=module.momentum,
                             affine=module.affine, track_running_stats=module.track_running_stats)
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_sub_batch_norm(child, sub_batch)
        if converted is not child:
            setattr(module, name, converted)
    return module


def set_sub_batch(module: nn.Module, sub_batch: int | None) -> int:
    """Set the group size of every `SubBatchNorm3d` in ``module``; returns how many there are."""
    count = 0
    for m in module.modules():
        if isinstance(m, SubBatchNorm3d):
            m.sub_batch = sub_batch
            count += 1
    return count


def resolve_sub_batch(setting: str, *, base_batch: int, multigrid: bool, sync_bn: bool) -> int | None:
    """The ``--bn-sub-batch`` group size of a run, or None for plain BatchNorm.

    Args:
        setting: ``auto``, ``off`` or a number of clips.
        base_batch: The per-process ``--batch-size`` (multigrid's base batch B).
        multigrid: Whether the long or short cycle runs (the batch grows beyond B).
        sync_bn: Whether SyncBatchNorm is on; its statistics span processes, so sub-batches do not apply.
    """
    if setting == "off":
        return None
    if setting == "auto":
        return base_batch if multigrid and not sync_bn else None
    if sync_bn:
        raise UsageError(f"--bn-sub-batch {setting}: not with SyncBatchNorm (--no-sync-bn, or --bn-sub-batch off)")
    return int(setting)
