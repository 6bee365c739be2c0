"""``vidnet slurm convert`` and ``vidnet slurm train``: work submitted through submitit
(``pip install 'vidnet[slurm]'``).

``convert``: one array job of N tasks (`submitit.AutoExecutor.map_array`), task K running ``--shard K/N``; a
task that SLURM preempts is requeued and resumes, since a shard skips its finished stores.

``train``: one job of ``--nodes`` x ``--gpus-per-node`` tasks, one training process per GPU. Each task exports
the process group's environment (`submitit.helpers.TorchDistributedEnvironment`: ``MASTER_ADDR``, ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``) and runs ``vidnet train ... --resume auto`` in a child process. When SLURM
signals the end of the time slot (submitit's ``--signal USR2@...``) the task stops its training process as
Ctrl-C does (a resumable checkpoint after the current optimizer step), then submitit calls `TrainJob.checkpoint`
and requeues the job; the requeued job continues from that checkpoint.

With ``--cluster local`` the tasks run as processes of this machine (no SLURM needed), which is how both are
tested.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

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


def _cluster(submitit: Any, cluster: str | None) -> str:
    """``--cluster``, checked; without it slurm where ``sbatch`` exists, else local (submitit's choice)."""
    if cluster not in (None, "slurm", "local", "debug"):
        raise UsageError(f"--cluster must be slurm, local or debug (got {cluster!r})")
    return cluster or submitit.AutoExecutor.which()


def _executor(submitit: Any, logs: Path, cluster: str, max_requeues: int | None = None) -> Any:
    extra = {} if max_requeues is None else {"slurm_max_num_timeout": max_requeues,
                                             "local_max_num_timeout": max_requeues}
    # One folder per job on SLURM; submitit's local executor would create the "%j" folder itself, unformatted.
    return submitit.AutoExecutor(folder=logs / "%j" if cluster == "slurm" else logs, cluster=cluster, **extra)


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
    submitit = _submitit()
    opts = {"short_side": short_side, "quality": quality, "fps": fps, "index": index.resolve() if index else None,
            "workers": cpus_per_task}
    ConvertOptions(**opts)  # bad options fail here, not in N tasks
    executor = _executor(submitit, logs, _cluster(submitit, cluster))
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
            failed.append(f"{k}/{shards} ({_failure_reason(job, err)})")
    if failed:
        raise VidnetError(f"{len(failed)} shard task(s) failed: {'; '.join(failed[:3])}; see {logs}, re-run "
                          f"them with vidnet convert SRC DST --shard K/{shards}, then vidnet convert {dst} --merge")
    s = merge_shards(dst)
    console.print(f"merged {s.shards} shards: {s.converted} converted, {s.skipped} already done, "
                  f"[red]{s.failed} failed[/red]; {len(s.rows)} stores; index: {dst}/index.csv")


class TrainJob:
    """One task of a ``vidnet slurm train`` job: ``vidnet train ARGS --gpus 1|0 --resume auto`` in a child
    process, stopped gracefully and requeued when SLURM signals the end of the time slot or a preemption."""

    def __init__(self, args: list[str], gpus: int, attempt: int = 1) -> None:
        self.args, self.gpus, self.attempt = list(args), gpus, attempt

    def forced(self) -> list[str]:
        """The options every attempt adds to the user's: one GPU (or the CPU) per process, and the resume."""
        return ["--gpus", "1" if self.gpus else "0", "--resume", "auto"]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "vidnet", "train", *self.args, *self.forced()]

    def __call__(self) -> dict:
        submitit = _submitit()
        env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        # submitit's handler of its preemption/timeout signal: on rank 0, checkpoint() and requeue the job.
        sig = submitit.JobEnvironment._usr_sig()
        requeue = signal.getsignal(sig)
        state: dict[str, Any] = {"child": None, "why": None, "stopping": False}

        def stop(child: subprocess.Popen | None) -> None:
            """One SIGINT, never two: vidnet train saves a resumable checkpoint after the current optimizer step
            and exits 130 (a second SIGINT would stop it at once, without that checkpoint)."""
            if child is not None and not state["stopping"] and child.poll() is None:
                state["stopping"] = True
                child.send_signal(signal.SIGINT)

        def on_signal(signum, frame):  # noqa: ARG001 - signal signature
            state["why"] = state["why"] or signal.Signals(signum).name
            stop(state["child"])

        signal.signal(sig, on_signal)  # the end of the time slot: stop, then requeue
        signal.signal(signal.SIGTERM, on_signal)  # scancel or a preemption: stop (SLURM requeues a preempted job)
        print(f"vidnet slurm train: attempt {self.attempt}, rank {env.rank} of {env.world_size} "
              f"(master {env.master_addr}:{env.master_port}): {' '.join(self.command()[1:])}", flush=True)
        child = subprocess.Popen(self.command(), start_new_session=True, preexec_fn=_training_process_setup(sig))
        state["child"] = child
        try:
            if state["why"]:
                stop(child)
            code = child.wait()
        finally:
            if child.poll() is None:  # this task is being stopped (Ctrl-C here): the training process stops too
                stop(child)
                try:
                    child.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    child.kill()
        if state["why"] == signal.Signals(sig).name:
            print(f"vidnet slurm train: stopped for a requeue (training exited with {code})", flush=True)
            if callable(requeue):
                requeue(sig, None)  # rank 0: checkpoint() below, requeue, exit; the other ranks return
            return {"attempt": self.attempt, "stopped": state["why"]}
        if state["why"]:
            print(f"vidnet slurm train: stopped by {state['why']} (training exited with {code})", flush=True)
            return {"attempt": self.attempt, "stopped": state["why"]}
        if code != 0:
            raise VidnetError(f"vidnet train exited with status {code} (rank {env.rank}, attempt {self.attempt})")
        return {"attempt": self.attempt, "stopped": None}

    def checkpoint(self) -> Any:  # submitit calls this on preemption or timeout: the next attempt resumes
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainJob(self.args, self.gpus, self.attempt + 1))


def _training_process_setup(sig: int) -> Any:
    """What the training process does before it starts: leave the signals that SLURM sends to every process of
    the job (the time-limit signal, SIGTERM) to its task, which turns them into one SIGINT; and get that SIGINT
    when the task dies (Linux ``PR_SET_PDEATHSIG``), so no training outlives its task."""

    def setup() -> None:
        signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGINT))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # not Linux: the task still stops it on every path it sees
            pass

    return setup


def _without_resume_auto(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without ``--resume auto`` (or ``--resume=auto``), and whether it was there."""
    out, found, i = [], False, 0
    while i < len(args):
        if args[i] == "--resume=auto" or (args[i] == "--resume" and args[i + 1:i + 2] == ["auto"]):
            found, i = True, i + (1 if "=" in args[i] else 2)
            continue
        out.append(args[i])
        i += 1
    return out, found


_OWN_OPTIONS = ("--nodes", "--gpus-per-node", "--cluster", "--logs", "--partition", "--cpus-per-task", "--mem-gb",
                "--timeout-min", "--signal-delay-s", "--max-requeues", "--no-wait")


@slurm_app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option(help="Nodes.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node, one training process each (0: one CPU "
                                                    "process per node).")] = 1,
    cluster: Annotated[str | None, typer.Option(help="slurm, local (processes here) or debug (this process); "
                                                     "default: slurm when sbatch exists, else local.")] = None,
    logs: Annotated[Path, typer.Option(help="Folder for submitit's job files and logs.")] = Path("slurm-logs"),
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    cpus_per_task: Annotated[int, typer.Option(help="Cores per training process (data loading).")] = 10,
    mem_gb: Annotated[int, typer.Option(help="Memory per node in GB.")] = 64,
    timeout_min: Annotated[int, typer.Option(help="Time limit of one time slot, in minutes; the job is "
                                                    "requeued and resumes when it runs out.")] = 1440,
    signal_delay_s: Annotated[int, typer.Option(help="SLURM: warn the job this many seconds before the time "
                                                     "limit: time to finish a validation under way, a step and "
                                                     "a save.")] = 120,
    max_requeues: Annotated[int, typer.Option(help="Requeue after running out of time at most this many "
                                                   "times.")] = 10,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Submit and exit.")] = False,
) -> None:
    """Run vidnet train as a SLURM job through submitit, resumed after a preemption or time limit.

    The training options follow `--`:
    vidnet slurm train --nodes 2 --gpus-per-node 8 -- --network srtg_r3d_50 --dataset data/k400 --precision bf16
    """
    from vidnet.cli.train import parse_train_args
    from vidnet.train.loop import run_folder

    setup_logging(0)
    args = list(ctx.args)
    if not args:
        raise UsageError("give the training options after --: vidnet slurm train [OPTIONS] -- --network NAME "
                         "--dataset DATASET ...")
    args, continuing = _without_resume_auto(args)  # every attempt resumes; given, it says an earlier run goes on
    for name in ("--gpus", "--resume", "--resume-epoch"):
        if any(a == name or a.startswith(name + "=") for a in args):
            raise UsageError(f"{name} is set by vidnet slurm train (one GPU per process: --gpus-per-node; every "
                             "attempt runs with --resume auto)")
    misplaced = [a.split("=")[0] for a in args if a.split("=")[0] in _OWN_OPTIONS]
    if misplaced:
        raise UsageError(f"{misplaced[0]} is an option of vidnet slurm train: put it before --")
    if nodes < 1 or gpus_per_node < 0:
        raise UsageError(f"--nodes must be at least 1 and --gpus-per-node at least 0 (got {nodes}, {gpus_per_node})")
    task = TrainJob(args, gpus_per_node)
    cfg, _ = parse_train_args([*args, *task.forced()])  # bad training options fail here, not in the job
    from vidnet.network import UnknownModelError, model_info

    try:
        model_info(cfg.model.network)
    except UnknownModelError as err:
        raise UsageError(f"--network: {err}") from None
    if not cfg.data.dataset or not Path(cfg.data.dataset).is_dir():
        raise UsageError(f"--dataset {cfg.data.dataset}: no such folder here (the job's nodes read it at the same "
                         "path)")
    submitit = _submitit()
    cluster = _cluster(submitit, cluster)
    if cluster in ("local", "debug"):  # checked before anything is written
        import torch

        if nodes > 1:
            raise UsageError(f"--nodes {nodes}: --cluster {cluster} runs on this one machine")
        if gpus_per_node > torch.cuda.device_count():
            raise UsageError(f"--gpus-per-node {gpus_per_node}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s) (--cluster {cluster} runs here; --gpus-per-node 0 trains on the CPU)")
    run = run_folder(cfg)
    from vidnet.checkpoint import CHECKPOINT_DIR, latest_checkpoint

    earlier = latest_checkpoint(run / CHECKPOINT_DIR)
    if earlier is not None and not continuing:
        raise UsageError(f"{run}: holds an earlier run ({earlier.name}); every attempt resumes its run folder, so "
                         "add --resume auto after -- to continue it, or give another --model-dir")
    executor = _executor(submitit, logs, cluster, max_requeues)
    tasks = max(gpus_per_node, 1)
    executor.update_parameters(name="vidnet-train", nodes=nodes, tasks_per_node=tasks, cpus_per_task=cpus_per_task,
                               gpus_per_node=gpus_per_node, mem_gb=mem_gb, timeout_min=timeout_min)
    if executor.cluster == "slurm":
        executor.update_parameters(slurm_signal_delay_s=signal_delay_s)
    if partition:
        executor.update_parameters(slurm_partition=partition)
    job = executor.submit(task)
    console.print(f"submitted training job {job.job_id} to {executor.cluster}: {nodes} node(s) x {tasks} "
                  f"process(es); run folder {run}; logs: {logs}")
    if no_wait:
        return
    try:
        result = job.results()[0]  # one per task (rank); job.result() refuses a job of several tasks
    except KeyboardInterrupt:
        if executor.cluster == "slurm":
            console.print(f"job {job.job_id} goes on running on the cluster (scancel {job.job_id} stops it)")
        raise
    except Exception as err:  # a task's exception comes back as submitit's FailedJobError
        raise VidnetError(f"training job {job.job_id} failed: {_failure_reason(job, err)}; see {logs} and "
                          f"{run}/train.log") from None
    requeued = result["attempt"] - 1
    if result.get("stopped"):
        console.print(f"[yellow]stopped[/yellow]: training job {job.job_id} was stopped by {result['stopped']} "
                      f"with a resumable checkpoint; continue it with the same command and --resume auto after "
                      f"-- (run folder {run})")
        return
    console.print(f"[green]done[/green]: training job {job.job_id} finished"
                  + (f" after {requeued} requeue(s)" if requeued else "") + f"; run folder {run}")


def _failure_reason(job: Any, err: Exception) -> str:
    """Why a job failed, in one line: the training's own ``error: ...`` line from a task's log, else the
    exception the task ended with (submitit's error text ends with the paths of the logs, not the reason)."""
    import re

    found = []
    for k in range(job.num_tasks):
        try:
            text = job.task(k).paths.stderr.read_text(errors="replace")
        except OSError:
            continue
        found += [line[7:].strip() for line in text.splitlines() if line.lower().startswith("error: ")]
    if found:
        return found[-1]
    raised = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", str(err), flags=re.M)
    if raised:
        return f"{raised[-1][0]}: {raised[-1][1]}"
    head = " ".join(str(err).split("Error stream produced")[0].split())  # a task that left no result
    return head or type(err).__name__
