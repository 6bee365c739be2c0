"""Export: ONNX (onnxruntime) and TorchScript round trips with dynamic batch/time, checked numerically."""

from __future__ import annotations

import builtins

import onnx  # noqa: F401 - the dev extra installs onnx and onnxruntime: these tests run, never skip
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from vidnet.cli import app
from vidnet.errors import UsageError
from vidnet.network import create_model
from vidnet.network.export import REL_TOL, export_model, require_onnx

CLIP = (4, 32, 32)


@pytest.mark.parametrize("name", ["mobilenet_3d_050", "resnet10_3d"])
def test_onnx_round_trip_dynamic_batch_and_time(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    r = export_model(model, tmp_path / "m.onnx", fmt="onnx", clip=CLIP)
    assert r.ok and r.dynamic_batch and r.dynamic_time
    assert [c[0] for c in r.checks] == [(1, 3, 4, 32, 32), (2, 3, 4, 32, 32), (2, 3, 2, 32, 32)]
    # Independent check at a third shape, straight through onnxruntime.
    sess = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 6, 32, 32)
    got = torch.from_numpy(sess.run(None, {"clip": x.numpy()})[0])
    ref = model(x)
    assert (got - ref).abs().max() <= REL_TOL * ref.abs().max()


def test_torchscript_round_trip(tmp_path) -> None:
    model = create_model("shufflenetv2_3d_025", num_classes=5).eval()
    r = export_model(model, tmp_path / "m.pt", fmt="torchscript", clip=CLIP)
    assert r.ok and r.dynamic_batch
    loaded = torch.jit.load(str(r.path))
    x = torch.randn(2, 3, *CLIP)
    torch.testing.assert_close(loaded(x), model(x))


class _FixedTime(nn.Module):
    """A classifier over the flattened clip: any other clip length is rejected by the eager model itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_fixed_time_model_keeps_dynamic_batch(tmp_path) -> None:
    r = export_model(_FixedTime().eval(), tmp_path / "f.onnx", clip=(4, 8, 8))
    assert r.ok and r.dynamic_batch and not r.dynamic_time
    assert any("rejects" in n for n in r.notes)


def test_missing_onnx_gives_clear_error(monkeypatch) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UsageError, match=r"pip install 'vidnet\[export\]'"):
        require_onnx()


def test_cli_export(tmp_path) -> None:
    out = tmp_path / "x.onnx"
    res = CliRunner().invoke(app, ["export", "-n", "mobilenetv2_3d_020", "--num-classes", "4", "--clip", "4x32x32",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "dynamic axes: batch, time" in res.output and "max abs diff" in res.output and out.is_file()
    # A checkpoint round trip: state dict + network name, then the TorchScript format.
    ckpt = tmp_path / "c.pt"
    torch.save({"model": create_model("mobilenetv2_3d_020", num_classes=4).state_dict(),
                "config": {"network": "mobilenetv2_3d_020"}}, ckpt)
    res = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--clip",
                                   "4x32x32", "-o", str(tmp_path / "c.ts")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["export", "-n", "mobilenetv2_3d_020", "--format", "tflite", "-o", str(out)])
    assert res.exit_code == 2 and "--format" in res.output
