"""Training speed of xablate on this machine, printed as Markdown for BENCHMARKS.md.

Measures, side by side in one process tree so that ratios survive a noisy machine:
  1. images/s of a bare PyTorch loop (same model, batch, threads, memory format; random tensors already
     on the device) for each segments value, with and without channels_last, and the implied epoch time;
  2. the harness: `python -m xablate` for the same cell, its `train_img_per_s` (evaluation excluded)
     against the bare loop's;
  3. data handling: the time to produce one augmented batch against the time of one training step.

Usage: python benchmarks/train_speed.py [--steps 40] [--segments 1 4 16 depthwise] [--threads 2]
Run it with the malloc variables xablate sets for itself, as `python -m xablate` does:
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 python benchmarks/train_speed.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from xablate import create_model
from xablate.axes import parse_segments
from xablate.config import DataConfig
from xablate.data import build_loaders
from xablate.runtime import autocast, synchronize

REPO = Path(__file__).resolve().parent.parent
TRAIN_IMAGES = 60_000


def bare_loop(
    segments: object,
    *,
    steps: int,
    batch: int,
    channels_last: bool,
    compile: bool = False,
    warmup: int = 5,
    model: str = "xception_mini",
    image_size: int = 28,
    in_chans: int = 1,
    num_classes: int = 10,
    device: str = "cpu",
    precision: str = "32",
) -> float:
    """Images/s of forward + backward + SGD step, nothing else, on random tensors already on the device.

    On the CPU: the median over `steps` timed steps (robust to a noisy shared machine). On a GPU: `steps`
    steps timed as one block between two synchronisations, since a synchronisation per step would stop the
    CPU from queueing the next step's kernels while the GPU runs, which the real loop does not do.
    """
    dev = torch.device(device)
    net = create_model(model, num_classes=num_classes, in_chans=in_chans, segments=parse_segments(segments))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(dev, memory_format=fmt)
    step_model = torch.compile(net) if compile else net
    x = torch.randn(batch, in_chans, image_size, image_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "16-mixed")
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(dev, precision):
            loss = loss_fn(step_model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    synchronize(dev)
    if dev.type == "cpu":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        times.sort()
        return batch / times[len(times) // 2]
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(dev)
    return batch * steps / (time.perf_counter() - start)


def harness(
    segments: object,
    *,
    steps: int | None,
    batch: int,
    channels_last: bool,
    threads: int | None = None,
    overrides: Sequence[str] = (),
    intervals: int = 1,
) -> dict:
    """The `summary.json` of a real `python -m xablate` run (Fashion-MNIST unless `overrides` say
    otherwise) of `steps` steps and one evaluation on 256 images, or with `steps=None` the whole default
    run; its `train_img_per_s` excludes evaluation. With `intervals` > 1, the steps are logged in that
    many intervals, and `steady_img_per_s` is the median img/s of all but the first (which holds the
    GPU's one-off start-up: cuDNN handles, allocator growth)."""
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
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
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


def data_share(*, batch: int, step_s: float) -> float:
    """Seconds to produce one augmented, normalised Fashion-MNIST batch, as a share of a step."""
    train = build_loaders(DataConfig(batch_size=batch), seed=0, device=torch.device("cpu")).train
    batches = train.batches(0)
    next(batches)
    start = time.perf_counter()
    count = 20
    for _ in range(count):
        next(batches)
    return (time.perf_counter() - start) / count / step_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--segments", nargs="+", default=["1", "4", "16", "depthwise"])
    parser.add_argument("--no-harness", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about 60 s to compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc = "set" if "MALLOC_MMAP_THRESHOLD_" in os.environ else "unset"
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} threads, batch {args.batch}, malloc variables {malloc}\n"
    )
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
