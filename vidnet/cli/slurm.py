"""``vidnet slurm convert``: a sharded conversion submitted through submitit (``pip install 'vidnet[slurm]'``).

One array job of N tasks (`submitit.AutoExecutor.map_array`), task K running ``--shard K/N``; a task that
SLURM preempts is requeued (`Checkpointable`) and resumes, since a shard skips its finished stores. With
``--cluster local`` the tasks run as processes of this machine (no SLURM needed), which is how it is tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidnet._log import setup_logging
from vidnet.cli._app import CommandApp, app
from vidnet.cli._progress import console
from vidnet.errors import UsageError, VidnetError

slurm_app = CommandApp(name="slurm", help="Submit work to a SLURM cluster through submitit "
                                          "(pip install 'vidnet\\[slurm]'; --cluster local runs it here).",
                       no_args_is_help=True)
app.add_typer(slurm_app)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise VidnetError("vidnet slurm needs submitit: pip install 'vidnet[slurm]'") from None
    return submitit


class ConvertShard:
    """The task of one array element: ``convert_dataset(src, dst, opts with shard K/N)``; requeued on preemption."""

    def __init__(self, src: str, dst: str, opts: dict, n: int) -> None:
        self.src, self.dst, self.opts, self.n = src, dst, opts, n

    def __call__(self, k: int) -> dict:
        from vidnet.data.ingest import ConvertOptions, convert_dataset
        from vidnet.data.shards import Shard

        setup_logging(0)
        s = convert_dataset(self.src, self.dst, ConvertOptions(**self.opts, shard=Shard(k, self.n)))
        return {"shard": k, "converted": s.converted, "skipped": s.skipped, "failed": s.failed,
                "interrupted": s.interrupted}

    def checkpoint(self, k: int):  # submitit calls this on preemption or timeout: run the shard again
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, k)


@slurm_app.command("convert")
def convert(
    src: Annotated[Path, typer.Argument(help="Input dataset (as for vidnet convert).")],
    dst: Annotated[Path, typer.Argument(help="Output root, on a file system every node sees.")],
    shards: Annotated[int, typer.Option(help="Number of shards N (array tasks).")] = 8,
    cluster: Annotated[str | None, typer.Option(help="slurm, local (processes here) or debug (this process); "
                                                     "default: slurm when sbatch exists, else local.")] = None,
    logs: Annotated[Path, typer.Option(help="Folder for submitit's job files and logs.")] = Path("slurm-logs"),
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    cpus_per_task: Annotated[int, typer.Option(help="Cores per task (also its --workers).")] = 8,
    mem_gb: Annotated[int, typer.Option(help="Memory per task in GB.")] = 16,
    timeout_min: Annotated[int, typer.Option(help="Time limit per task in minutes.")] = 360,
    parallel: Annotated[int, typer.Option(help="At most this many tasks at a time.")] = 64,
    short_side: Annotated[int | None, typer.Option(help="As vidnet convert --short-side.")] = None,
    quality: Annotated[int, typer.Option(help="As vidnet convert --quality.")] = 90,
    fps: Annotated[float | None, typer.Option(help="As vidnet convert --fps.")] = None,
    index: Annotated[Path | None, typer.Option(help="As vidnet convert --index.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Submit and exit; run `vidnet convert DST --merge` "
                                                            "once the tasks are done.")] = False,
) -> None:
    """Convert SRC into DST in N shards as one array job, wait for it, then merge (`vidnet convert DST --merge`)."""
    from vidnet.data.ingest import ConvertOptions, merge_shards

    setup_logging(0)
    if shards < 1:
        raise UsageError(f"--shards must be at least 1 (got {shards})")
    if cluster not in (None, "slurm", "local", "debug"):
        raise UsageError(f"--cluster must be slurm, local or debug (got {cluster!r})")
    submitit = _submitit()
    opts = {"short_side": short_side, "quality": quality, "fps": fps, "index": index.resolve() if index else None,
            "workers": cpus_per_task}
    ConvertOptions(**opts)  # bad options fail here, not in N tasks
    executor = submitit.AutoExecutor(folder=logs / "%j", cluster=cluster)
    executor.update_parameters(name="vidnet-convert", cpus_per_task=cpus_per_task, mem_gb=mem_gb,
                               timeout_min=timeout_min, slurm_array_parallelism=parallel)
    if partition:
        executor.update_parameters(slurm_partition=partition)
    task = ConvertShard(str(src.resolve()), str(dst.resolve()), opts, shards)
    jobs = executor.map_array(task, list(range(1, shards + 1)))
    console.print(f"submitted {len(jobs)} shard task(s) to {executor.cluster}: job {jobs[0].job_id.split('_')[0]}"
                  f" (logs: {logs})")
    if no_wait:
        console.print(f"once they are done: vidnet convert {dst} --merge")
        return
    failed = []
    for k, job in enumerate(jobs, start=1):
        try:
            job.result()
        except Exception as err:  # a task's exception comes back as submitit's FailedJobError
            failed.append(f"{k}/{shards} ({str(err).strip().splitlines()[-1] if str(err).strip() else err})")
    if failed:
        raise VidnetError(f"{len(failed)} shard task(s) failed: {'; '.join(failed[:3])}; see {logs}, re-run "
                          f"them with vidnet convert SRC DST --shard K/{shards}, then vidnet convert {dst} --merge")
    s = merge_shards(dst)
    console.print(f"merged {s.shards} shards: {s.converted} converted, {s.skipped} already done, "
                  f"[red]{s.failed} failed[/red]; {len(s.rows)} stores; index: {dst}/index.csv")
