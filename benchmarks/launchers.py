"""Training speed of a sweep under each Hydra launcher, printed as Markdown for BENCHMARKS.md.

For each launcher and segments value, runs a real `python -m xablate -m` sweep of `--cells` cells (seeds
0, 1, ...; W&B off; Fashion-MNIST) and reports:
  - per-job img/s: the median `train_img_per_s` of its cells (training only, evaluation excluded);
  - sweep img/s: all cells' training images over the sweep's wall time, start-ups, data loading and
    evaluations included: what a study's wall time follows.

`basic` runs the cells one after another with every core; `joblib` runs `n_jobs` at a time with
cores // n_jobs threads each; `submitit_local` starts every cell at once with `cpus_per_task` threads.

Usage: python benchmarks/launchers.py [--steps 24] [--cells 2] [--segments 1 depthwise]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}


def sweep(launcher: str, segments: str, *, cells: int, steps: int, batch: int) -> tuple[float, float, int]:
    """(median per-job img/s, sweep img/s, threads per job) of one sweep."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "xablate", "-m", *LAUNCHERS[launcher], f"segments={segments}",
            "seed=" + ",".join(str(seed) for seed in range(cells)), f"trainer.max_steps={steps}",
            f"trainer.log_every={steps}", f"trainer.eval_every={steps}", f"data.batch_size={batch}",
            "data.val_subset=1000", "logger.mode=disabled", "study=bench", f"out_dir={tmp}",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
        summaries = [json.loads(p.read_text()) for p in Path(tmp).glob("bench/*/summary.json")]
    if len(summaries) != cells or any(s["status"] != "completed" for s in summaries):
        raise SystemExit(f"{launcher} segments={segments}: not every cell completed")
    per_job = statistics.median(s["train_img_per_s"] for s in summaries)
    images = sum(s["steps"] * batch for s in summaries)
    return per_job, images / wall, summaries[0]["threads"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24, help="gradient steps per cell")
    parser.add_argument("--cells", type=int, default=2, help="cells (seeds) per sweep")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--segments", nargs="+", default=["1", "depthwise"])
    parser.add_argument("--launchers", nargs="+", default=list(LAUNCHERS), choices=list(LAUNCHERS))
    args = parser.parse_args()
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}; {args.cells} cells of {args.steps} steps, batch {args.batch}\n"
    )
    print("| launcher | segments | threads per job | per-job img/s | sweep img/s |")
    print("|---|---|---|---|---|")
    for segments in args.segments:
        for launcher in args.launchers:
            per_job, overall, threads = sweep(launcher, segments, cells=args.cells, steps=args.steps, batch=args.batch)
            print(f"| {launcher} | {segments} | {threads} | {per_job:,.0f} | {overall:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
