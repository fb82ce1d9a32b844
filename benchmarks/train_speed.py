"""Training speed of xablate on this machine, printed as Markdown for BENCHMARKS.md.

Measures, side by side in one process tree so that ratios survive a noisy machine:
  1. images/s of a bare PyTorch loop (same model, batch, threads, memory format; random tensors already
     on the device) for each segments value, with and without channels_last, and the implied epoch time;
  2. the harness: `python -m xablate` for the same cell, its `train_img_per_s` (evaluation excluded)
     against the bare loop's;
  3. data handling: the time to produce one augmented batch against the time of one training step.

With `--against COMMIT`, instead: the code of COMMIT, checked out into a temporary `git worktree`, against
this tree, side by side. Two worker processes (one importing each tree's `xablate`) take turns: old, new,
old, new... for `--reps` blocks of `--steps` timed steps each, so machine drift hits both; then one
harness run each (unless `--no-harness`), and the per-layer conv backward / forward table of
`conv_backward.py` (before = the library kernel, which is what the old code ran).

Usage: python benchmarks/train_speed.py [--steps 40] [--segments 1 4 16 depthwise] [--threads 2]
       python benchmarks/train_speed.py --against 177a66e [--reps 5] [--steps 6]
Run it with the malloc variables xablate sets for itself, as `python -m xablate` does:
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 python benchmarks/train_speed.py
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from xablate import create_model

try:  # the layered package (this tree)
    from xablate.axes import parse_segments
    from xablate.data import build_loaders
    from xablate.engine import build as engine
    from xablate.engine.runtime import synchronize
    from xablate.model import spatial
    from xablate.spec.schema import DataConfig, OptimConfig
except ImportError:  # a commit of the flat package, imported by an `--against` worker
    from xablate.config import DataConfig, OptimConfig  # type: ignore[no-redef]
    from xablate.runtime import synchronize  # type: ignore[no-redef]

    from xablate import engine, spatial  # type: ignore[no-redef]
    from xablate.axes import parse_segments
    from xablate.data import build_loaders

REPO = Path(__file__).resolve().parent.parent
TRAIN_IMAGES = 60_000


def training_step(
    segments: object,
    *,
    batch: int,
    channels_last: bool,
    compile: bool = False,
    model: str = "xception_mini",
    order: str = "depthwise_first",
    image_size: int = 28,
    in_chans: int = 1,
    num_classes: int = 10,
    device: str = "cpu",
    precision: str = "32",
) -> Callable[[], None]:
    """One forward + backward + SGD step of a fresh model on fixed random tensors already on the device:
    `xablate.engine.train_step` itself, with the run's own optimiser (`build_optimizer`)."""
    dev = torch.device(device)
    net = create_model(
        model, num_classes=num_classes, in_chans=in_chans, segments=parse_segments(segments), order=order
    )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(dev, memory_format=fmt)
    step_model = torch.compile(net) if compile else net
    x = torch.randn(batch, in_chans, image_size, image_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=dev)
    opt = engine.build_optimizer(OptimConfig(lr=0.01), net)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "16-mixed")
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    spatial.enable(True)  # what is compared: the opt-in hand-written backward (trainer.fast_backward)
    parts = engine.StepParts(net, step_model, opt, loss_fn, scaler, None, dev, precision, fmt)

    def step() -> None:
        engine.train_step(parts, x, y, 0.01)

    return step


def time_steps(step: Callable[[], None], *, steps: int, batch: int, device: str = "cpu") -> float:
    """Images/s of `steps` calls of `step`. On the CPU: the median step (robust to a noisy shared machine).
    On a GPU: the steps timed as one block between two synchronisations, since a synchronisation per step
    would stop the CPU from queueing the next step's kernels while the GPU runs, which the real loop does
    not do."""
    dev = torch.device(device)
    synchronize(dev)
    if dev.type == "cpu":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return batch / statistics.median(times)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(dev)
    return batch * steps / (time.perf_counter() - start)


def bare_loop(segments: object, *, steps: int, batch: int, warmup: int = 5, **kwargs: object) -> float:
    """Images/s of a bare training step (`training_step`, same keywords) after `warmup` steps."""
    step = training_step(segments, batch=batch, **kwargs)
    for _ in range(warmup):
        step()
    return time_steps(step, steps=steps, batch=batch, device=str(kwargs.get("device", "cpu")))


def harness(
    segments: object,
    *,
    steps: int | None,
    batch: int,
    channels_last: bool,
    threads: int | None = None,
    overrides: Sequence[str] = (),
    intervals: int = 1,
    root: Path = REPO,
) -> dict:
    """The `summary.json` of a real `python -m xablate` run (Fashion-MNIST unless `overrides` say
    otherwise) of `steps` steps and one evaluation on 256 images, or with `steps=None` the whole default
    run; its `train_img_per_s` excludes evaluation. With `intervals` > 1, the steps are logged in that
    many intervals, and `steady_img_per_s` is the median img/s of all but the first (which holds the
    GPU's one-off start-up: cuDNN handles, allocator growth). `root` is the tree whose `xablate` runs."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "xablate", f"segments={segments}", f"data.batch_size={batch}",
            f"trainer.channels_last={str(channels_last).lower()}", "logger.mode=disabled", f"out_dir={tmp}",
        ]  # fmt: skip
        if steps is not None:
            every = max(1, steps // intervals)
            cmd += [
                f"trainer.max_steps={steps}", f"trainer.log_every={every}", f"trainer.eval_every={steps}",
                "data.val_subset=256",
            ]  # fmt: skip
        cmd += overrides
        if threads is not None:
            cmd.append(f"trainer.threads={threads}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
        run_dir = next(Path(tmp).glob("default/*/"))
        summary = json.loads((run_dir / "summary.json").read_text())
        with (run_dir / "metrics.csv").open(newline="") as fh:
            rates = [float(row["img_per_s"]) for row in csv.DictReader(fh) if row["split"] == "train"]
        if len(rates) > 1:
            summary["steady_img_per_s"] = statistics.median(rates[1:])
        return summary


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def data_share(*, batch: int, step_s: float) -> float:
    """Seconds to produce one augmented, normalised Fashion-MNIST batch, as a share of a step."""
    train = build_loaders(DataConfig(batch_size=batch), seed=0, device=torch.device("cpu"))[0]
    batches = train.batches(0)
    next(batches)
    start = time.perf_counter()
    count = 20
    for _ in range(count):
        next(batches)
    return (time.perf_counter() - start) / count / step_s


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """`commit` checked out (detached) into a temporary git worktree, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="xablate-against-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tmp), commit], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield tmp
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp)], check=False)


class Worker:
    """A child process that imports `xablate` from `root` and times training steps on request."""

    def __init__(self, root: Path, batch: int, threads: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(root)}
        cmd = [sys.executable, __file__, "--worker", "--batch", str(batch), "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.source = self._read()["xablate"]
        if not self.source.startswith(str(root)):
            raise SystemExit(f"the worker for {root} imported xablate from {self.source}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark worker died (exit code {self.proc.wait()})")
        return json.loads(line)

    def img_per_s(self, segments: str, order: str, steps: int) -> float:
        self.proc.stdin.write(f"{segments} {order} {steps}\n")
        self.proc.stdin.flush()
        return self._read()["img_per_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve(batch: int) -> None:
    """The worker's loop: one `segments order steps` request per stdin line, one JSON answer per line."""
    import xablate

    print(json.dumps({"xablate": xablate.__file__}), flush=True)
    current: tuple[str, str] | None = None
    for line in sys.stdin:
        segments, order, steps = line.split()
        if current != (segments, order):
            current, step = (segments, order), training_step(segments, batch=batch, channels_last=True, order=order)
            for _ in range(3):
                step()
        print(json.dumps({"img_per_s": time_steps(step, steps=int(steps), batch=batch)}), flush=True)


def compare_bare(workers: dict[str, Worker], args: argparse.Namespace) -> None:
    """Bare-loop img/s, old against new, alternating which goes first (ABBA) over `args.reps` blocks."""
    print("| segments | order | old img/s | new img/s | new / old | per-block new / old |")
    print("|---|---|---:|---:|---:|---|")
    for order in args.orders:
        for segments in args.segments:
            rates: dict[str, list[float]] = {"old": [], "new": []}
            for rep in range(args.reps):
                for name in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                    rates[name].append(workers[name].img_per_s(segments, order, args.steps))
            old, new = statistics.median(rates["old"]), statistics.median(rates["new"])
            blocks = " ".join(f"{n / o:.2f}" for o, n in zip(rates["old"], rates["new"], strict=True))
            print(f"| {segments} | {order} | {old:,.0f} | {new:,.0f} | {new / old:.2f}x | {blocks} |", flush=True)


def compare_harness(old_root: Path, args: argparse.Namespace) -> None:
    """`train_img_per_s` of one short `python -m xablate` run per tree and segments value, alternated."""
    print("\n| segments | old harness img/s | new harness img/s | new / old |")
    print("|---|---:|---:|---:|")
    for i, segments in enumerate(args.segments):
        roots = {"old": old_root, "new": REPO}
        rates = {}
        for name in ("old", "new") if i % 2 == 0 else ("new", "old"):
            run = harness(segments, steps=args.harness_steps, batch=args.batch, channels_last=True,
                          threads=args.threads, root=roots[name])  # fmt: skip
            rates[name] = run["train_img_per_s"]
        print(f"| {segments} | {rates['old']:,.0f} | {rates['new']:,.0f} | {rates['new'] / rates['old']:.2f}x |",
              flush=True)  # fmt: skip


def against(args: argparse.Namespace) -> None:
    """The old code of `args.against` against this tree, side by side; then the per-layer table."""
    from conv_backward import layer_shapes, print_table

    with checkout(args.against) as old_root:
        workers = {"old": Worker(old_root, args.batch, args.threads), "new": Worker(REPO, args.batch, args.threads)}
        try:
            print(f"old: {args.against} ({workers['old'].source}); new: this tree ({workers['new'].source})\n")
            compare_bare(workers, args)
        finally:
            for worker in workers.values():
                worker.close()
        if not args.no_harness:
            compare_harness(old_root, args)
    if args.no_layers:
        return
    print("\nPer spatial layer of xception_mini (before = the library backward, after = the route taken now):\n")
    print_table(layer_shapes("xception_mini", ["1", "4", "16", "depthwise"], 28, 1), args.batch, reps=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--segments", nargs="+", default=["1", "4", "16", "depthwise"])
    parser.add_argument("--no-harness", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about 60 s to compile)")
    parser.add_argument("--against", metavar="COMMIT", help="compare with the code of COMMIT, side by side")
    parser.add_argument("--reps", type=int, default=5, help="--against: alternating blocks per code")
    parser.add_argument("--orders", nargs="+", default=["depthwise_first"], help="--against: orders to time")
    parser.add_argument("--harness-steps", type=int, default=20, help="--against: steps of each harness run")
    parser.add_argument("--no-layers", action="store_true", help="--against: without the per-layer table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        return serve(args.batch)
    malloc = "set" if "MALLOC_MMAP_THRESHOLD_" in os.environ else "unset"
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} threads, batch {args.batch}, malloc variables {malloc}\n"
    )
    if args.against:
        return against(args)
    print("| segments | channels_last | bare img/s | epoch (min) | harness img/s | harness / bare |")
    print("|---|---|---|---|---|---|")
    for segments in args.segments:
        for channels_last in (True, False):
            bare = bare_loop(segments, steps=args.steps, batch=args.batch, channels_last=channels_last)
            cells = [segments, channels_last, f"{bare:,.0f}", f"{TRAIN_IMAGES / bare / 60:.1f}"]
            if not args.no_harness and channels_last:
                run = harness(segments, steps=args.steps, batch=args.batch, channels_last=True, threads=args.threads)
                ours = run["train_img_per_s"]
                cells += [f"{ours:,.0f}", f"{ours / bare:.1%}"]
            else:
                cells += ["", ""]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    if args.compile:
        for segments in ("depthwise", "1"):
            compiled = bare_loop(segments, steps=args.steps, batch=args.batch, channels_last=True, compile=True)
            print(f"| {segments} | true, torch.compile | {compiled:,.0f} | {TRAIN_IMAGES / compiled / 60:.1f} | | |")
    step_s = args.batch / bare_loop("depthwise", steps=args.steps, batch=args.batch, channels_last=True)
    print(
        f"\nData handling (augmented Fashion-MNIST batch of {args.batch}): "
        f"{data_share(batch=args.batch, step_s=step_s):.2%} of a depthwise training step"
    )


if __name__ == "__main__":
    main()
