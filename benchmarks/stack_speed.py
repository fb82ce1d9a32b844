"""Training-step time of K seeds of one cell: K separate models stepped one after another, against the same K
seeds folded into one model (`trainer.stack=K`), on the CPU or a GPU.

Both routes run the engine as a run builds it (`build_engine` per seed, `build_stack_engine` for the stack)
and its real step (`xablate.engine.train_step`: forward, loss, backward, optimiser step) on the run's own
batches. Repetitions of the two routes alternate, so machine drift hits both; each number is a median over
repetitions of `--steps` steps, synchronised on a GPU. Printed as Markdown for BENCHMARKS.md: images per
second of each route (all K seeds together) and the arithmetic rate the faster one reaches (each image's
multiply-adds x 2 FLOP x 3 for forward and backward), to set against the device's peak.

Usage: python benchmarks/stack_speed.py [--k 2 4] [--segments depthwise 4 1] [--device cpu] [--threads 2]
Run it with the malloc variables xablate sets for itself, as `python -m xablate` does:
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 python benchmarks/stack_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from xablate.engine.build import Engine, build_engine, train_step
from xablate.engine.runtime import synchronize
from xablate.engine.stack import build_stack_engine
from xablate.spec.resolvers import register_resolvers
from xablate.spec.schema import register_configs
from xablate.spec.validate import validate
from xablate.sweep.check import CONF_DIR


def configs(segments: str, k: int, args: argparse.Namespace) -> list[DictConfig]:
    """The K seeds' configs, composed as the command composes them, each validated."""
    register_configs()
    register_resolvers()
    overrides = [f"segments={segments}", f"trainer.device={args.device}", f"data.batch_size={args.batch}",
                 f"trainer.stack={k}", "data.train_subset=20000", "logger.mode=disabled"]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    out = []
    for seed in range(k):
        one = cfg.copy()
        with open_dict(one):
            one.seed = seed
        out.append(one)
    return out


def stepper(engines: list[Engine], device: torch.device, steps: int) -> Callable[[], float]:
    """`steps` training steps of each engine, one engine after another per step; seconds, synchronised."""
    batches = [iter(e.loaders.train.batches(0)) for e in engines]

    def run() -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            for engine, it in zip(engines, batches, strict=True):
                try:
                    x, y = next(it)
                except StopIteration:
                    it = iter(engine.loaders.train.batches(1))
                    x, y = next(it)
                train_step(engine.parts, x, y, 0.01)
        synchronize(device)
        return time.perf_counter() - start

    return run


def measure(segments: str, k: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """Images/s of K separate engines and of the folded one, and the multiply-adds of one image."""
    device = torch.device(args.device)
    cfgs = configs(segments, k, args)
    cells = [validate(cfg) for cfg in cfgs]
    with open_dict(cfgs[0]):
        cfgs[0].trainer.stack = 1
    alone = [build_engine(cfg, cell, device) for cfg, cell in zip(cfgs, cells, strict=True)]
    with open_dict(cfgs[0]):
        cfgs[0].trainer.stack = k
    folded = [build_stack_engine(cfgs[0], cells, device)]
    routes = {"alone": stepper(alone, device, args.steps), "folded": stepper(folded, device, args.steps)}
    for route in routes.values():
        route()
    times: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(args.reps):
        for name, route in routes.items():
            times[name].append(route())
    images = k * args.batch * args.steps
    return (images / statistics.median(times["alone"]), images / statistics.median(times["folded"]),
            alone[0].cost.macs)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--segments", nargs="+", default=["depthwise", "4", "1"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch} a seed, fp32, channels_last")
    print("| segments | K | K separate img/s | folded img/s | folded / separate | TFLOP/s of the faster |")
    print("|---|---:|---:|---:|---:|---:|")
    for segments in args.segments:
        for k in args.k:
            alone, folded, macs = measure(segments, k, args)
            tflops = max(alone, folded) * macs * 6 / 1e12
            print(f"| {segments} | {k} | {alone:,.0f} | {folded:,.0f} | {folded / alone:.2f} | {tflops:.3f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
