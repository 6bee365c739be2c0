"""Model cost: parameters, multiply-accumulates, latency, peak memory and throughput.

MACs come from :mod:`vidnet.network.cost` (the same count as ``vidnet models``): FlopCounterMode's FLOPs / 2
for convolutions and matrix products, nothing for batch norm, activations and pooling; registered models
are counted on the ``meta`` device. The published Efficient-3DCNNs "MFLOPs" (``PUBLISHED``) come from the
authors' bundled thop and are MAC-like counts, not 2 x MACs (thop also counts batch norm, so they sit 2-13 %
above FlopCounterMode's MACs), which is why they sit next to our MACs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn as nn

from vidnet.errors import UsageError
from vidnet.network.cost import count_macs, count_parameters, model_cost

__all__ = [
    "PUBLISHED",
    "PUBLISHED_K400",
    "PaperFigures",
    "ProfileResult",
    "Timing",
    "count_params",
    "measure_latency",
    "peak_memory",
    "profile_model",
]

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Köpüklü et al. ICCVW 2019 Table 8 (okankop/Efficient-3DCNNs, utils/results.png): (MFLOPs as published, params as
# published), 16x112x112 input and 600 classes. Keyed by vidnet model name.
PUBLISHED: dict[str, tuple[float, float]] = {
    "shufflenet_3d_050": (78, 0.55e6),
    "shufflenetv2_3d_025": (116, 0.83e6),
    "mobilenet_3d_050": (98, 1.17e6),
    "mobilenetv2_3d_020": (63, 0.96e6),
    "shufflenet_3d": (199, 1.52e6),
    "shufflenetv2_3d": (195, 1.91e6),
    "mobilenet_3d": (241, 3.91e6),
    "mobilenetv2_3d_045": (177, 1.40e6),
    "shufflenet_3d_150": (347, 2.92e6),
    "shufflenetv2_3d_150": (291, 3.16e6),
    "mobilenet_3d_150": (429, 8.22e6),
    "mobilenetv2_3d_070": (325, 2.05e6),
    "shufflenet_3d_200": (538, 4.76e6),
    "shufflenetv2_3d_200": (438, 6.64e6),
    "mobilenet_3d_200": (662, 14.10e6),
    "mobilenetv2_3d": (561, 3.12e6),
    "squeezenet1_1_3d": (926, 2.15e6),
}
PUBLISHED_NUM_CLASSES = 600


@dataclass(frozen=True)
class PaperFigures:
    """Published Kinetics-400 figures of one model, as its model zoo prints them.

    Attributes:
        gflops: GFLOPs of one view as published. FAIR's zoos count a multiply-add as one FLOP (fvcore), so this
            compares with our GMACs at ``clip``; their count also includes some elementwise work (X3D's SE and
            swish), ours only convolutions and matrix products.
        views: test views, temporal clips x spatial crops (e.g. ``10x3``).
        params: parameters as published.
        top1: Kinetics-400 top-1 accuracy (%).
        clip: frames, height, width of one test view.
        source: where the figures are printed.
    """

    gflops: float
    views: str
    params: float
    top1: float
    clip: tuple[int, int, int]
    source: str


_PTV_ZOO = "PyTorchVideo model zoo (docs/source/model_zoo.md)"
PUBLISHED_K400: dict[str, PaperFigures] = {
    "x3d_xs": PaperFigures(0.91, "10x3", 3.79e6, 69.12, (4, 182, 182), _PTV_ZOO),
    "x3d_s": PaperFigures(2.96, "10x3", 3.79e6, 73.33, (13, 182, 182), _PTV_ZOO),
    "x3d_m": PaperFigures(6.72, "10x3", 3.79e6, 75.94, (16, 256, 256), _PTV_ZOO),
    "x3d_l": PaperFigures(26.64, "10x3", 6.15e6, 77.44, (16, 356, 356), _PTV_ZOO),
    "slowfast_r50_4x16": PaperFigures(36.69, "10x3", 34.48e6, 75.34, (32, 256, 256), _PTV_ZOO),
    "slowfast_r50_8x8": PaperFigures(65.71, "10x3", 34.57e6, 76.94, (32, 256, 256), _PTV_ZOO),
    "slowfast_r101_8x8": PaperFigures(127.20, "10x3", 62.83e6, 77.90, (32, 256, 256), _PTV_ZOO),
    "mvit_v2_s": PaperFigures(64.0, "5x1", 34.5e6, 81.0, (16, 224, 224),
                              "PySlowFast projects/mvitv2/README.md (torchvision mvit_v2_s: 80.757 %)"),
    # torchvision's "GFLOPS" are MACs at 16x112x112 (its r3d_18/r2plus1d_18 lack vidnet's stem max-pool, so only
    # mc3_18, built as torchvision builds it, is listed).
    "mc3_18": PaperFigures(43.343, "5x1", 11_695_440, 63.96, (16, 112, 112),
                           "torchvision MC3_18_Weights.KINETICS400_V1"),
}
"""Published Kinetics-400 figures of the 2026 model line, keyed by vidnet name (tests check the parameters)."""


def count_params(model: nn.Module) -> int:
    """:func:`vidnet.network.cost.count_parameters` plus the packed weights of quantized modules."""
    n = count_parameters(model)
    for m in model.modules():
        # Quantized layers keep their weights packed, outside parameters(); `_weight_bias` unpacks them.
        # Quantized Linear wraps a packed-params child that has `_weight_bias` too: count the innermost only.
        if hasattr(m, "_weight_bias") and not any(hasattr(c, "_weight_bias") for c in m.children()):
            w, b = m._weight_bias()
            n += w.numel() + (b.numel() if b is not None else 0)
    return n


@dataclass(frozen=True)
class Timing:
    """Latency statistics over repeats, in milliseconds: median and the interquartile range."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: Precision):
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


def measure_latency(
    model: nn.Module,
    x: torch.Tensor,
    *,
    backward: bool = False,
    repeats: int = 10,
    warmup: int = 2,
    precision: Precision = "fp32",
) -> Timing:
    """Wall-clock latency of a forward pass (or forward + backward) after ``warmup`` untimed runs.

    On CUDA the device is synchronised before starting and after finishing each timed run, so the time covers
    the kernels and not just their launch. The model is in eval mode for both (batch norm uses its running
    statistics, so batch 1 and 1x1x1 maps work; the arithmetic equals train mode's up to the statistics): the
    forward is timed under ``no_grad``, forward + backward (no optimizer step) on the sum of the outputs.

    Args:
        model: the network, already on the device of ``x``.
        x: input batch.
        backward: time forward + backward instead of forward only.
        repeats: timed runs.
        warmup: untimed runs first (cuDNN autotuning, allocator warm-up, lazy init).
        precision: ``fp32`` or autocast to ``bf16``/``fp16``.
    """
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}")
    device = x.device
    was_training = model.training
    model.eval()

    def step() -> None:
        if backward:
            with _autocast(device, precision):
                out = model(x)
            out.float().sum().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), _autocast(device, precision):
                model(x)

    samples: list[float] = []
    try:
        for _ in range(warmup):
            step()
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            samples.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    q1, q2, q3 = _quartiles(samples)
    return Timing(q2, q1, q3, repeats)


def _malloc_trim() -> None:
    # glibc keeps freed heap pages resident; returning them first lets the RSS rise show the pass's own peak.
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def _rss_sampler(interval_s: float = 0.0005) -> Iterator[dict]:
    # Resident set size is sampled from a thread because the process-wide high-water mark (ru_maxrss) never
    # goes down, so it cannot isolate one pass after the model (or an earlier pass) has been built.
    state = {"base": _rss_bytes(), "peak": 0, "stop": False}
    state["peak"] = state["base"]

    def run() -> None:
        while not state["stop"]:
            state["peak"] = max(state["peak"], _rss_bytes())
            time.sleep(interval_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state["stop"] = True
        thread.join()
        state["peak"] = max(state["peak"], _rss_bytes())


def peak_memory(
    model: nn.Module, x: torch.Tensor, *, backward: bool = False, precision: Precision = "fp32"
) -> tuple[int, str]:
    """Peak memory of one pass beyond what was held before it (weights excluded), in bytes, and the method.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the pass (exact tensor memory).
    CPU: the rise of the process's resident set size, sampled every 0.5 ms from a thread during the pass; an
    estimate, reported as ``rss``: freed heap pages are handed back to the OS first (glibc ``malloc_trim``) so
    that earlier passes' pages do not hide the rise, but short peaks between samples can be missed and other
    threads' allocations are included.
    """
    device = x.device
    was_training = model.training
    model.eval()
    grad = torch.enable_grad() if backward else torch.no_grad()
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            with grad, _autocast(device, precision):
                out = model(x)
            if backward:
                out.float().sum().backward()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            method = "cuda_max_allocated"
        else:
            _malloc_trim()
            with _rss_sampler() as state:
                with grad, _autocast(device, precision):
                    out = model(x)
                if backward:
                    out.float().sum().backward()
            peak = state["peak"] - state["base"]
            method = "rss"
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return max(0, peak), method


@dataclass(frozen=True)
class ProfileResult:
    """One row of ``vidnet profile``.

    Attributes:
        network: model name (or a label for an unregistered model).
        params: parameter count.
        macs: multiply-accumulates per clip (FLOPs = 2 x MACs).
        clip: frames, height, width.
        batch: clips per timed batch.
        device: ``cpu`` or ``cuda[:i]``.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        forward: forward latency of the batch.
        forward_backward: forward + backward latency of the batch (``None`` when not measured).
        memory_per_clip: peak forward memory per clip in bytes (train-mode forward + backward when measured).
        memory_method: ``cuda_max_allocated`` or ``rss`` (see :func:`peak_memory`).
        clips_per_s: ``batch / forward.median``.
        frames_per_s: ``clips_per_s x frames``.
        published_mflops: the Efficient-3DCNNs table's MFLOPs (600 classes) when the model is in it.
        published_params: the table's parameter count.
        macs_600: our MACs at 600 classes, comparable with ``published_mflops`` (None when not in the table).
        params_600: our parameters at 600 classes.
        paper: published Kinetics-400 figures (:data:`PUBLISHED_K400`) when the model has them.
        macs_paper_clip: our MACs at 400 classes for one view of ``paper.clip``, comparable with ``paper.gflops``.
        params_400: our parameters at 400 classes, comparable with ``paper.params``.
    """

    network: str
    params: int
    macs: int
    clip: tuple[int, int, int]
    batch: int
    device: str
    precision: str
    forward: Timing
    forward_backward: Timing | None
    memory_per_clip: int
    memory_method: str
    clips_per_s: float
    frames_per_s: float
    published_mflops: float | None = None
    published_params: float | None = None
    macs_600: int | None = None
    params_600: int | None = None
    paper: PaperFigures | None = None
    macs_paper_clip: int | None = None
    params_400: int | None = None

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict:
        """JSON-ready dict (timings flattened to milliseconds, the FLOPs convention spelled out)."""
        d = asdict(self)
        d["gmacs"] = self.gmacs
        d["gflops"] = 2 * self.gmacs
        d["clip"] = list(self.clip)
        d["forward"]["iqr_ms"] = self.forward.iqr_ms
        if self.forward_backward is not None:
            d["forward_backward"]["iqr_ms"] = self.forward_backward.iqr_ms
        return d


def _resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    return dev


def profile_model(
    network: str | nn.Module,
    *,
    clip: tuple[int, int, int] = (16, 112, 112),
    batch: int = 1,
    device: str = "cpu",
    precision: Precision = "fp32",
    repeats: int = 10,
    warmup: int = 2,
    backward: bool = True,
    num_classes: int = 400,
    label: str | None = None,
    **options,
) -> ProfileResult:
    """Profile a registered model (by name) or a given module.

    Args:
        network: registered name, or a module (e.g. a pruned model).
        clip: frames, height, width.
        batch: clips per batch for the timings and memory.
        device: ``cpu`` or ``cuda``.
        precision: ``fp32`` or autocast ``bf16``/``fp16``.
        repeats: timed runs per measurement.
        warmup: untimed runs before them.
        backward: also time forward + backward and measure its memory.
        num_classes: classifier size for a named model.
        label: name shown for a module.
        **options: builder options for a named model (e.g. ``width_mult=0.5``).
    """
    from vidnet.network import create_model

    if precision not in _DTYPES:
        raise UsageError(f"--precision must be one of {', '.join(_DTYPES)}, got {precision!r}")
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    dev = _resolve_device(device)
    shape = (batch, 3, *clip)
    published = macs_600 = params_600 = None
    paper = macs_paper_clip = params_400 = None
    if isinstance(network, str):
        from vidnet.network import model_info

        name = model_info(network).name
        _, macs = model_cost(name, num_classes=num_classes, clip=clip, **options)
        model = create_model(name, num_classes=num_classes, **options)
        if name in PUBLISHED and not options:
            published = PUBLISHED[name]
            params_600, macs_600 = model_cost(name, num_classes=PUBLISHED_NUM_CLASSES, clip=(16, 112, 112))
        if name in PUBLISHED_K400 and not options:
            paper = PUBLISHED_K400[name]
            params_400, macs_paper_clip = model_cost(name, num_classes=400, clip=paper.clip)
    else:
        model = network
        name = label or type(model).__name__
        macs = count_macs(model, clip)
    params = count_params(model)
    model = model.to(dev)
    x = torch.randn(shape, device=dev)
    fwd = measure_latency(model, x, repeats=repeats, warmup=warmup, precision=precision)
    fwd_bwd = None
    if backward:
        fwd_bwd = measure_latency(model, x, backward=True, repeats=repeats, warmup=warmup, precision=precision)
    mem, method = peak_memory(model, x, backward=backward, precision=precision)
    clips_per_s = batch / (fwd.median_ms / 1e3)
    return ProfileResult(
        network=name, params=params, macs=macs, clip=clip, batch=batch, device=str(dev), precision=precision,
        forward=fwd, forward_backward=fwd_bwd, memory_per_clip=mem // batch, memory_method=method,
        clips_per_s=clips_per_s, frames_per_s=clips_per_s * clip[0],
        published_mflops=published[0] if published else None,
        published_params=published[1] if published else None,
        macs_600=macs_600, params_600=params_600,
        paper=paper, macs_paper_clip=macs_paper_clip, params_400=params_400,
    )
