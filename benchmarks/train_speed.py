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
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from xablate import create_model
from xablate.config import DataConfig
from xablate.data import build_loaders
from xablate.layers import parse_segments

REPO = Path(__file__).resolve().parent.parent
TRAIN_IMAGES = 60_000


def bare_loop(
    segments: object, *, steps: int, batch: int, channels_last: bool, compile: bool = False, warmup: int = 5
) -> float:
    """Images/s of forward + backward + SGD step, nothing else; median over `steps` timed steps."""
    model = create_model("xception_mini", num_classes=10, in_chans=1, segments=parse_segments(segments))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    step_model = torch.compile(model) if compile else model
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(step_model(x), y).backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return batch / times[len(times) // 2]


def harness(segments: object, *, steps: int, batch: int, channels_last: bool, threads: int) -> float:
    """`train_img_per_s` of a real `python -m xablate` run of `steps` steps on Fashion-MNIST."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "xablate", f"segments={segments}", f"trainer.max_steps={steps}",
            f"trainer.threads={threads}", f"trainer.channels_last={str(channels_last).lower()}",
            f"data.batch_size={batch}", f"trainer.log_every={steps}", f"trainer.eval_every={steps}",
            "data.val_subset=256", "logger.mode=disabled", f"out_dir={tmp}",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=tmp, capture_output=True, text=True)
        summary = json.loads(next(Path(tmp).glob("default/*/summary.json")).read_text())
    return summary["train_img_per_s"]


def data_share(*, batch: int, step_s: float) -> float:
    """Seconds to produce one augmented, normalised Fashion-MNIST batch, as a share of a step."""
    train, _ = build_loaders(DataConfig(batch_size=batch), seed=0, device=torch.device("cpu"))
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
                ours = harness(segments, steps=args.steps, batch=args.batch, channels_last=True, threads=args.threads)
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
