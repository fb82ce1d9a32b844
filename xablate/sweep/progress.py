"""A sweep's progress as it runs: where its cells stand, and when it will end.

The ETA scales the estimate of the cells left by how the cells measured so far compared with their own
estimate (the estimate alone until the first cell ends), so a machine busier than when its step times were
measured shows up after one cell. With Hydra's basic launcher the cells run in the command's own process
and `SweepProgress` prints a line after each; other launchers run them elsewhere, and the status view
(`status.py`) reads the same figures from the study's folders.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from omegaconf import DictConfig

from ..spec.cell import Cell
from .estimate import FREE, CellCost, Estimate, duration
from .slots import makespan
from .state import Counts, status_now


def eta(
    left: Sequence[CellCost], measured: Sequence[tuple[float | None, float]], width: int, busy: Iterable[float] = ()
) -> tuple[float | None, str]:
    """Seconds until the cells `left` have run `width` at a time after the `busy` slots' remaining seconds,
    and what that rests on. `measured` pairs each measured cell's estimate (None: it had none) with the
    seconds it took; cells without an estimate count as the measured cells' mean."""
    pairs = [(p, a) for p, a in measured if p]
    ratio = sum(a for _, a in pairs) / sum(p for p, _ in pairs) if pairs else 1.0
    unknown = sum(c.todo_s is None for c in left)
    if unknown and not measured:
        return None, "not known until a cell ends"
    mean = sum(a for _, a in measured) / len(measured) if measured else 0.0
    seconds = [c.todo_s * ratio if c.todo_s is not None else mean for c in left]
    if pairs:
        own = "their" if len(pairs) > 1 else "its"
        basis = f"from {len(pairs)} measured cell{'s' if len(pairs) > 1 else ''} ({ratio:.2f}x {own} estimate)"
    else:
        basis = "the estimate, until a cell ends" if not measured else f"from {len(measured)} measured cells"
    return makespan(seconds, width, [s * ratio for s in busy]), basis


def clock_at(seconds: float) -> str:
    """The local time `seconds` from now: `19:42`, or `Fri 19:42` when not today."""
    when = datetime.now() + timedelta(seconds=seconds)
    return when.strftime("%H:%M" if when.date() == datetime.now().date() else "%a %H:%M")


def eta_text(seconds: float | None, basis: str) -> str:
    if seconds is None:
        return f"time left {basis}"
    return f"about {duration(seconds)} left (ETA {clock_at(seconds)}), {basis}"


class SweepProgress:
    """The line after each cell of a sweep that runs its cells in this process (Hydra's basic launcher):
    what ended and how long it took, the counts of done, running, left and failed cells, and the ETA."""

    def __init__(self, cells: Sequence[DictConfig], estimate: Estimate) -> None:
        self.folders = [Cell.of(c).folder for c in cells]
        self.estimate = estimate
        self.ended: dict[str, str] = {}
        self.measured: list[tuple[float | None, float]] = []
        self.last = time.perf_counter()

    def statuses(self) -> list[str]:
        """Each cell's status for the counts: its result when this sweep has run it; before that, completed
        or running (elsewhere) as its folder says, else left (an earlier failure is retried, so not failed yet)."""
        out = []
        for folder in self.folders:
            now = self.ended.get(folder.name) or status_now(folder)
            out.append(now if folder.name in self.ended or now in ("completed", "running") else "new")
        return out

    def cell_done(self, cfg: DictConfig, status: str) -> str | None:
        """Record that `cfg`'s job ended with `status`; the progress line, or None for a cell that needed no
        training here (completed earlier, copied, or running elsewhere: each says so itself)."""
        now = time.perf_counter()
        took, self.last = now - self.last, now
        name = Cell.of(cfg).folder.name
        self.ended[name] = status
        cost = self.estimate.of(name)
        if cost is None or cost.fate.kind in FREE or status == "running":
            return None
        if status == "completed":
            self.measured.append((cost.todo_s, took))
        left = [c for c in self.estimate.to_run if c.folder not in self.ended]
        line = f"sweep: {name} {status} in {duration(took)}; {Counts.of(self.statuses())}"
        if left:
            line += "; " + eta_text(*eta(left, self.measured, self.estimate.slots.count))
        return line
