"""``vidnet models``: the model zoo as a table (parameters, GMACs, family, paper) or JSON."""

from __future__ import annotations

import json

import typer

from vidnet._parse import parse_clip
from vidnet.cli._app import app
from vidnet.errors import UsageError


@app.command("models")
def models(
    pattern: str = typer.Argument(None, help="Shell wildcard over model names, e.g. 'srtg_*' (default: all)."),
    clip: str = typer.Option("16x112x112", "--clip", help="Clip TxHxW at which GMACs are measured."),
    num_classes: int = typer.Option(400, "--classes", help="Classifier size used for the parameter count."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    no_macs: bool = typer.Option(False, "--no-macs", help="Skip the GMACs column (faster)."),
) -> None:
    """List registered models with parameters (M), GMACs (multiply-accumulates = FLOPs / 2) at a clip shape,
    family and paper."""
    from vidnet.network import list_models, model_info
    from vidnet.network.cost import model_cost

    shape = None if no_macs else parse_clip(clip)
    names = list_models(pattern)
    if not names:
        raise UsageError(f"no registered model matches {pattern!r} (try `vidnet models` for the full list)")
    rows = []
    for name in names:
        info = model_info(name)
        params, macs = model_cost(name, num_classes=num_classes, clip=shape)
        rows.append({
            "name": name, "family": info.family, "depth": info.depth, "params": params,
            "params_m": round(params / 1e6, 3), "gmacs": None if macs is None else round(macs / 1e9, 3),
            "clip": None if shape is None else list(shape), "num_classes": num_classes,
            "aliases": list(info.aliases), "paper": info.paper,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ["name", "params (M)", "GMACs" + ("" if shape is None else f" @{clip}"), "family", "paper"]
    table = [[r["name"], f"{r['params_m']:.2f}", "-" if r["gmacs"] is None else f"{r['gmacs']:.2f}", r["family"],
              r["paper"]] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=False)]
    right = {1, 2}
    for line in [header, *table]:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                                  strict=True))]
        typer.echo("  ".join(cells).rstrip())
    typer.echo(f"{len(rows)} models; GMACs are multiply-accumulates (FLOPs / 2) of one clip, batch 1.")
