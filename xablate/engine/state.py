"""What a run carries from step to step and across a resume: its progress, its clocks, its checkpoint,
and which attempt at the cell it is."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .build import Engine
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .meter import IntervalMeter


@dataclass
class TrainState:
    """The run's progress besides model, optimiser, RNG and the interval's metrics (see `IntervalMeter`)."""

    step: int = 0
    best_val_top1: float = 0.0
    wall_s: float = 0.0
    train_s: float = 0.0
    train_images: int = 0
    eval_s: float = 0.0
    last_val: dict[str, float] | None = None
    last_test: dict[str, float] | None = None
    hardware: list[str] = field(default_factory=list)
    """Where the steps ran, in order: one entry, or more when the run resumed on another kind of machine."""


class Clock:
    """The run's wall time (continuing a resumed run's) and laps of training time, evaluation left out."""

    def __init__(self, wall_s: float) -> None:
        self.started = time.perf_counter() - wall_s
        self.restart()

    def restart(self) -> None:
        self._lap_start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self._lap_start = now - self._lap_start, now
        return seconds

    def wall_s(self) -> float:
        return time.perf_counter() - self.started


class Checkpoint:
    """`checkpoint.pt`: the step's parts, the progress and the interval's metrics (RNG states are added by
    `save_checkpoint`). Only the main process writes it; every process reads it."""

    def __init__(self, path: Path, engine: Engine, meter: IntervalMeter, *, writer: bool) -> None:
        self.path, self.engine, self.meter, self.writer = path, engine, meter, writer
        self.last_step = 0

    def save(self, state: TrainState) -> None:
        self.last_step = state.step
        if self.writer:
            progress = {**asdict(state), **self.meter.state_dict()}
            save_checkpoint(self.path, {**self.engine.parts.state_dict(), "state": progress})

    def restore(self, device: torch.device) -> TrainState | None:
        ckpt = load_checkpoint(self.path, device)
        if ckpt is None:
            return None
        self.engine.parts.load_state_dict(ckpt)
        fields = TrainState.__dataclass_fields__
        state = TrainState(**{k: v for k, v in ckpt["state"].items() if k in fields})
        self.meter.load_state_dict(ckpt["state"])
        set_rng_state(ckpt["rng"])
        self.last_step = state.step
        return state


@dataclass(frozen=True)
class Attempt:
    """Which attempt at the cell this is (`rerun=true` starts the next), what kind of job it is (`train`, or
    `tune` for a trial of a learning-rate search) and what the summary records besides the run's own values."""

    number: int = 1
    job_type: str = "train"
    record: dict[str, Any] = field(default_factory=dict)
