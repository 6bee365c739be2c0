"""Export to ONNX or TorchScript with dynamic batch (and time, where the model allows), verified numerically.

ONNX uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) because the
default torch.export-based one needs the ``onnxscript`` package, which the ``export`` extra does not pull
in; the file is checked with ``onnx.checker`` and run with onnxruntime. TorchScript uses ``torch.jit.trace``
(scripting rejects most zoo models' Python). Tracing records one path through any shape-dependent Python
``if`` (clip padding, odd-length handling), so every export is re-run at a *second* input shape (another
batch size and, for dynamic time, another clip length) and compared with eager PyTorch there too: an axis
is only declared dynamic when that comparison passes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from vidnet.errors import UsageError, VidnetError

__all__ = ["ExportResult", "export_model", "require_onnx"]

Format = Literal["onnx", "torchscript"]
REL_TOL = 1e-3


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how well it reproduces eager PyTorch.

    Attributes:
        path: the exported file.
        format: ``onnx`` or ``torchscript``.
        dynamic_batch: the batch axis is dynamic (verified at a second batch size).
        dynamic_time: the time axis is dynamic (verified at a second clip length).
        checks: ``(input shape, max abs diff, max abs diff / max abs eager logit)`` per verification.
        notes: why an axis is fixed, and warnings worth knowing.
    """

    path: Path
    format: str
    dynamic_batch: bool
    dynamic_time: bool
    checks: list[tuple[tuple[int, ...], float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max((c[1] for c in self.checks), default=float("nan"))

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c[2] <= REL_TOL for c in self.checks)


def require_onnx() -> None:
    """Raise a clear error when the optional ``export`` extra (onnx, onnxruntime) is missing."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise UsageError(f"ONNX export needs {' and '.join(missing)}: pip install 'vidnet[export]'")


def _runner(path: Path, fmt: Format):
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures reach us as exceptions; keep onnxruntime's log quiet
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: torch.from_numpy(sess.run(None, {name: x.numpy()})[0])
    loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda x: loaded(x).detach()


def _compare(model: nn.Module, run, x: torch.Tensor) -> tuple[tuple[int, ...], float, float]:
    with torch.no_grad():
        ref = model(x).float()
    got = run(x).float()
    if got.shape != ref.shape:
        return tuple(x.shape), float("inf"), float("inf")
    diff = float((got - ref).abs().max())
    return tuple(x.shape), diff, diff / max(float(ref.abs().max()), 1e-30)


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    # The TorchScript-based ONNX exporter prints the whole IR graph from C++ on failure; the reason is kept
    # in the exception, so file descriptors 1 and 2 are parked in a temporary file meanwhile.
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _write(model: nn.Module, x: torch.Tensor, path: Path, fmt: Format, axes: dict[int, str]) -> None:
    with warnings.catch_warnings(), _quiet_fds():
        warnings.simplefilter("ignore")  # tracer warnings are replaced by the second-shape verification
        if fmt == "onnx":
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["clip"], output_names=["logits"],
                              dynamic_axes={"clip": axes, "logits": {0: "batch"} if 0 in axes else {}},
                              opset_version=17)
            import onnx

            onnx.checker.check_model(str(path))
        else:
            with torch.no_grad():
                traced = torch.jit.trace(model, (x,), check_trace=False)
            traced.save(str(path))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300] if text else ''}"


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    fmt: Format = "onnx",
    clip: tuple[int, int, int] = (16, 112, 112),
    in_channels: int = 3,
    dynamic_time: bool = True,
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` (eval mode, CPU) and verify it against eager PyTorch at two input shapes.

    The first export tries dynamic batch and time; if the time axis does not survive verification at
    another clip length (e.g. a classifier sized for the training length, or a traced shape-dependent
    branch), the model is exported again with only the batch axis dynamic and the reason is noted.

    Args:
        model: the network.
        path: output file (``.onnx`` or ``.pt``).
        fmt: ``onnx`` or ``torchscript``.
        clip: frames, height, width of the example clip.
        in_channels: input channels.
        dynamic_time: also try a dynamic time axis.
        seed: seed of the random verification clips.

    Raises:
        UsageError: onnx/onnxruntime are missing, or ``fmt`` is unknown.
        VidnetError: the export itself fails (the message carries the exporter's reason).
    """
    if fmt not in ("onnx", "torchscript"):
        raise UsageError(f"--format must be onnx or torchscript, got {fmt!r}")
    if fmt == "onnx":
        require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    g = torch.Generator().manual_seed(seed)
    t = clip[0]
    example = torch.randn((1, in_channels, *clip), generator=g)
    batch2 = torch.randn((2, in_channels, *clip), generator=g)
    t2 = t // 2 if t >= 4 else t + 2
    time2 = torch.randn((2, in_channels, t2, clip[1], clip[2]), generator=g)
    with torch.no_grad():
        try:
            model(time2)
            time_ok_eager = True
        except Exception:
            time_ok_eager = False
    notes: list[str] = []
    if dynamic_time and not time_ok_eager:
        notes.append(f"time fixed at {t}: the eager model itself rejects a {t2}-frame clip")
    attempts = [{0: "batch", 2: "time"}] if dynamic_time and time_ok_eager else []
    attempts += [{0: "batch"}, {}]
    last_error: Exception | None = None
    for axes in attempts:
        try:
            _write(model, example, path, fmt, axes)
        except Exception as err:
            last_error = err
            notes.append(f"export with dynamic {'/'.join(axes.values()) or 'nothing'} failed: {_first_line(err)}")
            continue
        run = _runner(path, fmt)
        checks = [_compare(model, run, example)]
        shapes = {"batch": batch2, "time": time2}
        failed = []
        for axis in axes.values():
            try:
                check = _compare(model, run, shapes[axis])
            except Exception as err:
                check = (tuple(shapes[axis].shape), float("inf"), float("inf"))
                notes.append(f"run at {'x'.join(map(str, shapes[axis].shape))} failed: {_first_line(err)}")
            checks.append(check)
            if not check[2] <= REL_TOL:
                failed.append(axis)
        if failed and axes is not attempts[-1]:
            notes.append(f"dynamic {'/'.join(failed)} does not verify (a traced shape-dependent branch or a "
                         "size fixed inside the graph); exporting with fewer dynamic axes")
            continue
        return ExportResult(path, fmt, "batch" in axes.values(), "time" in axes.values(), checks, notes)
    raise VidnetError(f"{fmt} export of {type(model).__name__} failed: {_first_line(last_error)}"
                      if last_error else f"{fmt} export of {type(model).__name__} failed")
