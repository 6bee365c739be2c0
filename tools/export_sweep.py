"""Try ONNX and TorchScript export of every registered model; write a Markdown table of what works and why not.

Usage: python tools/export_sweep.py [--clip 8x64x64] [--pattern '*'] [--per-family] [--out docs/export_sweep.md]
``--per-family`` keeps the smallest model of each (family, model class) pair: depth changes the number of blocks,
not the code path the exporter sees, so one model per class shows what exports.
Each model is built with fresh weights (10 classes), exported to a temporary folder and verified against
eager PyTorch by :func:`vidnet.network.export.export_model` (second batch size, second clip length).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vidnet._parse import parse_clip
from vidnet.errors import VidnetError
from vidnet.network import create_model, list_models, model_info
from vidnet.network.cost import model_cost
from vidnet.network.export import export_model


def _cell(fmt: str, model: torch.nn.Module, folder: Path, clip: tuple[int, int, int]) -> str:
    path = folder / f"m.{'onnx' if fmt == 'onnx' else 'pt'}"
    try:
        r = export_model(model, path, fmt=fmt, clip=clip)  # type: ignore[arg-type]
    except VidnetError as err:
        return f"**fails**: {str(err).split(': ', 1)[-1][:160]}"
    finally:
        path.unlink(missing_ok=True)
    axes = ("batch" + (", time" if r.dynamic_time else "")) if r.dynamic_batch else "static"
    rel = max(c[2] for c in r.checks)
    status = "ok" if r.ok else "**mismatch**"
    why = "; ".join(n for n in r.notes if "failed" in n or "does not verify" in n or "rejects" in n)
    return f"{status} ({axes}; rel. diff {rel:.1g})" + (f" — {why[:200]}" if why else "")


def _smallest_per_builder(names: list[str]) -> list[str]:
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for name in names:
        info = model_info(name)
        with torch.device("meta"):
            key = (info.family, type(create_model(name, num_classes=10)).__name__)
        params = model_cost(name, clip=None)[0]
        if key not in best or params < best[key][0]:
            best[key] = (params, name)
    return sorted(n for _, n in best.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="8x64x64")
    ap.add_argument("--per-family", action="store_true")
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--out", type=Path, default=Path("docs/export_sweep.md"))
    args = ap.parse_args()
    clip = parse_clip(args.clip)
    torch.manual_seed(0)
    lines = ["| model | ONNX (onnxruntime) | TorchScript (trace) | s |", "|---|---|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        names = list_models(args.pattern)
        if args.per_family:
            names = _smallest_per_builder(names)
        for name in names:
            start = time.perf_counter()
            model = create_model(name, num_classes=10).eval()
            cells = [_cell(fmt, model, Path(tmp), clip) for fmt in ("onnx", "torchscript")]
            row = f"| {name} | {cells[0]} | {cells[1]} | {time.perf_counter() - start:.0f} |"
            print(row, flush=True)
            lines.append(row)
    header = (f"Export sweep: torch {torch.__version__}, clip {args.clip}, 10 classes, fresh weights; "
              "`rel. diff` = max |exported - eager| / max |eager logit| over the checked shapes.\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
