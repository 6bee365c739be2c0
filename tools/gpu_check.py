"""One-call check of vidnet on a GPU machine: training speed, memory, data loading, GPU JPEG decode, cuda tests.

Run from a copy of the repository on a machine whose Python has torch (CUDA), torchvision, typer, rich, opencv,
h5py, pyyaml and tensorboard::

    python tools/gpu_check.py [--wheels DIR] [--json gpu.json]      # about 8 minutes on one GPU
    python tools/gpu_check.py --dry-run                               # the same steps on the CPU, tiny sizes

What it does, in order, each step under a time budget (a step that would overrun is skipped and says so):

1. installs what vidnet needs beyond that (PyAV, simplejpeg, albumentations, coloredlogs, and their own
   dependencies the machine lacks) from the wheel files in ``--wheels`` (default: ``tools/wheels``, beside this
   script) with ``pip install --no-index --find-links DIR --no-deps``: nothing is fetched from the network and
   nothing installed is replaced. ``--dry-run`` only reports what is missing;
2. generates a small dataset (`vidnet.data.sample`) and converts it (`vidnet.data.ingest`);
3. trains ``srtg_r3d_50`` and ``r3d_18`` at 16x112x112 on a fixed synthetic batch for a fixed number of steps in
   fp32, bf16 and fp16 (with a GradScaler), with and without channels-last, then compiled (``torch.compile``) in
   each precision with the memory format that was faster; prints clips/s, peak memory and the first-steps time;
4. reads the dataset through `VideoClipDataset` and a DataLoader at 4, 8 and 16 workers and compares the time to
   read a batch with the time of a training step (bf16): the loader keeps up when it reads faster;
5. decodes the same JPEG frames with ``torchvision.io.decode_jpeg(..., device="cuda")`` in batches and with CPU
   worker processes (simplejpeg, as the store's reader);
6. runs the tests marked ``cuda``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDED = {"av": "av", "simplejpeg": "simplejpeg", "albumentations": "albumentations", "coloredlogs": "coloredlogs"}
"""Import name -> pip name of what a GPU machine's Python may lack."""
MODELS = ("srtg_r3d_50", "r3d_18")
DRY_MODELS = ("tiny_3d",)
"""What the dry run trains by default: on a shared 2-core CPU one srtg_r3d_50 step at 2x4x32x32 took 11-21 s,
too slow for CI (``--models srtg_r3d_50,r3d_18`` dry-runs the real ones)."""
PRECISIONS = ("fp32", "bf16", "fp16")


class Budget:
    """Seconds left for the whole check; a step asks before it starts."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def allows(self, seconds: float, what: str) -> bool:
        if self.left() >= seconds:
            return True
        print(f"  skipped: {what} (about {seconds:.0f} s needed, {max(0.0, self.left()):.0f} s of the budget left)")
        return False


class Stopwatch:
    """``with Stopwatch(cuda) as sw: ...``, then ``sw.seconds``: the block's wall time. With ``cuda`` the GPU's
    queue is drained as the clock starts and before it stops, so that the time covers the work, not its launch."""

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def __enter__(self) -> Stopwatch:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def ensure_packages(wheels: Path, dry_run: bool) -> dict[str, str]:
    """Import the packages vidnet needs; when one is missing, install the wheel files of ``wheels`` whose
    distribution is not installed yet, offline and without dependency resolution (``--no-index --find-links
    DIR --no-deps``): the folder names exactly what is added, and nothing the machine has (its OpenCV, NumPy,
    torch) is replaced."""
    missing = [pip for mod, pip in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        if not wheels.is_dir():
            raise SystemExit(f"error: {wheels}: no such folder of wheel files, and {', '.join(missing)} "
                             f"cannot be imported (see docs/train.md, GPU checks)")
        names = sorted({w.name.split("-")[0].lower().replace("_", "-") for w in wheels.glob("*.whl")})
        todo = [n for n in names if not _installed(n)]
        lacking = [m for m in missing if m not in names]
        if lacking:
            raise SystemExit(f"error: {wheels}: no wheel file for {', '.join(lacking)}")
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--no-deps", *todo]
        if dry_run:
            print(f"  missing: {', '.join(missing)}; a GPU run would install them with: {' '.join(cmd)}")
        else:
            print(f"  installing {', '.join(todo)} from {wheels} ...", flush=True)
            subprocess.run(cmd, check=True)
            importlib.invalidate_caches()
    versions = {}
    for mod in NEEDED:
        try:
            versions[mod] = getattr(importlib.import_module(mod), "__version__", "?")
        except ImportError as err:
            if not dry_run:
                raise SystemExit(f"error: {mod} does not import after the install ({err}); add its missing "
                                 f"dependencies' wheel files to {wheels}") from None
            versions[mod] = "missing"
    return versions


def make_dataset(out: Path, tiny: bool) -> Path:
    """A sample dataset converted to stores: 4 classes x 8 videos of 48-64 frames at 160x120 (tiny: 2 x 2 x 16)."""
    from vidnet.data.ingest import ConvertOptions, convert_dataset
    from vidnet.data.sample import SampleOptions, make_sample_dataset

    videos, frames = out / "videos", out / "frames"
    opts = (SampleOptions(classes=2, videos_per_class=2, min_frames=16, max_frames=16, width=64, height=48,
                          val_fraction=0.0, workers=1) if tiny else
            SampleOptions(classes=4, videos_per_class=8, min_frames=48, max_frames=64, width=160, height=120,
                          val_fraction=0.0))
    make_sample_dataset(videos, opts)
    summary = convert_dataset(videos, frames, ConvertOptions(workers=1 if tiny else 0, checksum=False))
    if summary.failed:
        raise SystemExit(f"error: {frames}: {summary.failed} video(s) failed to convert")
    return frames


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train_speed(name: str, precision: str, channels_last: bool, compiled: bool, *, device, batch: int, frames: int,
                size: int, warmup: int, steps: int, dry_run: bool) -> dict:
    """Clips/s of forward + backward + SGD steps on a fixed batch, peak memory, and the warm-up time."""
    import torch

    from vidnet.network import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=16).to(device)
    x = torch.randn(batch, 3, frames, size, size, device=device)
    y = torch.randint(0, 16, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    net = torch.compile(model, backend="aot_eager" if dry_run else "inductor") if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    cuda = device.type == "cuda"

    def step() -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with Stopwatch(cuda) as first:
        for _ in range(warmup):
            loss = step()
    with Stopwatch(cuda) as timed:
        for _ in range(steps):
            loss = step()
    seconds = timed.seconds
    value = float(loss.detach())
    result = {"model": name, "precision": precision, "channels_last": channels_last, "compiled": compiled,
              "batch": batch, "clips_per_s": batch * steps / seconds, "step_ms": seconds / steps * 1e3,
              "warmup_s": first.seconds, "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
              "loss": value, "finite": math.isfinite(value)}
    return result


def loader_speed(root: Path, workers: int, batch: int, frames: int, size: int, batches: int, pin: bool) -> float:
    """Clips/s of reading training clips (augmentation included) through a DataLoader, after a warm-up batch."""
    from torch.utils.data import DataLoader

    from vidnet.data.dataset import VideoClipDataset

    ds = VideoClipDataset(root, "train", num_frames=frames, size=(size, size), seed=0)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=pin, drop_last=False,
                        persistent_workers=False)
    it = iter(loader)
    next(it)
    n = 0
    with Stopwatch() as sw:
        for _ in range(batches):
            try:
                b = next(it)
            except StopIteration:
                it = iter(loader)
                b = next(it)
            n += b["clip"].shape[0]
    return n / sw.seconds


def _decode_chunk(blobs: list[bytes]) -> int:
    from vidnet.data.store import decode_jpeg

    for b in blobs:
        decode_jpeg(b)
    return len(blobs)


def jpeg_decode(root: Path, cpu_workers: list[int], device, n_frames: int) -> dict:
    """Frames/s decoding the same JPEG frames on the GPU (batched) and with CPU worker processes."""
    from vidnet._mp import process_pool
    from vidnet.data.store import FrameStore

    blobs: list[bytes] = []
    for db in sorted(root.rglob("frames.db")):
        with FrameStore(db) as store:
            blobs += store.get_bytes(range(len(store)))
        if len(blobs) >= n_frames:
            break
    blobs = (blobs * math.ceil(n_frames / len(blobs)))[:n_frames]
    out: dict = {"frames": len(blobs)}
    for w in cpu_workers:
        chunks = [blobs[i::w * 4] for i in range(w * 4)]
        with process_pool(w) as pool:
            pool.map(_decode_chunk, chunks[:w])  # start-up and imports, untimed
            with Stopwatch() as sw:
                pool.map(_decode_chunk, chunks)
            out[f"cpu_{w}_workers_fps"] = len(blobs) / sw.seconds
    try:
        import torch
        import torchvision
        from torchvision.io import decode_jpeg
    except ImportError:
        out["gpu"] = "torchvision not installed: GPU decode not measured"
        return out
    if device.type != "cuda":
        out["gpu"] = f"no CUDA device (torchvision {torchvision.__version__}): GPU decode not measured"
        return out
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    for batch in (64, 256):
        decode_jpeg(data[:batch], device="cuda")  # initialises nvjpeg
        with Stopwatch(cuda=True) as sw:
            for i in range(0, len(data), batch):
                decode_jpeg(data[i:i + batch], device="cuda")
        out[f"gpu_batch_{batch}_fps"] = len(data) / sw.seconds
    return out


def cuda_tests() -> dict:
    # Only the files that mark a test cuda: collecting the whole suite takes a minute on a slow machine.
    files = sorted(str(p) for p in (ROOT / "tests").rglob("test_*.py") if "mark.cuda" in p.read_text())
    if not files:
        return {"returncode": 5, "summary": "no test is marked cuda", "seconds": 0.0}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with Stopwatch() as sw:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": proc.returncode, "summary": tail, "seconds": sw.seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at tiny sizes (CI runs this)")
    ap.add_argument("--wheels", type=Path, default=Path(__file__).resolve().parent / "wheels",
                    help="folder of wheel files for the packages the machine lacks (default: tools/wheels)")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one, removed)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole check (default 450; dry 300)")
    ap.add_argument("--models", help=f"comma-separated networks to train (default: {','.join(MODELS)}; dry run: "
                                      f"{','.join(DRY_MODELS)})")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args(argv)
    dry = args.dry_run
    budget = Budget(args.budget if args.budget is not None else 300.0 if dry else 450.0)
    t_start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    res: dict = {"dry_run": dry}

    _section("environment")
    res["packages"] = ensure_packages(args.wheels, dry)
    import torch

    cuda = torch.cuda.is_available() and not dry
    if not dry and not cuda:
        print("error: no CUDA device (run with --dry-run to check the script on the CPU)")
        return 1
    device = torch.device("cuda" if cuda else "cpu")
    res["device"] = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    res["torch"] = torch.__version__
    print(f"  {res['device']}; torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if cuda else "")
          + f"; {', '.join(f'{k} {v}' for k, v in res['packages'].items())}")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    batch, frames, size = (2, 4, 32) if dry else (32, 16, 112)
    warmup, steps = (1, 1) if dry else (3, 10)
    workers = [0, 1, 2] if dry else [4, 8, 16]
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else (
        DRY_MODELS if dry else MODELS)

    with tempfile.TemporaryDirectory(prefix="vidnet-gpu-check-") as tmp:
        work = args.out or Path(tmp)
        _section("dataset")
        with Stopwatch() as sw:
            root = make_dataset(work, tiny=dry)
        print(f"  {root}: {sum(1 for _ in root.rglob('frames.db'))} videos in {sw.seconds:.0f} s")

        _section(f"training steps, {batch}x{frames}x{size}x{size} clips, {warmup} warm-up + {steps} timed steps")
        runs: list[dict] = []

        def show(r: dict) -> None:
            layout = "channels-last" if r["channels_last"] else "contiguous"
            print(f"  {r['model']:12s} {r['precision']:5s} {layout:13s} "
                  f"{'compiled' if r['compiled'] else 'eager':8s} {r['clips_per_s']:8.1f} clips/s "
                  f"{r['step_ms']:8.1f} ms/step  peak {r['peak_mem_gb']:6.2f} GB  warm-up {r['warmup_s']:6.1f} s"
                  f"{'' if r['finite'] else '  LOSS NOT FINITE'}", flush=True)

        common = {"device": device, "batch": batch, "frames": frames, "size": size, "warmup": warmup, "steps": steps,
                  "dry_run": dry}
        def run(name: str, precision: str, cl: bool, compiled: bool) -> None:
            try:
                runs.append(train_speed(name, precision, cl, compiled, **common))
                show(runs[-1])
            except Exception as err:  # one configuration failing must not end a one-shot check
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                runs.append({"model": name, "precision": precision, "channels_last": cl, "compiled": compiled,
                             "error": f"{type(err).__name__}: {reason}", "finite": True})
                print(f"  {name:12s} {precision:5s} {'channels-last' if cl else 'contiguous':13s} "
                      f"{'compiled' if compiled else 'eager':8s} FAILED: {runs[-1]['error']}", flush=True)
            _free(device)

        if dry:
            print(f"  dry run: {', '.join(models)} stand(s) in for {', '.join(MODELS)}")
        for name in models:
            for precision in PRECISIONS:
                for cl in (False, True):
                    if budget.allows(10 if dry else 15, f"{name} {precision} eager"):
                        run(name, precision, cl, False)
        for name in models:
            for precision in PRECISIONS:
                eager = [r for r in runs if (r["model"], r["precision"], r["compiled"]) == (name, precision, False)
                         and "error" not in r]
                cl = max(eager, key=lambda r: r["clips_per_s"])["channels_last"] if eager else False
                if budget.allows(20 if dry else 60, f"{name} {precision} compiled"):
                    run(name, precision, cl, True)
        res["training"] = runs

        _section(f"data loading: training clips ({frames}x{size}x{size}, augmented) read through a DataLoader")
        step_rate = {}
        for name in models:
            rates = [r["clips_per_s"] for r in runs if r["model"] == name and r["precision"] == "bf16"
                     and "error" not in r]
            if rates:
                step_rate[name] = max(rates)
        loading = []
        for w in workers:
            if not budget.allows(10 if dry else 30, f"loader with {w} workers"):
                continue
            rate = loader_speed(root, w, batch, frames, size, 2 if dry else 20, pin=cuda)
            row = {"workers": w, "clips_per_s": rate, "read_ms_per_batch": batch / rate * 1e3}
            for name, train_rate in step_rate.items():
                row[f"{name}_step_ms"] = batch / train_rate * 1e3
                row[f"keeps_up_{name}"] = rate >= train_rate
            loading.append(row)
            verdicts = ", ".join(f"{n} bf16 step {row[f'{n}_step_ms']:.1f} ms: "
                                 f"{'keeps up' if row[f'keeps_up_{n}'] else 'does NOT keep up'}" for n in step_rate)
            print(f"  {w:2d} workers: {rate:8.1f} clips/s, {row['read_ms_per_batch']:.1f} ms per batch of {batch} "
                  f"({verdicts})", flush=True)
        res["loading"] = loading

        _section("JPEG decode of the same frames: GPU (torchvision, batched) against CPU worker processes")
        if budget.allows(5 if dry else 30, "JPEG decode"):
            res["jpeg"] = jpeg_decode(root, [1, 2] if dry else [4, 8, 16], device, 64 if dry else 8192)
            j = res["jpeg"]
            print(f"  {j['frames']} frames: " + ", ".join(f"{k.removesuffix('_fps').replace('_', ' ')} {v:,.0f} "
                                                          f"frames/s" for k, v in j.items() if k.endswith("_fps")))
            if "gpu" in j:
                print(f"  {j['gpu']}")

        _section("tests marked cuda")
        if budget.allows(20, "cuda tests"):
            res["cuda_tests"] = cuda_tests()
            c = res["cuda_tests"]
            print(f"  pytest -m cuda: {c['summary']} (exit {c['returncode']}, {c['seconds']:.0f} s)")

    res["seconds"] = time.perf_counter() - t_start
    print(f"\n{res['seconds']:.0f} s in all" + (" (dry run: CPU, tiny sizes; no figure here is a GPU figure)"
                                               if dry else ""))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    bad = [r for r in res.get("training", []) if not r["finite"]]
    cuda_failed = res.get("cuda_tests", {}).get("returncode", 0) not in (0, 5)  # 5: no test collected
    return 1 if bad or cuda_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
