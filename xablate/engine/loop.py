"""The training loop of one cell: build, then for each step: batch -> step -> maybe log -> maybe evaluate ->
maybe checkpoint, until the budget is spent or a signal asks it to stop.

Metrics accumulate on the device and are read once per logging interval; time is measured with
synchronised clocks around training only, so `train_img_per_s` excludes evaluation. A checkpoint holds
everything the next step depends on, so a resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ..spec.cell import Cell
from ..spec.record import run_record, write_summary
from . import distributed
from .build import Engine, build_engine, train_step
from .checkpoint import CHECKPOINT
from .distributed import World
from .log import METRICS, MetricsLog, RunLog
from .meter import IntervalMeter
from .progress import Progress
from .runtime import hardware, synchronize
from .signals import StopSignal
from .state import Attempt, Checkpoint, Clock, TrainState
from .tracking import Tracker


class NonFiniteLoss(RuntimeError):
    pass


class Loop:
    """One run of the loop over an engine; `run` returns the status and, when failed, the error."""

    def __init__(
        self, cfg: DictConfig, cell: Cell, out: Path, device: torch.device, world: World, attempt: Attempt
    ) -> None:
        self.device, self.world, self.attempt = device, world, attempt
        self.engine = build_engine(cfg, cell, device, world)
        self.meter = IntervalMeter(device, world)
        self.checkpoint = Checkpoint(out / CHECKPOINT, self.engine, self.meter, writer=world.is_main)
        restored = self.checkpoint.restore(device)
        self.state = restored or TrainState()
        metrics = MetricsLog(out / METRICS, self.state.step if restored else None) if world.is_main else None
        total = self.engine.total
        self.progress = Progress(cell.name, total, cfg.trainer.progress, enabled=world.is_main)
        if restored:
            self.progress.message(f"resuming from step {self.state.step}/{total}")
        self.note_hardware(hardware(device))
        self.stop = StopSignal()
        tracking = dict(job_type=attempt.job_type, attempt=attempt.number)
        self.tracker = Tracker(cfg, cell, out, **tracking) if world.is_main else None
        self.log = RunLog(metrics, self.tracker, self.progress, recent=self.meter.partial_row, eta_s=self.eta_s)
        self.steps_here = 0
        self.test_every_eval = bool(cfg.trainer.test_every_eval)
        self.clock = Clock(self.state.wall_s)  # after W&B's start-up: training time only

    def note_hardware(self, here: str) -> None:
        """Record where these steps run; say so when a resumed run's earlier steps ran elsewhere, since it
        will then not end where an uninterrupted run on either machine would."""
        before = self.state.hardware[-1] if self.state.hardware else None
        if before == here:
            return
        if before is not None:
            self.progress.message(
                f"resuming on {here}; its first {self.state.step} steps ran on {before}, so its numbers will not be "
                "those of an uninterrupted run on either"
            )
        self.state.hardware.append(here)

    def eta_s(self) -> float:
        return self.state.train_s / max(1, self.steps_here) * (self.engine.total - self.state.step)

    def flush(self) -> None:
        """Move the interval's device sums and the elapsed training time to the host (one sync)."""
        synchronize(self.device)
        seconds = self.clock.lap()
        self.state.train_images += self.meter.flush(seconds)
        self.state.train_s += seconds
        if not self.meter.finite:
            last = self.checkpoint.last_step
            kept = f"the checkpoint of step {last} is intact" if last else "no checkpoint yet"
            raise NonFiniteLoss(f"training loss became {self.meter.loss} by step {self.state.step}; {kept}")

    def log_train(self, lr: float) -> None:
        epoch = self.state.step / self.engine.steps_per_epoch
        row = {**self.meter.row(), "epoch": epoch, "wall_s": self.clock.wall_s(), "lr": lr}
        self.log.log("train", self.state.step, row)
        self.meter.reset()

    def evaluate(self, lr: float) -> None:
        """Validate (and at the end, or at every evaluation with `trainer.test_every_eval`, test), log the
        rows, and checkpoint. Evaluation time counts in wall time, not in training time."""
        state, engine = self.state, self.engine
        started = time.perf_counter()
        val = engine.evaluate(engine.loaders.val, self.world)
        test = None
        if engine.loaders.test is not None and (self.test_every_eval or state.step == engine.total):
            test = engine.evaluate(engine.loaders.test, self.world)
        state.eval_s += time.perf_counter() - started
        state.best_val_top1 = max(state.best_val_top1, val["top1"])
        state.last_val = val
        state.last_test = test or state.last_test
        state.wall_s = self.clock.wall_s()
        when = {"epoch": state.step / engine.steps_per_epoch, "wall_s": state.wall_s, "lr": lr}
        self.log.log("val", state.step, {**val, **when})
        if test is not None:
            self.log.log("test", state.step, {**test, **when})
        self.checkpoint.save(state)
        self.clock.restart()

    def after_step(self, lr: float) -> bool:
        """Log, evaluate and checkpoint as the step calls for; whether the loop must stop now."""
        step, engine = self.state.step, self.engine
        at_eval = step in engine.eval_steps
        at_log = step % engine.log_every == 0 or step == engine.total
        if at_log or at_eval:
            self.flush()
        if at_log:
            self.log_train(lr)
        if at_eval:
            self.evaluate(lr)
        else:
            img_per_s = self.state.train_images / max(self.state.train_s, 1e-9)
            self.progress.step(step, img_per_s, self.state.train_s, self.steps_here)
        return distributed.any_rank(self.world, self.stop.requested is not None, self.device)

    def run_steps(self) -> bool:
        """Train until the budget is spent (False) or a signal asks to stop (True)."""
        engine, state = self.engine, self.state
        for x, y in engine.batches_from(state.step):
            lr = engine.schedule(state.step)
            loss, logits = train_step(engine.parts, x, y, lr)
            self.meter.add(loss, logits, y)
            state.step += 1
            self.steps_here += 1
            if self.after_step(lr):
                return state.step < engine.total
        return False

    def interrupt(self) -> None:
        """Checkpoint where a signal stopped the loop, so that running the cell again resumes here."""
        self.flush()
        self.state.wall_s = self.clock.wall_s()
        self.checkpoint.save(self.state)
        self.stop.requested = self.stop.requested or "SIGTERM"
        self.progress.message(
            f"stopped by {self.stop.requested} at step {self.state.step}; checkpoint saved, run again to resume"
        )

    def run(self) -> tuple[str, str | None]:
        try:
            if self.run_steps():
                self.interrupt()
                return "interrupted", None
            return "completed", None
        except NonFiniteLoss as err:
            self.progress.message(f"failed: {err}")
            return "failed", str(err)
        finally:
            self.stop.restore()
            self.state.wall_s = self.clock.wall_s()


def fit(
    cfg: DictConfig, cell: Cell, out: Path, device: torch.device, world: World, attempt: Attempt | None = None
) -> dict[str, Any]:
    """Train the cell into `out`, resuming from its checkpoint; write and return its summary."""
    loop = Loop(cfg, cell, out, device, world, attempt or Attempt())
    status, error = "failed", None
    try:
        status, error = loop.run()
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        summary = summarize(cfg, cell, loop, status, error)
        if world.is_main:
            write_summary(out, summary)
        if loop.tracker is not None:
            loop.tracker.end(summary, out / CHECKPOINT)
    loop.stop.handoff()
    return summary


def summarize(cfg: DictConfig, cell: Cell, loop: Loop, status: str, error: str | None) -> dict[str, Any]:
    """`summary.json`: the verdict, the cell, its costs, its final and best evaluation, and where it ran."""
    values = run_values(cfg, loop.state, loop.engine, loop.device, loop.world.size)
    values["attempt"] = loop.attempt.number
    values["wandb_id"] = loop.tracker.run_id if loop.tracker is not None else None
    return run_record(status, cell, values, loop.attempt.record, error=error, stopped_by=loop.stop.requested)


def run_values(cfg: DictConfig, state: TrainState, engine: Engine, device: torch.device, world_size: int) -> dict:
    """A run's values in `summary.json` but its attempt and W&B id (`RUN_FIELDS` fixes their order)."""
    cost, val, test = engine.cost, state.last_val or {}, state.last_test or {}
    return {
        "params": cost.params,
        "macs": cost.macs,
        "steps": state.step,
        "total_steps": engine.total,
        "val_top1": val.get("top1"),
        "val_top5": val.get("top5"),
        "val_loss": val.get("loss"),
        "best_val_top1": state.best_val_top1 if state.last_val else None,
        "test_top1": test.get("top1"),
        "test_top5": test.get("top5"),
        "test_loss": test.get("loss"),
        "holdout": cfg.data.holdout,
        "train_img_per_s": state.train_images / state.train_s if state.train_s else None,
        "train_s": state.train_s,
        "eval_s": state.eval_s,
        "wall_s": state.wall_s,
        "device": device.type,
        "hardware": " then ".join(state.hardware),
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "precision": str(cfg.trainer.precision),
        "torch": torch.__version__,
        "fast_backward": bool(cfg.trainer.fast_backward),
        "stack": int(cfg.trainer.stack),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
