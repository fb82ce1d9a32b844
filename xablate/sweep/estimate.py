"""How long a command will take: each cell's budget (steps, evaluations over its splits, checkpoints,
start-up) at its architecture's measured times, laid out over the launcher's width.

Multiply-adds do not predict time (segments=1 has 7 times the multiply-adds of depthwise and is about 3
times slower on a CPU, BENCHMARKS.md), so every distinct architecture is timed on the device and thread
count its cells will use (`timings.py`). A cell that completed, is copied from another study or is
held by a live process costs nothing; an interrupted or failed one costs what is left after its checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ..cell.lifecycle import tuning_trials
from ..data import SplitSizes, split_sizes
from ..engine.build import evaluation_steps, total_steps
from ..engine.timing import StepTimes
from ..errors import ConfigError
from ..spec.cell import Cell
from ..spec.record import read_summary
from .slots import Slots, makespan, slots_of
from .state import Fate, fate
from .timings import Timings, setting_of

LOGGER_START_S: dict[str, tuple[float, float]] = {"offline": (2.5, 0.5), "online": (4.0, 2.0), "disabled": (0, 0)}
"""W&B's seconds once a process (its service starting) and for each cell (opening and closing its run):
measured offline on the project's 2-core machine; online assumed."""
HARNESS_S = 0.2
"""A job's own bookkeeping besides its config, data, model and W&B: validation, provenance, its files."""
FREE = ("completed", "reused", "running")


@dataclass(frozen=True)
class Work:
    """What training a cell from some step to its end does: steps, evaluations (each checkpoints) and the
    images those evaluations read, the test passes included."""

    steps: int
    evals: int
    eval_images: int

    def seconds(self, times: StepTimes) -> float:
        return self.steps * times.step_s + self.evals * times.checkpoint_s + self.eval_images * times.eval_image_s


def work_of(cfg: DictConfig, sizes: SplitSizes, start: Fate) -> Work:
    """The work left for `cfg` when it starts as `start` says (from step 0, or resuming from a checkpoint)."""
    per_epoch = sizes.train // cfg.data.batch_size
    total = total_steps(cfg.trainer, per_epoch)
    evals = evaluation_steps(total, per_epoch, cfg.trainer.eval_every, cfg.trainer.evals)
    step = 0
    if start.kind == "resume":  # an interrupted run checkpointed where it stopped; a failed one, at its last evaluation
        step = start.step if start.note == "interrupted" else max((s for s in evals if s <= start.step), default=0)
    left = [s for s in evals if s > step]
    tests = (len(left) if cfg.trainer.test_every_eval else int(total > step)) if sizes.test else 0
    return Work(total - step, len(left), len(left) * sizes.val + tests * sizes.test)


def process_age_s() -> float:
    """Seconds since this process started (its first start: re-executing keeps the pid and the start time);
    0 where /proc cannot tell."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19])
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Context:
    """What every cell of the command pays besides its own work: `process_s` to start a Python process
    with torch (measured as this one's start), `compose_s` to compose a cell's config (the check's time a cell)."""

    process_s: float
    compose_s: float


@dataclass(frozen=True)
class CellCost:
    """One cell's time: `full_s` to train it from scratch, start-up included; `todo_s` what this command will
    spend on it (0 when it completed, is copied or runs elsewhere); None where it cannot be estimated, and
    `problem` says why. `steps` are the steps this command trains, `total` those of a whole run."""

    folder: str
    fate: Fate
    startup_s: float
    full_s: float | None
    todo_s: float | None
    steps: int = 0
    total: int = 0
    problem: str = ""

    def label(self) -> str:
        """The cell's entry in the sweep table's estimate column."""
        if self.fate.kind in FREE:
            return {"completed": "0 (completed)", "reused": "0 (copied)", "running": "0 (running elsewhere)"}[
                self.fate.kind
            ]
        if self.todo_s is None:
            return f"? ({self.problem})"
        resumed = f" (from step {self.fate.step})" if self.fate.kind == "resume" else ""
        return f"{duration(self.todo_s)}{resumed}"


def duration(seconds: float) -> str:
    """`12 s`, `4 m 10 s`, `13 h 02 m`."""
    seconds = round(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} m {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} m"


def _untrained_trials(cfg: DictConfig) -> int:
    """Tuning trials (`tune=...`) the cell still has to train before its own run."""
    if cfg.tune is None:
        return 0
    trials = tuning_trials(cfg, Cell.of(cfg))
    return sum((read_summary(folder) or {}).get("status") != "completed" for _, folder in trials)


def cell_cost(cfg: DictConfig, what: Fate, timings: Timings, context: Context, slots: Slots) -> CellCost:
    """`cfg`'s cost, from its fate `what`, its split sizes and its architecture's step times."""
    folder = Cell.of(cfg).folder.name
    setting = setting_of(cfg)
    times = timings.steps(cfg, setting)
    try:
        sizes = split_sizes(cfg.data)
        full, todo = work_of(cfg, sizes, Fate("train")), work_of(cfg, sizes, what)
    except (ConfigError, OSError, KeyError) as err:
        return CellCost(folder, what, 0.0, None, None, problem=f"split sizes unknown: {err}")
    if times is None:
        return CellCost(folder, what, 0.0, None, None, todo.steps, full.steps, "step time not measured")
    load_s = timings.data_s(cfg, setting) or 0.0
    first, each = LOGGER_START_S.get(str(cfg.logger.mode), (0.0, 0.0))
    startup = context.compose_s + load_s + times.build_s + times.warmup_s + HARNESS_S + each
    startup += context.process_s + first if slots.process_per_cell else 0.0
    full_s = startup + full.seconds(times)
    if what.kind in FREE:
        return CellCost(folder, what, startup, full_s, 0.0, 0, full.steps)
    trials = _untrained_trials(cfg)
    todo_s = (1 + trials) * startup + todo.seconds(times) + trials * full.seconds(times)
    return CellCost(folder, what, startup, full_s, todo_s, todo.steps + trials * full.steps, full.steps)


@dataclass(frozen=True)
class Estimate:
    """A command's cells' costs, the launcher's width and what the whole command takes (`command_s`: the
    process start and the pre-launch check, before any cell; `process_s`: what a process running cells pays
    once, besides starting: W&B's service)."""

    cells: tuple[CellCost, ...]
    slots: Slots
    context: Context
    command_s: float
    process_s: float
    where: str
    timings: tuple[Timings, ...]

    def __iter__(self) -> Iterator[CellCost]:
        return iter(self.cells)

    def of(self, folder: str) -> CellCost | None:
        return next((c for c in self.cells if c.folder == folder), None)

    @property
    def to_run(self) -> list[CellCost]:
        return [c for c in self.cells if c.fate.kind not in FREE]

    def total_s(self) -> float:
        """The command from start to end; cells without an estimate count as nothing (see `missing`)."""
        todo = [c.todo_s or 0.0 for c in self.to_run]
        if self.slots.process_per_cell:
            return self.command_s + makespan(todo, self.slots.count)
        if self.slots.process_per_slot:
            busy = [self.context.process_s + self.process_s] * self.slots.count
            return self.command_s + makespan(todo, self.slots.count, busy)
        return self.command_s + (self.process_s if todo else 0.0) + makespan(todo, 1)

    @property
    def missing(self) -> list[CellCost]:
        return [c for c in self.to_run if c.todo_s is None]


def estimate(cells: list[DictConfig], context: Context, command_s: float, *, multirun: bool, measure: bool) -> Estimate:
    """The estimate of running `cells`; `measure` times the architectures not in the cache (never in a
    status view). A sweep's own command then includes the time that took; a dry run's does not, since the
    sweep it estimates will find the times in the cache."""
    first = cells[0]
    setting = setting_of(first)
    fates = [fate(c) for c in cells]
    launcher = first.hydra.launcher if "hydra" in first else None
    to_run = sum(f.kind not in FREE for f in fates)
    slots = slots_of(launcher, to_run, int(setting["threads"]), str(setting["device"]), multirun)
    started = time.perf_counter()
    timings = {out: Timings(Path(out), measure=measure) for out in sorted({str(c.out_dir) for c in cells})}
    for out, kept in timings.items():
        todo = [c for c, f in zip(cells, fates, strict=True) if str(c.out_dir) == out and f.kind not in FREE]
        kept.measure_missing([(c, setting_of(c)) for c in todo])
    costs = tuple(cell_cost(c, f, timings[str(c.out_dir)], context, slots) for c, f in zip(cells, fates, strict=True))
    if not first.dry_run:  # data loading is timed while costing the cells
        command_s += time.perf_counter() - started
    for kept in timings.values():
        kept.save()
    threads = int(setting["threads"])
    where = f"{setting['device']}, {setting['hardware']}, {threads} thread{'s' if threads > 1 else ''} a cell"
    once = LOGGER_START_S.get(str(first.logger.mode), (0.0, 0.0))[0]
    return Estimate(costs, slots, context, command_s, once, where, tuple(timings.values()))


def _assumptions(est: Estimate) -> list[str]:
    measured = sum(len(t.measured) for t in est.timings)
    paths = ", ".join(str(t.path) for t in est.timings)
    oldest = min((o for t in est.timings if (o := t.oldest()) is not None), default=None)
    source = f"measured just now ({paths})" if measured or oldest is None else f"measured {oldest} ({paths})"
    return [
        f"step times {source} hold throughout: the machine no busier than while they were measured (a shared "
        "machine drifts: delete the file to measure again)",
        "data handling inside a step not counted (about 1 ms for the in-memory data sets; more for imagefolder)",
        *est.slots.notes,
    ]


def summary_lines(est: Estimate) -> list[str]:
    """The estimate in words: what runs and for how long in all, then what every cell pays and what it assumes."""
    todo, cells = est.to_run, est.cells
    if len(cells) == 1:
        head = f"estimate: {cells[0].folder}: {cells[0].label()}"
    else:
        free = len(cells) - len(todo)
        head = f"estimate: {len(todo)} of {len(cells)} cells to train" + (
            f" ({free} cost nothing: completed, copied or running elsewhere)" if free else ""
        )
    head += f"; about {duration(est.total_s())} in all, {est.slots.describe}, on {est.where}"
    if est.missing:
        first = est.missing[0]
        head += f"; plus {len(est.missing)} cells without an estimate ({first.folder}: {first.problem})"
    lines = [head]
    known = [c.startup_s for c in todo if c.todo_s is not None]
    if known:
        lines.append(
            f"  the command starts in {est.command_s:.0f} s (Python, torch, checking every cell); each cell in about "
            f"{sum(known) / len(known):.1f} s (its config, data, model and W&B run), then trains at the times above"
        )
    lines.append("  assumes: " + "; ".join(_assumptions(est)))
    return lines
