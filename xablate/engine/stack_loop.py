"""The training loop of a stack: K seeds of one cell as one folded model (`stack.py`), each seed with the
files its own run writes: `metrics.csv`, `checkpoint.pt` (its own slices: it resumes alone or with the stack)
and `summary.json`.

A seat is one seed's share of the loop. An active seat writes its folder; a passenger (a seed that completed
earlier) rides along unwritten, so the stack keeps its width and every active seed its numbers. A seat whose
loss stops being finite fails alone; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ..files import archive
from ..model.stack import fold
from ..spec.cell import Cell
from ..spec.record import run_record, write_summary
from .build import train_step
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from .log import METRICS, MetricsLog, RunLog
from .loop import run_values
from .meter import IntervalMeter
from .progress import Progress
from .runtime import hardware, synchronize
from .signals import StopSignal
from .stack import StackMeter, build_stack_engine, evaluate_stack, seat_states
from .state import Attempt, Clock, TrainState


@dataclass
class Seat:
    """One seed of the stack: its cell and folder, whether this stack writes them, its progress and files."""

    cell: Cell
    out: Path
    active: bool
    attempt: Attempt = field(default_factory=Attempt)
    state: TrainState = field(default_factory=TrainState)
    status: str = "interrupted"
    error: str | None = None
    log: RunLog | None = None
    meter: IntervalMeter | None = None

    def checkpoint(self, parts_state: dict[str, Any]) -> None:
        progress = {**asdict(self.state), **self.meter.state_dict()}
        save_checkpoint(self.out / CHECKPOINT, {**parts_state, "state": progress})


class StackLoop:
    """The loop of `seats` (K seeds of one cell, in stack order) over one folded engine."""

    def __init__(self, cfg: DictConfig, seats: Sequence[Seat], device: torch.device) -> None:
        self.cfg, self.seats, self.device, self.k = cfg, list(seats), device, len(seats)
        self.engine = build_stack_engine(cfg, [seat.cell for seat in seats], device)
        self.meter = StackMeter(device, self.k)
        self.step = self.restore()
        for seat, meter in zip(self.seats, self.meter.seats, strict=True):
            seat.meter = meter
            name, total = seat.cell.name, self.engine.total
            progress = Progress(name, total, cfg.trainer.progress if seat is self.lead else False, enabled=seat.active)
            metrics = MetricsLog(seat.out / METRICS, seat.state.step or None) if seat.active else None
            seat.log = RunLog(metrics, None, progress, recent=meter.partial_row, eta_s=self.eta_s)
            if seat.state.hardware[-1:] != [hardware(device)]:
                seat.state.hardware.append(hardware(device))
        if self.step:
            self.lead.log.progress.message(f"stack of {self.k}: resuming from step {self.step}/{self.engine.total}")
        self.stop = StopSignal()
        self.steps_here = 0
        self.clock = Clock(self.lead.state.wall_s)

    @property
    def lead(self) -> Seat:
        return next((seat for seat in self.seats if seat.active), self.seats[0])

    @property
    def active(self) -> list[Seat]:
        return [seat for seat in self.seats if seat.active and seat.status != "failed"]

    def restore(self) -> int:
        """Resume from the active seats' checkpoints when they all stand at one step; else start over, moving
        whatever checkpoints and metrics there are to each folder's `archive/` (nothing is deleted)."""
        found = [load_checkpoint(seat.out / CHECKPOINT, self.device) if seat.active else None for seat in self.seats]
        steps = {ckpt["state"]["step"] for seat, ckpt in zip(self.seats, found, strict=True) if seat.active and ckpt}
        complete = all(ckpt is not None for seat, ckpt in zip(self.seats, found, strict=True) if seat.active)
        if len(steps) == 1 and complete:
            donor = next(ckpt for ckpt in found if ckpt is not None)
            states = [ckpt or donor for ckpt in found]  # a passenger's numbers are never read: any will do
            self.engine.parts.load_state_dict({key: fold([s[key] for s in states]) for key in states[0] if key in
                                               ("model", "optimizer", "scaler", "averaged")})  # fmt: skip
            for seat, ckpt in zip(self.seats, states, strict=True):
                fields = TrainState.__dataclass_fields__
                seat.state = TrainState(**{k: v for k, v in ckpt["state"].items() if k in fields})
            for meter, ckpt in zip(self.meter.seats, states, strict=True):
                meter.load_state_dict(ckpt["state"])
            return steps.pop()
        for seat in self.seats:
            moved = [seat.out / name for name in (CHECKPOINT, "checkpoint.prev.pt", METRICS) if seat.active]
            moved = [path for path in moved if path.exists()]
            if moved:
                dest = archive(seat.out, moved)
                print(f"{seat.out.name}: the stack's checkpoints disagree; starting over (kept in {dest.name})")
        return 0

    def eta_s(self) -> float:
        return self.lead.state.train_s / max(1, self.steps_here) * (self.engine.total - self.step)

    def flush(self) -> None:
        synchronize(self.device)
        seconds = self.clock.lap()
        moved = self.meter.flush(seconds)
        for seat in self.seats:
            seat.state.train_images += moved
            seat.state.train_s += seconds
        for seat in self.active:
            if not seat.meter.finite:
                seat.status = "failed"
                seat.error = f"training loss became {seat.meter.loss} by step {self.step}"
                seat.log.progress.message(f"failed: {seat.error}; the stack's other seeds go on")

    def evaluate(self, lr: float) -> None:
        engine, started = self.engine, time.perf_counter()
        vals = evaluate_stack(engine.parts, engine.loaders.val, self.k)
        tests = [None] * self.k
        if engine.loaders.test is not None and (self.cfg.trainer.test_every_eval or self.step == engine.total):
            tests = evaluate_stack(engine.parts, engine.loaders.test, self.k)
        eval_s, wall_s = time.perf_counter() - started, self.clock.wall_s()
        states = seat_states(engine.parts, self.k)
        for i, seat in enumerate(self.seats):
            state = seat.state
            state.eval_s += eval_s
            state.best_val_top1 = max(state.best_val_top1, vals[i]["top1"])
            state.last_val, state.last_test, state.wall_s = vals[i], tests[i] or state.last_test, wall_s
            if seat not in self.active:
                continue
            when = {"epoch": self.step / engine.steps_per_epoch, "wall_s": wall_s, "lr": lr}
            seat.log.log("val", self.step, {**vals[i], **when})
            if tests[i] is not None:
                seat.log.log("test", self.step, {**tests[i], **when})
            seat.checkpoint(states[i])
        self.clock.restart()

    def after_step(self, lr: float) -> bool:
        engine = self.engine
        at_eval = self.step in engine.eval_steps
        at_log = self.step % engine.log_every == 0 or self.step == engine.total
        if at_log or at_eval:
            self.flush()
        if at_log:
            for seat in self.seats:
                row = {**seat.meter.row(), "epoch": self.step / engine.steps_per_epoch, "wall_s": self.clock.wall_s()}
                if seat in self.active:
                    seat.log.log("train", self.step, {**row, "lr": lr})
                seat.meter.reset()
        if at_eval:
            self.evaluate(lr)
        else:
            lead = self.lead.state
            lead_rate = lead.train_images * self.k / max(lead.train_s, 1e-9)
            self.lead.log.progress.step(self.step, lead_rate, lead.train_s, self.steps_here)
        return self.stop.requested is not None or not self.active

    def run_steps(self) -> bool:
        """Train until the budget is spent (False) or a signal asks to stop (True)."""
        engine = self.engine
        for x, y in engine.batches_from(self.step):
            lr = engine.schedule(self.step)
            loss, logits = train_step(engine.parts, x, y, lr)
            self.meter.add(loss, logits, y)
            self.step += 1
            self.steps_here += 1
            for seat in self.seats:
                seat.state.step = self.step
            if self.after_step(lr):
                return self.step < engine.total and bool(self.active)
        return False

    def interrupt(self) -> None:
        self.flush()
        states = seat_states(self.engine.parts, self.k)
        for seat, state in zip(self.seats, states, strict=True):
            seat.state.wall_s = self.clock.wall_s()
            if seat in self.active:
                seat.checkpoint(state)
        self.stop.requested = self.stop.requested or "SIGTERM"
        self.lead.log.progress.message(
            f"stack of {self.k} stopped by {self.stop.requested} at step {self.step}; checkpoints saved, run again "
            "to resume"
        )

    def run(self) -> None:
        try:
            stopped = self.run_steps()
            if stopped:
                self.interrupt()
            for seat in self.active:
                seat.status = "interrupted" if stopped else "completed"
        finally:
            self.stop.restore()
            for seat in self.seats:
                seat.state.wall_s = self.clock.wall_s()


def fit_stack(cfg: DictConfig, seats: Sequence[Seat], device: torch.device) -> list[dict[str, Any] | None]:
    """Train the stack; write and return each active seat's summary (None for a passenger)."""
    loop = StackLoop(cfg, seats, device)
    try:
        loop.run()
    except Exception as err:
        for seat in loop.active:
            seat.status, seat.error = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        summaries = [_summary(cfg, loop, seat) if seat.active else None for seat in seats]
        for seat, summary in zip(seats, summaries, strict=True):
            if summary is not None:
                write_summary(seat.out, summary)
    loop.stop.handoff()
    return summaries


def _summary(cfg: DictConfig, loop: StackLoop, seat: Seat) -> dict[str, Any]:
    values = {**run_values(cfg, seat.state, loop.engine, loop.device, 1), "attempt": seat.attempt.number}
    values["wandb_id"] = None
    stopped_by = loop.stop.requested if seat.status == "interrupted" else None
    return run_record(seat.status, seat.cell, values, seat.attempt.record, error=seat.error, stopped_by=stopped_by)
