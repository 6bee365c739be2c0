"""``vidnet profile``, ``vidnet compress`` and ``vidnet export``: model cost, compression and deployment."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vidnet.cli._app import app
from vidnet.errors import UsageError


def _expand_networks(patterns: list[str]) -> list[str]:
    from vidnet.network import list_models, model_info

    names: list[str] = []
    for pattern in patterns:
        for part in (p.strip() for p in pattern.split(",")):
            if not part:
                continue
            if any(ch in part for ch in "*?["):
                found = list_models(part)
                if not found:
                    raise UsageError(f"--network {part!r}: no registered model matches (see `vidnet models`)")
                names += found
            else:
                try:
                    names.append(model_info(part).name)
                except KeyError as err:
                    raise UsageError(f"--network: {err}") from None
    return list(dict.fromkeys(names))


def _ms(t) -> str:
    return f"{t.median_ms:.1f} ± {t.iqr_ms / 2:.1f}" if t is not None else "-"


@app.command("profile")
def profile_command(
    network: Annotated[list[str], typer.Option("--network", "-n", help="Model name(s); wildcards and commas ok.")],
    clip: Annotated[str, typer.Option(help="Clip size TxHxW.")] = "16x112x112",
    batch: Annotated[int, typer.Option(help="Clips per timed batch.")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    precision: Annotated[str, typer.Option(help="fp32, or autocast bf16 / fp16.")] = "fp32",
    repeats: Annotated[int, typer.Option(help="Timed runs per measurement.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed runs before them.")] = 2,
    num_classes: Annotated[int, typer.Option(help="Classifier outputs.")] = 400,
    backward: Annotated[bool, typer.Option(help="Also time forward + backward.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """Parameters, GMACs, latency, peak memory per clip and throughput of one or more networks.

    MACs are multiply-accumulates (FLOPs = 2 x MACs). Latency is the median over --repeats after --warmup
    runs, ± half the interquartile range. Memory is per clip: CUDA max_memory_allocated, or on CPU the
    sampled rise of the resident set size (an estimate). "pub" columns quote the Efficient-3DCNNs table
    (anchors.md §2c, 600 classes, thop MFLOPs) next to our count at 600 classes.
    """
    from vidnet.network.profile import parse_clip, profile_model

    frames = parse_clip(clip)
    names = _expand_networks(network)
    results = []
    for name in names:
        try:
            r = profile_model(name, clip=frames, batch=batch, device=device, precision=precision,  # type: ignore
                              repeats=repeats, warmup=warmup, backward=backward, num_classes=num_classes)
        except UsageError:
            raise
        except Exception as err:  # one model that cannot run this clip must not hide the others' rows
            typer.secho(f"warning: {name}: {type(err).__name__}: {err}", fg=typer.colors.YELLOW, err=True)
            continue
        results.append(r)
        if as_json:
            typer.echo(json.dumps(r.to_dict()))
    if not results:
        raise UsageError(f"--network: none of {', '.join(names)} ran on a {clip} clip")
    if as_json:
        return
    from rich.console import Console
    from rich.table import Table

    r0 = results[0]
    table = Table(title=f"clip {clip}, batch {batch}, {r0.device}, {precision}, {repeats} repeats "
                        f"(latency ms: median ± IQR/2; memory: {r0.memory_method})")
    for col in ("network", "params (M)", "GMACs", "fwd ms", "fwd+bwd ms", "MB/clip", "clips/s", "frames/s",
                "MMACs@600", "pub MFLOPs", "pub params (M)"):
        table.add_column(col, justify="left" if col == "network" else "right")
    for r in results:
        table.add_row(
            r.network, f"{r.params / 1e6:.3f}", f"{r.gmacs:.4f}", _ms(r.forward), _ms(r.forward_backward),
            f"{r.memory_per_clip / 2**20:.1f}", f"{r.clips_per_s:.1f}", f"{r.frames_per_s:.0f}",
            f"{r.macs_600 / 1e6:.1f}" if r.macs_600 else "-",
            f"{r.published_mflops:g}" if r.published_mflops else "-",
            f"{r.published_params / 1e6:.2f} ({r.params_600 / 1e6:.2f})" if r.published_params else "-",
        )
    Console(width=200).print(table)
