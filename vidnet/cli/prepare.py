"""``vidnet prepare``: official dataset annotations -> ``index.csv``, ``labels.json``, ``dataset.json``, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vidnet.cli._app import app
from vidnet.data.prepare import DATASETS, PrepareReport, prepare, write_prepared

_EXAMPLES = 3


@app.command("prepare")
def prepare_command(
    dataset: Annotated[str, typer.Argument(help=f"Dataset format: {', '.join(DATASETS)}.", show_default=False)],
    annotations: Annotated[
        Path, typer.Option("--annotations", "-a", help="Folder (or file) of the official annotations.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for index.csv and labels.json.")],
    videos: Annotated[
        Path | None,
        typer.Option("--videos", help="Folder of videos / frame folders to check; omitted: nothing checked."),
    ] = None,
    split_number: Annotated[
        int, typer.Option("--split-number", "-s", min=1, max=3, help="UCF-101 / HMDB-51 split that fills 'split'.")
    ] = 1,
) -> None:
    """Read a dataset's official annotation files and write vidnet's index for `vidnet convert`.

    Writes OUT/index.csv (the 'source' column holds each video's path relative to --videos), labels.json,
    dataset.json (the preset: number of classes, whether horizontal flips are allowed) and prepare-report.json
    (missing videos, unknown classes, duplicates, videos in two splits). See docs/prepare.md.
    """
    prepared = prepare(dataset, annotations, videos=videos, split_number=split_number)
    write_prepared(prepared, out)
    print_report(prepared.report, Console())
    typer.echo(f"wrote {out / 'index.csv'}, labels.json, dataset.json and prepare-report.json")


def print_report(report: PrepareReport, console: Console) -> None:
    """Print a :class:`PrepareReport` as tables: rows per split, then each kind of finding with examples."""
    checked = report.videos is not None
    console.print(f"[bold]{report.dataset}[/bold]: {report.rows} videos, {report.classes} classes")
    table = Table()
    table.add_column("split")
    table.add_column("videos", justify="right")
    if checked:
        table.add_column("found", justify="right")
        table.add_column("missing", justify="right")
    for split, n in sorted(report.splits.items()):
        cells = [escape(split) or "(none)", str(n)]
        if checked:
            found = report.found.get(split, 0)
            cells += [str(found), str(n - found)]
        table.add_row(*cells)
    console.print(table)
    if not checked:
        console.print("videos not checked on disk (no --videos): 'source' holds the expected paths")

    findings = Table()
    findings.add_column("kind")
    findings.add_column("count", justify="right")
    findings.add_column("examples")
    kinds = [
        ("missing videos", [{"video": m} for m in report.missing]),
        ("unknown classes (rows dropped)", report.unknown_classes),
        ("duplicates (one kept)", report.duplicates),
        ("videos in two splits (first kept)", report.in_two_splits),
        ("conflicting labels", report.conflicting_labels),
        ("renamed to be filesystem-safe", report.renamed),
    ]
    kinds += [(f"skipped: {reason}", [{}] * n) for reason, n in report.skipped.items()]
    for kind, items in kinds:
        if items:
            examples = "\n".join(" | ".join(escape(str(v)) for v in it.values()) for it in items[:_EXAMPLES] if it)
            findings.add_row(kind, str(len(items)), examples + ("\n..." if len(items) > _EXAMPLES else ""))
    if findings.row_count:
        console.print(findings)
        console.print("full lists in prepare-report.json")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
