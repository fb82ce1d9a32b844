"""`status=true`: where a study's cells stand, read from its folders while it runs, without starting,
writing or locking anything.

It works under every launcher, since it reads what each cell's own process writes: `summary.json` when a
cell ends, the `.lock` of a running cell (its holder must be alive, `holder_if_live`) and the last step in
its `metrics.csv`. Its ETA uses the step times a dry run or the sweep's start measured (the cache under
`out_dir`; it never measures, which would slow the study down), scaled by the cells completed so far.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..cell.lock import holder_if_live
from ..spec.cell import Cell
from ..spec.record import read_summary
from .estimate import CellCost, Context, duration, estimate
from .progress import eta, eta_text
from .state import Counts, last_step, status_now


def _row(folder: Path, status: str, cost: CellCost) -> tuple[str, str]:
    """A cell's progress and time columns: steps and seconds so far, or its estimate when not started."""
    summary = read_summary(folder) or {}
    if status == "running":
        return f"step {last_step(folder)} of {cost.total or summary.get('total_steps') or '?'}", ""
    if status in ("completed", "failed", "interrupted") and summary.get("wall_s") is not None:
        return f"step {summary.get('steps', '?')}", duration(float(summary["wall_s"]))
    return "", "" if cost.todo_s is None else f"~{duration(cost.todo_s)}"


def _running_left(folder: Path, cost: CellCost) -> float:
    """Seconds a running cell still needs: its estimate for the steps it has not logged yet."""
    if cost.full_s is None:
        return 0.0
    done = last_step(folder) / cost.total if cost.total else 0.0
    return cost.full_s * max(0.0, 1.0 - done)


def status_view(cells: list[DictConfig], context: Context) -> str:
    """The status of the study (or studies) `cells` belong to: a table, the counts, the live cells, the ETA."""
    plan = estimate(cells, context, 0.0, multirun=True, measure=False)
    folders = [Cell.of(c).folder for c in cells]
    statuses = [status_now(f) for f in folders]
    lines = ["| cell | status | progress | val top-1 | time | error |", "|---|---|---|---|---|---|"]
    measured: list[tuple[float | None, float]] = []
    left, busy = [], []
    for folder, status, cost in zip(folders, statuses, plan.cells, strict=True):
        summary = read_summary(folder) or {}
        progress, spent = _row(folder, status, cost)
        top1 = "" if summary.get("val_top1") is None else f"{summary['val_top1']:.2%}"
        error = str(summary.get("error", "")).replace("|", "/") if status == "failed" else ""
        lines.append(f"| {folder.name} | {status} | {progress} | {top1} | {spent} | {error} |")
        if status == "completed" and summary.get("wall_s") is not None and "reused_from" not in summary:
            measured.append((cost.full_s, float(summary["wall_s"]) + cost.startup_s))
        elif status == "running":
            busy.append(_running_left(folder, cost))
        elif status not in ("completed", "failed"):
            left.append(cost)
    where = sorted({str(f.parent) for f in folders})
    lines.append(f"status: {', '.join(where)}: {Counts.of(statuses)}")
    for folder, status in zip(folders, statuses, strict=True):
        if status == "running":
            holder = holder_if_live(folder)
            lines.append(f"running: {folder.name} ({holder or 'lock unreadable'})")
    if left or busy:
        width = len(busy) or plan.slots.count
        seconds, basis = eta(left, measured, width, busy)
        at = f"{len(busy)} at a time (running now)" if busy else plan.slots.describe
        lines.append(f"{eta_text(seconds, basis)}, {at}")
    return "\n".join(lines)
