"""What evaluation costs a study run: inference img/s against training img/s, side by side in one process.

For each segments value, interleaving the three measurements `--repeats` times so that machine drift hits
them alike: a training step (`xablate.engine.train_step`, batch 256), evaluation as the harness runs it
(`xablate.engine.evaluate`: inference mode, channels_last, `data.eval_batch_size` 1024) and evaluation as it
ran before (no_grad, NCHW input, the training batch of 256). From the medians it prints, as Markdown for
BENCHMARKS.md, the share of a run's wall time that `trainer.evals` evaluations of the held-out split plus
one test pass take.

Usage (with the malloc variables `python -m xablate` sets for itself):
  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \
      python benchmarks/eval_cost.py [--segments 1 4 16 depthwise] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from xablate import create_model
from xablate.axes import parse_segments
from xablate.data import TensorLoader
from xablate.engine.build import StepParts, evaluate, train_step

TRAIN_IMAGES, HOLDOUT, TEST = 55_000, 5_000, 10_000
"""Fashion-MNIST as the studies split it: training images left after the holdout, validation, test."""


def step_parts(model: nn.Module) -> StepParts:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return StepParts(
        model, model, optimizer, nn.CrossEntropyLoss(label_smoothing=0.1), scaler, None, torch.device("cpu")
    )


def loader(n: int, batch: int) -> TensorLoader:
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    return TensorLoader(images, labels, batch_size=batch, mean=[0.286], std=[0.353], seed=0, train=False)


def timed(action: Callable[[], int]) -> float:
    """Images per second of one call of `action` (which returns how many images it processed)."""
    started = time.perf_counter()
    images = action()
    return images / (time.perf_counter() - started)


def measure(segments: object, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model("xception_mini", num_classes=10, in_chans=1, segments=parse_segments(segments))
    model = model.to(memory_format=torch.channels_last)
    parts = step_parts(model)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    now, before = loader(2048, 1024), loader(2048, 256)

    def train() -> int:
        for _ in range(4):
            train_step(parts, x, y, 0.01)
        return 4 * 256

    def evaluate_now() -> int:
        evaluate(model, now, parts.device, "32", memory_format=torch.channels_last)
        return now.num_samples

    def evaluate_before() -> int:
        with torch.no_grad():
            model.eval()
            for images, _ in before.batches(0):
                model(images)
            model.train()
        return before.num_samples

    train()
    samples: dict[str, list[float]] = {"train": [], "eval": [], "eval_before": []}
    for _ in range(repeats):
        samples["train"].append(timed(train))
        samples["eval"].append(timed(evaluate_now))
        samples["eval_before"].append(timed(evaluate_before))
    return {name: statistics.median(values) for name, values in samples.items()}


def share(rates: dict[str, float], evals: int, epochs: float, eval_rate: str = "eval") -> float:
    train_s = TRAIN_IMAGES * epochs / rates["train"]
    eval_s = (HOLDOUT * evals + TEST) / rates[eval_rate]
    return eval_s / (train_s + eval_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", nargs="+", default=["1", "4", "16", "depthwise"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads\n")
    head = "| segments | train img/s | eval img/s | eval img/s before | share, 10 evals | 20 evals | 10 before |"
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|")
    for segments in args.segments:
        rates = measure(segments, args.repeats)
        cells = [
            f"{rates['train']:,.0f}", f"{rates['eval']:,.0f}", f"{rates['eval_before']:,.0f}",
            f"{share(rates, 10, args.epochs):.1%}", f"{share(rates, 20, args.epochs):.1%}",
            f"{share(rates, 10, args.epochs, 'eval_before'):.1%}",
        ]  # fmt: skip
        print(f"| {segments} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
