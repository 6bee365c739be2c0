"""``vidnet checkpoint info`` and ``vidnet checkpoint upgrade``: what a checkpoint holds, and the one-time
conversion of a checkpoint of vidnet's first format for a file the user trusts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vidnet.cli._app import CommandApp, app
from vidnet.errors import UsageError

checkpoint_app = CommandApp(name="checkpoint", help="Inspect and upgrade checkpoints (read safely: no code runs).",
                      no_args_is_help=True)
app.add_typer(checkpoint_app)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values or []]


@checkpoint_app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="A .pth file: vidnet's, or weights from elsewhere.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a checkpoint holds: network, labels, preprocessing, position, and the size of each part."""
    from vidnet.checkpoint import describe

    d = describe(path)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"{d['file']}: {_size(d['bytes'])}, format {d['format']}, {d['kind']}")
    if d.get("network"):
        typer.echo(f"  network        {d['network']}" + ("  (pruned: carries its channel counts)"
                                                          if d.get("pruned") else ""))
    if "classes" in d:
        names = d["labels"]
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        typer.echo(f"  labels         {d['classes']}: {shown}")
    pre = d.get("preprocessing") or {}
    if pre:
        size = "x".join(str(v) for v in pre.get("clip_size", []))
        typer.echo(f"  preprocessing  {pre.get('clip_length')} frames at {size}, interval "
                   f"{pre.get('val_frame_interval')} (train {pre.get('train_frame_interval')}), family "
                   f"{pre.get('family', '?')}, augment {pre.get('augment')}, flips {pre.get('hflip', '?')}, "
                   f"mean {_rounded(pre.get('mean'))}, std {_rounded(pre.get('std'))}")
    position = [f"{k} {d[k]:.4g}" if isinstance(d[k], float) else f"{k} {d[k]}"
                for k in ("epoch", "iteration", "step", "best_top1") if k in d]
    if position:
        typer.echo("  position       " + ", ".join(position))
    for key, e in d["entries"].items():
        typer.echo(f"  {key:<14} {e['tensors']} tensors, {e['elements'] / 1e6:.2f} M values, {_size(e['bytes'])}")


@checkpoint_app.command("upgrade")
def upgrade(
    path: Annotated[Path, typer.Argument(help="A checkpoint of vidnet's first format (vidnet-train-1).")],
    trust: Annotated[bool, typer.Option("--trust", help="Confirm that you trust this file (required).")] = False,
    out: Annotated[Path | None, typer.Option(help="Write here instead of replacing the file.")] = None,
) -> None:
    """Rewrite a checkpoint of vidnet's first format in the current one, which loads without unpickling.

    The first format stored RNG states and sums as NumPy objects, which the safe reader refuses. Only for a
    file you trust (your own runs): even then nothing but tensors, plain values and NumPy arrays is admitted.
    """
    from vidnet.checkpoint import FORMAT
    from vidnet.checkpoint import upgrade as do_upgrade

    if not trust:
        raise UsageError(f"{path}: add --trust to confirm that this file comes from a source you trust "
                         "(it is read with NumPy arrays admitted besides tensors and plain values)")
    written = do_upgrade(path, out)
    typer.echo(f"{written}: now format {FORMAT} (loads with torch.load(..., weights_only=True))")
