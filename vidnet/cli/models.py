"""``vidnet models``: the model zoo as a table (parameters, GMACs, family, paper) or JSON."""

from __future__ import annotations

import json

import typer

from vidnet._parse import parse_clip
from vidnet.cli._app import app
from vidnet.errors import UsageError


@app.command("models")
def models(
    pattern: str = typer.Argument(None, help="Names or shell wildcards, comma-separated, e.g. 'srtg_*,r3d_18' "
                                  "(default: all)."),
    macs: bool = typer.Option(False, "--macs/--no-macs", help="Also count GMACs at --clip (a forward pass of "
                              "each model on the meta device: slower the first time, then cached)."),
    clip: str = typer.Option("16x112x112", "--clip", help="Clip TxHxW at which --macs counts GMACs."),
    num_classes: int = typer.Option(400, "--classes", help="Classifier size used for the parameter count."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List registered models with parameters (M), family and paper; --macs adds GMACs (multiply-accumulates =
    FLOPs / 2) at a clip shape. Counts are cached per model, class count and clip (see
    vidnet.network.cost.cost_cache_path), so a second call answers at once."""
    from vidnet.cli._progress import console
    from vidnet.network import UnknownModelError, model_info, resolve_names
    from vidnet.network.cost import cached_model_costs

    shape = parse_clip(clip) if macs else None
    try:
        names = resolve_names(pattern)
    except UnknownModelError as err:
        raise UsageError(str(err)) from None
    status = console.status("counting", spinner="dots") if console.is_terminal else None
    with status if status is not None else _nothing():
        costs = cached_model_costs(names, num_classes=num_classes, clip=shape,
                                   progress=None if status is None else
                                   lambda done, total: status.update(f"counting {done}/{total} models"))
    rows = []
    for name in names:
        info = model_info(name)
        params, count = costs[name]
        rows.append({
            "name": name, "family": info.family, "depth": info.depth, "params": params,
            "params_m": round(params / 1e6, 3), "gmacs": None if count is None else round(count / 1e9, 3),
            "clip": None if shape is None else list(shape), "num_classes": num_classes,
            "aliases": list(info.aliases), "paper": info.paper,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ["name", "params (M)", *([f"GMACs @{clip}"] if shape else []), "family", "paper"]
    table = [[r["name"], f"{r['params_m']:.2f}", *([f"{r['gmacs']:.2f}"] if shape else []), r["family"], r["paper"]]
             for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=False)]
    right = {1, 2} if shape else {1}
    for line in [header, *table]:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                                  strict=True))]
        typer.echo("  ".join(cells).rstrip())
    typer.echo(f"{len(rows)} models" + ("; GMACs are multiply-accumulates (FLOPs / 2) of one clip, batch 1."
                                        if shape else "; --macs adds GMACs."))


def _nothing():
    import contextlib

    return contextlib.nullcontext()
