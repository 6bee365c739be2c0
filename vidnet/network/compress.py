"""Model compression: structured channel pruning, magnitude sparsity, int8 quantization, distillation loss.

Structured pruning (:func:`prune_channels`) removes whole output channels of a convolution and the matching
input channels of the convolution that consumes them, so the result is an ordinary, smaller dense model
(fewer parameters and MACs, a faster forward on any backend), not a mask. Which channels may go is decided
on the model's dataflow graph (``torch.fx``), and only *inner* channels are touched: a channel set qualifies
when a producer convolution feeds exactly one consumer convolution through nothing but per-channel ops
(batch norm, activations, dropout, depthwise convolutions). Those channels never reach a residual addition,
a concatenation, a channel shuffle or a gate, so the dependency problems of residual sums and grouped
convolutions cannot arise: the bottleneck middle of a ResNet block, the expansion of an inverted residual,
the pointwise/depthwise pairs of MobileNet v1 and the Fire squeeze are pruned; block outputs (tied across
a stage by the residual sums) are kept. Filters are ranked by the L1 norm of their weights (Li et al.,
"Pruning Filters for Efficient ConvNets", arXiv 1608.08710). A model (or a block) that fx cannot trace is
searched block by block.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidnet.errors import UsageError

__all__ = [
    "PrunableChain",
    "apply_channel_spec",
    "channel_spec",
    "find_prunable_chains",
    "magnitude_prune",
    "model_size_bytes",
    "prune_channels",
    "quantize_dynamic_int8",
    "quantize_static_int8",
    "recalibrate_batchnorm",
    "sparsity",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ANY_NORM = nn.modules.batchnorm._BatchNorm  # SyncBatchNorm too (training runs on several GPUs convert to it)
# Modules and functions that act on each channel independently and hold no per-channel state.
_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
                 nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                 nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_PASS_FUNCTIONS = {F.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.leaky_relu, F.elu, F.dropout, torch.relu,
                   torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.max_pool1d, F.max_pool2d, F.max_pool3d,
                   F.avg_pool1d, F.avg_pool2d, F.avg_pool3d}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh"}


@dataclass(frozen=True)
class PrunableChain:
    """A channel set that can be removed: ``producer`` -> per-channel modules -> ``consumers``.

    Attributes:
        producer: qualified name of the ungrouped convolution whose output channels are pruned.
        passthrough: qualified names of the batch norms and depthwise convolutions in between.
        consumers: qualified names of the ungrouped convolutions whose input channels are pruned (several
            when the set feeds parallel branches, as the squeeze of a SqueezeNet Fire module does).
        channels: number of channels in the set.
    """

    producer: str
    passthrough: tuple[str, ...]
    consumers: tuple[str, ...]
    channels: int


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and m.groups == m.in_channels == m.out_channels and m.groups > 1


def _is_plain_conv(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and m.groups == 1


def _trace(module: nn.Module):
    import torch.fx

    class _Tracer(torch.fx.Tracer):
        # Subclasses of the known layers (e.g. a max-pool that pads short clips) stay leaves, so their
        # shape-dependent forward does not stop the trace of the block around them.
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, (*_CONV, *_NORM, *_PASS_MODULES)) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(module)
        return torch.fx.GraphModule(module, graph)
    except Exception:  # data-dependent control flow, unsupported ops: search the children instead
        return None


def _sole_input(node, prev) -> bool:
    # The channel set must enter the op as its first argument and nowhere else (no add/cat/mul partner).
    rest = list(node.args[1:]) + list(node.kwargs.values())
    return bool(node.args) and node.args[0] is prev and not any(a is prev for a in rest)


def _chains_in_graph(gm, prefix: str, root: nn.Module) -> list[PrunableChain]:
    def module_of(node) -> nn.Module | None:
        return root.get_submodule(prefix + node.target) if node.op == "call_module" else None

    chains = []
    for node in gm.graph.nodes:
        producer = module_of(node)
        if producer is None or not _is_plain_conv(producer):
            continue
        through: list[str] = []
        consumers: list[str] = []
        cur = node
        while True:
            users = list(cur.users)
            if not users or not all(_sole_input(u, cur) for u in users):
                break
            mods = [module_of(u) for u in users]
            if all(m is not None and _is_plain_conv(m) and type(m) is type(producer) for m in mods):
                consumers = [prefix + u.target for u in users]
                break
            if len(users) != 1:
                break
            nxt, mod = users[0], mods[0]
            if mod is not None:
                if isinstance(mod, _NORM) or _is_depthwise(mod):
                    through.append(prefix + nxt.target)
                elif not isinstance(mod, _PASS_MODULES):
                    break
            elif not ((nxt.op == "call_function" and nxt.target in _PASS_FUNCTIONS)
                      or (nxt.op == "call_method" and nxt.target in _PASS_METHODS)):
                break
            cur = nxt
        if consumers and prefix + node.target not in consumers:
            chains.append(PrunableChain(prefix + node.target, tuple(through), tuple(consumers),
                                        producer.out_channels))
    return chains


def find_prunable_chains(model: nn.Module) -> list[PrunableChain]:
    """Every inner channel set of ``model`` that :func:`prune_channels` may shrink (see the module docstring)."""
    chains: list[PrunableChain] = []

    def visit(module: nn.Module, prefix: str) -> None:
        gm = _trace(module)
        if gm is not None:
            chains.extend(_chains_in_graph(gm, prefix, model))
            return
        for name, child in module.named_children():
            visit(child, f"{prefix}{name}.")

    visit(model, "")
    # A convolution may be the consumer of one set and the producer of the next (MobileNet's pointwise
    # convs), but a module used twice in the same role (a shared module) would be sliced twice: skip it.
    producers: set[str] = set()
    consumers: set[str] = set()
    passthrough: set[str] = set()
    unique = []
    for c in chains:
        if (c.producer in producers | passthrough or consumers & set(c.consumers)
                or passthrough & set(c.passthrough)):
            continue
        producers.add(c.producer)
        consumers.update(c.consumers)
        passthrough.update(c.passthrough)
        unique.append(c)
    return unique


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    new.train(getattr(parent, attr).training)  # a fresh module starts in train mode; keep the model's
    setattr(parent, attr, new)


def _conv_like(old: nn.Module, in_channels: int, out_channels: int, groups: int) -> nn.Module:
    return type(old)(in_channels, out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                     dilation=old.dilation, groups=groups, bias=old.bias is not None,
                     padding_mode=old.padding_mode, device=old.weight.device, dtype=old.weight.dtype)


@torch.no_grad()
def _apply(model: nn.Module, chain: PrunableChain, keep: torch.Tensor) -> None:
    n = len(keep)
    prod = model.get_submodule(chain.producer)
    new = _conv_like(prod, prod.in_channels, n, 1)
    new.weight.copy_(prod.weight[keep])
    if prod.bias is not None:
        new.bias.copy_(prod.bias[keep])
    _replace(model, chain.producer, new)
    for name in chain.passthrough:
        mod = model.get_submodule(name)
        if isinstance(mod, _NORM):
            bn = type(mod)(n, eps=mod.eps, momentum=mod.momentum, affine=mod.affine,
                           track_running_stats=mod.track_running_stats,
                           device=keep.device if mod.weight is None else mod.weight.device)
            if mod.affine:
                bn.weight.copy_(mod.weight[keep])
                bn.bias.copy_(mod.bias[keep])
            if mod.track_running_stats:
                bn.running_mean.copy_(mod.running_mean[keep])
                bn.running_var.copy_(mod.running_var[keep])
                bn.num_batches_tracked.copy_(mod.num_batches_tracked)
            _replace(model, name, bn)
        else:  # depthwise convolution: one filter per channel
            dw = _conv_like(mod, n, n, n)
            dw.weight.copy_(mod.weight[keep])
            if mod.bias is not None:
                dw.bias.copy_(mod.bias[keep])
            _replace(model, name, dw)
    for name in chain.consumers:
        cons = model.get_submodule(name)
        new = _conv_like(cons, n, cons.out_channels, 1)
        new.weight.copy_(cons.weight[:, keep])
        if cons.bias is not None:
            new.bias.copy_(cons.bias)
        _replace(model, name, new)


def prune_channels(
    model: nn.Module, ratio: float, *, min_channels: int = 1, divisor: int = 1, inplace: bool = False
) -> tuple[nn.Module, list[PrunableChain]]:
    """Remove the ``ratio`` fraction of lowest-L1 filters from every inner channel set.

    Args:
        model: the network (copied unless ``inplace``).
        ratio: fraction of each set's channels to remove, in [0, 1).
        min_channels: never keep fewer channels than this in a set.
        divisor: round the kept count to a multiple of this (e.g. 8 for tensor-core friendly widths).
        inplace: prune ``model`` itself.

    Returns:
        The pruned model (same class, same output shape) and the chains it shrank.

    Raises:
        UsageError: ``ratio`` is outside [0, 1).
    """
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"prune ratio must be in [0, 1), got {ratio}")
    if not inplace:
        model = copy.deepcopy(model)
    chains = find_prunable_chains(model)
    for chain in chains:
        prod = model.get_submodule(chain.producer)
        keep_n = max(min_channels, round(chain.channels * (1.0 - ratio)))
        if divisor > 1:
            keep_n = max(divisor, int(keep_n + divisor / 2) // divisor * divisor)
        keep_n = min(keep_n, chain.channels)
        if keep_n == chain.channels:
            continue
        scores = prod.weight.detach().abs().flatten(1).sum(1)
        keep = torch.topk(scores, keep_n).indices.sort().values
        _apply(model, chain, keep)
    return model, chains


def _prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (*_CONV, nn.Linear))]


def magnitude_prune(model: nn.Module, amount: float, *, inplace: bool = False) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-magnitude conv/linear weights, globally (unstructured).

    Uses :func:`torch.nn.utils.prune.global_unstructured` with L1 ranking and then makes the zeros permanent
    (``prune.remove``), so the result is a plain model with sparse-valued dense tensors: the same size and
    speed on dense kernels; this is for sparsity/accuracy studies, not a speed-up.

    Args:
        model: the network (copied unless ``inplace``).
        amount: fraction of the weights to zero, in [0, 1).
        inplace: prune ``model`` itself.
    """
    import torch.nn.utils.prune as prune

    if not 0.0 <= amount < 1.0:
        raise UsageError(f"sparsity must be in [0, 1), got {amount}")
    if not inplace:
        model = copy.deepcopy(model)
    params = _prunable_weights(model)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero values among the conv and linear weights."""
    total = zeros = 0
    for module, name in _prunable_weights(model):
        w = getattr(module, name)
        total += w.numel()
        zeros += int((w == 0).sum())
    return zeros / max(total, 1)


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Post-training dynamic int8 quantization of Linear, LSTM and GRU layers (CPU inference only).

    Weights are stored as int8, activations are quantized on the fly per batch; convolutions stay float,
    so this pays off for the recurrent/linear-heavy models (CRNN, C3D's fc layers) and little elsewhere.
    Uses ``torch.ao.quantization.quantize_dynamic`` on a copy in eval mode.
    """
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model).eval().cpu(), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)


def quantize_static_int8(model: nn.Module, calibration: Iterable[torch.Tensor], *, backend: str = "x86") -> nn.Module:
    """Post-training static int8 quantization (convolutions included) with FX graph mode.

    Observers are inserted by ``prepare_fx``, the calibration clips are run through, and ``convert_fx``
    replaces conv-bn-relu patterns with int8 kernels (``quantized::conv3d`` exists in the x86/fbgemm
    backend). Needs an fx-traceable model.

    Args:
        model: the float network.
        calibration: input batches for the activation observers (a few dozen clips is typical).
        backend: quantized engine (``x86``, ``fbgemm``, ``qnnpack``, ``onednn``).

    Raises:
        UsageError: the backend is not available or the model cannot be traced.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if backend not in torch.backends.quantized.supported_engines:
        raise UsageError(f"quantization backend {backend!r} is not available "
                         f"(have: {', '.join(torch.backends.quantized.supported_engines)})")
    torch.backends.quantized.engine = backend
    float_model = copy.deepcopy(model).eval().cpu()
    batches = list(calibration)
    if not batches:
        raise UsageError("static quantization needs at least one calibration batch")
    try:
        prepared = prepare_fx(float_model, get_default_qconfig_mapping(backend), example_inputs=(batches[0],))
    except Exception as err:
        raise UsageError(f"static quantization: {type(model).__name__} cannot be traced by torch.fx ({err})") from err
    with torch.no_grad():
        for x in batches:
            prepared(x)
    return convert_fx(prepared)


def model_size_bytes(model: nn.Module) -> int:
    """Size of the serialized ``state_dict`` (what ``torch.save`` writes), in bytes."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def channel_spec(model: nn.Module) -> dict[str, list[int]]:
    """The channel counts of every convolution (``[in, out, groups]``) and batch norm (``[features]``).

    This is what distinguishes a structurally pruned model from its registry build (pruning changes nothing
    else), so a checkpoint that carries it next to the network name can be rebuilt with
    :func:`apply_channel_spec` and then loaded strictly.
    """
    spec: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, _CONV):
            spec[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, _ANY_NORM):
            spec[name] = [m.num_features]
    return spec


def apply_channel_spec(model: nn.Module, spec: dict[str, list[int]]) -> nn.Module:
    """Resize ``model``'s convolutions and batch norms to the counts of :func:`channel_spec`, in place.

    Resized layers are freshly initialised (load the pruned weights afterwards); layers whose counts already
    match are left alone, so a spec of an unpruned model is a no-op.

    Raises:
        UsageError: the spec names a layer the model lacks or of another kind (a spec of another network).
    """
    for name, counts in spec.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise UsageError(f"architecture names layer {name!r}, which {type(model).__name__} lacks") from None
        if isinstance(old, _CONV) and len(counts) == 3:
            if [old.in_channels, old.out_channels, old.groups] != list(counts):
                _replace(model, name, _conv_like(old, counts[0], counts[1], counts[2]))
        elif isinstance(old, _ANY_NORM) and len(counts) == 1:
            if old.num_features != counts[0]:
                new = type(old)(counts[0], eps=old.eps, momentum=old.momentum, affine=old.affine,
                                track_running_stats=old.track_running_stats)
                _replace(model, name, new)
        else:
            raise UsageError(f"architecture entry {name!r} {counts} does not fit its {type(old).__name__}")
    return model



@dataclass(frozen=True)
class VariantRow:
    """One row of the compression report.

    Attributes:
        variant: e.g. ``base``, ``prune 0.50``, ``sparse 0.90``, ``int8 dynamic``, ``int8 static``.
        params: parameter count (packed int8 weights included).
        macs: multiply-accumulates per clip of the float graph (int8 variants repeat their float model's
            count: FlopCounter does not see quantized kernels, and the arithmetic is the same, in int8).
        size_bytes: serialized state_dict size.
        latency: CPU forward latency at batch 1.
        accuracy: top-1 on the evaluation split, or ``None`` without a dataset.
        sparsity: fraction of zero conv/linear weights.
        max_abs_diff: largest logit difference from the base model on a fixed random clip.
        rel_diff: ``max_abs_diff`` divided by the base model's largest absolute logit on that clip.
    """

    variant: str
    params: int
    macs: int
    size_bytes: int
    latency_ms: float
    latency_iqr_ms: float
    accuracy: float | None
    sparsity: float
    max_abs_diff: float
    rel_diff: float


def compare_variants(
    variants: dict[str, tuple[nn.Module, int | None]],
    *,
    clip: tuple[int, int, int],
    repeats: int = 5,
    warmup: int = 2,
    evaluate=None,
    seed: int = 0,
) -> list[VariantRow]:
    """Measure each variant on the CPU: size, cost, latency, output drift from the first variant, accuracy.

    Args:
        variants: ordered ``name -> (model, macs or None to count)``; the first is the reference.
        clip: frames, height, width of the latency/drift input (batch 1).
        repeats: timed forward passes per variant.
        warmup: untimed passes before them.
        evaluate: optional ``evaluate(model) -> top-1 accuracy``.
        seed: seed of the fixed drift input.
    """
    from vidnet.network.cost import count_macs
    from vidnet.network.profile import _quartiles, count_params, measure_latency

    g = torch.Generator().manual_seed(seed)
    x = torch.randn((1, 3, *clip), generator=g)
    models = {name: model.cpu().eval() for name, (model, _) in variants.items()}
    # Timed round-robin (one pass of each variant per round, alternating direction) after a warm-up of each, so
    # that load changes on a shared machine and one-off kernel setup hit every variant alike.
    for model in models.values():
        measure_latency(model, x, repeats=1, warmup=warmup)
    samples: dict[str, list[float]] = {name: [] for name in models}
    order = list(models.items())
    for i in range(repeats):
        # Alternate the order of the rounds: the first pass after the Python bookkeeping between rounds ran
        # measurably slower on a shared machine (the base looked 1.5x slower than it was, always first).
        for name, model in order if i % 2 == 0 else order[::-1]:
            samples[name].append(measure_latency(model, x, repeats=1, warmup=0).median_ms)
    rows: list[VariantRow] = []
    reference = None
    for name, (_, macs) in variants.items():
        model = models[name]
        with torch.no_grad():
            out = model(x).float()
        if reference is None:
            reference = out
        if macs is None:
            macs = count_macs(model, clip)
        q1, med, q3 = _quartiles(samples[name])
        rows.append(VariantRow(
            variant=name, params=count_params(model), macs=macs, size_bytes=model_size_bytes(model),
            latency_ms=med, latency_iqr_ms=q3 - q1,
            accuracy=evaluate(model) if evaluate is not None else None,
            sparsity=sparsity(model) if _prunable_weights(model) else 0.0,
            max_abs_diff=float((out - reference).abs().max()),
            rel_diff=float((out - reference).abs().max() / reference.abs().max().clamp_min(1e-30)),
        ))
    return rows


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, clips: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimate every batch norm's running statistics from ``clips`` (cumulative average), in place.

    Freshly initialised zoo models keep running statistics of 0/1, which in eval mode lets activations drift
    by orders of magnitude through dozens of layers; the resulting near-zero logits make output-drift and
    quantization comparisons meaningless. Recalibrating on a few clips gives a normalised (still untrained)
    network. Used by ``vidnet compress`` when no checkpoint is given.
    """
    norms = [m for m in model.modules() if isinstance(m, _NORM)]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x in clips:
            model(x)
    finally:
        for m, (momentum, training) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.train(training)
    return model
