"""How long the pieces of a cell take on this machine: building it, a training step, an evaluated image, a
checkpoint, loading its data. `StepTimer` holds one architecture ready to time; `time_together` times several.

Measured with the run's own parts (the model, optimiser, loss and scaler that `step_parts` builds, the
`train_step` and `evaluate` the loop calls, the checkpoint writer) on random tensors of the cell's shapes,
so a dry run can say how long a sweep will take without training it. The data's own cost per step (about
1 ms for the in-memory data sets, BENCHMARKS.md) is left out; loading the data is timed on its own.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor

from ..data import build_loaders
from ..model import spatial
from ..model.costs import profile
from ..spec.architecture import build_model, input_shape
from .build import StepParts, evaluate, step_parts, train_step
from .checkpoint import CHECKPOINT, save_checkpoint
from .distributed import SINGLE
from .runtime import check_precision, deterministic, memory_format_of, synchronize

WARMUP_STEPS = 1
"""Steps run before any is timed: the first allocates, chooses kernels and (with compile) compiles. One more,
timed alone, sets how many steps make a chunk, and the first chunk is warm-up too (with 2 threads on a busy
machine it still ran at up to 3 times the steady step)."""


@dataclass(frozen=True)
class StepTimes:
    """Seconds a cell's pieces took: `build_s` to build the model and its optimiser, `warmup_s` what the
    first steps took beyond steady ones, then a steady training step, one evaluated image, one checkpoint."""

    build_s: float
    warmup_s: float
    step_s: float
    eval_image_s: float
    checkpoint_s: float
    steps: int
    """How many steady steps `step_s` is the mean of."""


class _OneBatch:
    """A split of a single batch, iterated as `evaluate` iterates a loader."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y, self.num_samples = x, y, len(y)

    def __len__(self) -> int:
        return 1

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        yield self.x, self.y


def _random_batch(cfg: DictConfig, size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((size, *input_shape(cfg)), generator=generator)
    y = torch.randint(0, cfg.data.num_classes, (size,), generator=generator)
    return x.to(device), y.to(device)


def _steps(parts: StepParts, batch: tuple[Tensor, Tensor], count: int) -> float:
    """Seconds for `count` training steps at learning rate 0 (the same kernels; the weights stay finite)."""
    started = time.perf_counter()
    for _ in range(count):
        train_step(parts, *batch, 0.0)
    synchronize(parts.device)
    return time.perf_counter() - started


def _build(cfg: DictConfig, device: torch.device) -> tuple[StepParts, float]:
    """The run's model and step parts on `device`, and the seconds that took."""
    started = time.perf_counter()
    model = build_model(cfg)
    profile(model, input_shape(cfg))
    model.to(device=device, memory_format=memory_format_of(cfg.trainer.channels_last))
    parts, _ = step_parts(cfg, model, (1, 1), device, SINGLE)
    synchronize(device)
    return parts, time.perf_counter() - started


class StepTimer:
    """One architecture, built (twice: the first build in a process pays for what every later one finds
    ready) and warmed up, then timed a chunk of steps at a time. A chunk lasts at least 0.1 s, so that a GPU
    is waited for once a chunk, as the loop waits once a logging interval."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        check_precision(device, str(cfg.trainer.precision))
        deterministic(device, cfg.trainer.deterministic)
        self.cfg, self.device, self.fast_backward = cfg, device, bool(cfg.trainer.fast_backward)
        spatial.enable(self.fast_backward)
        _build(cfg, device)
        self.parts, self.build_s = _build(cfg, device)
        self.batch = _random_batch(cfg, cfg.data.batch_size, device)
        self.warm_s = _steps(self.parts, self.batch, WARMUP_STEPS)
        one = _steps(self.parts, self.batch, 1)
        self.chunk = max(1, math.ceil(0.1 / max(one, 1e-6)))
        self.warm_s += one + _steps(self.parts, self.batch, self.chunk)
        self.warm_steps = WARMUP_STEPS + 1 + self.chunk
        self.per_step: list[float] = []
        self.eval_passes: list[float] = []
        self.split = _OneBatch(*_random_batch(cfg, cfg.data.eval_batch_size or cfg.data.batch_size, device))
        self.evaluate()

    def run_chunk(self) -> None:
        spatial.enable(self.fast_backward)
        self.per_step.append(_steps(self.parts, self.batch, self.chunk) / self.chunk)

    def settled(self, seconds: float) -> bool:
        """At least `seconds` and 3 chunks timed, and the mean known within 3%; or 3 x `seconds` timed."""
        spent = sum(self.per_step) * self.chunk
        if len(self.per_step) < 3 or spent < seconds:
            return False
        error = statistics.stdev(self.per_step) / math.sqrt(len(self.per_step))
        return error <= 0.03 * statistics.fmean(self.per_step) or spent >= 3 * seconds

    def evaluate(self) -> float:
        """Seconds one evaluation pass over a batch of `data.eval_batch_size` took (the first warms up)."""
        started = time.perf_counter()
        evaluate(self.parts.eval_model, self.split, self.device, self.parts.precision, SINGLE, self.parts.memory_format)
        self.eval_passes.append(time.perf_counter() - started)
        return self.eval_passes[-1]

    def result(self, scratch: Path) -> StepTimes:
        """The times, once a checkpoint has been written (twice; the second timed) into the folder `scratch`."""
        state = {**self.parts.state_dict(), "state": {}}
        save_checkpoint(scratch / CHECKPOINT, state)
        started = time.perf_counter()
        save_checkpoint(scratch / CHECKPOINT, state)
        checkpoint_s = time.perf_counter() - started
        step_s = statistics.fmean(self.per_step)
        eval_image_s = statistics.fmean(self.eval_passes[1:]) / self.split.num_samples
        warmup_s = max(0.0, self.warm_s - self.warm_steps * step_s)
        return StepTimes(self.build_s, warmup_s, step_s, eval_image_s, checkpoint_s, self.chunk * len(self.per_step))


def time_together(timers: Sequence[StepTimer], seconds: float = 1.5) -> None:
    """Time `timers` in turns, a chunk of steps each, until each one's mean step is settled, then an evaluation
    pass each (after the one that warmed up). In turns, so that another process's load on a shared machine
    falls on all of them alike, not on whichever was being timed. The mean, not the median: a run pays for its
    slowed steps too."""
    while not all(timer.settled(seconds) for timer in timers):
        for timer in timers:
            if not timer.settled(seconds):
                timer.run_chunk()
    for timer in timers:
        timer.evaluate()


def time_data(cfg: DictConfig, device: torch.device) -> float:
    """Seconds to read `cfg.data` and make its loaders on `device`, as each cell does when it starts."""
    started = time.perf_counter()
    build_loaders(cfg.data, seed=0, device=device)
    synchronize(device)
    return time.perf_counter() - started
