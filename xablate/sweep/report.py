"""A sweep as a whole: what its cells' folders already hold before it starts, and a report when it ends.

Every cell has a deterministic folder (see `xablate/spec/cell.py`), so the parent process knows where each job will
write before Hydra launches anything, whatever the launcher, and can read the verdicts afterwards.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..cell.lock import holder_if_live
from ..convergence import NOT_CONVERGED, still_rising
from ..engine.log import METRICS
from ..files import write_atomic
from ..spec.cell import Cell
from ..spec.record import read_summary
from .estimate import Estimate, duration, summary_lines
from .state import DONE, Counts, fate


def announce(cells: list[DictConfig]) -> str:
    """One line on what running these cells will do, given what their folders hold now."""
    if cells and cells[0].dry_run:
        return f"sweep: {len(cells)} cells, dry run"
    if cells and cells[0].rerun:
        return f"sweep: {len(cells)} cells, rerun=true: all run again (earlier files move to archive/)"
    fates = [fate(c) for c in cells]
    kinds = Counter(f.kind for f in fates)
    parts = [f"{kinds['completed']} completed earlier (skipped)"] if kinds["completed"] else []
    if kinds["running"]:
        parts.append(f"{kinds['running']} running elsewhere (left alone)")
    if kinds["resume"]:
        parts.append(f"{kinds['resume']} interrupted or failed (retried from their checkpoints)")
    if kinds["reused"]:
        parts.append(f"{kinds['reused']} completed in another study (copied, not trained again)")
    mismatched = [f.note for f in fates if f.kind == "train" and f.note]
    if mismatched:
        parts.append(f"{len(mismatched)} not reused: {mismatched[0]}")
    parts.append(f"{kinds['train']} to run")
    return f"sweep: {len(cells)} cells: " + ", ".join(parts)


def report_rows(cells: list[DictConfig], plan: Estimate | None = None) -> list[dict[str, Any]]:
    """One row per cell: its status, costs, final validation top-1, time and, with `plan`, its estimate."""
    rows = []
    for cfg in cells:
        folder = Cell.of(cfg).folder
        cost = plan.of(folder.name) if plan is not None else None
        summary = read_summary(folder) or {"status": "missing", "error": "no summary.json was written"}
        if summary.get("status") != "completed" and (holder := holder_if_live(folder)) is not None:
            summary = {**summary, "status": "running", "error": f"running elsewhere ({holder})"}
        rows.append(
            {
                "cell": folder.name,
                "status": summary.get("status"),
                "params": summary.get("params"),
                "macs": summary.get("macs"),
                "val_top1": summary.get("val_top1"),
                "wall_s": summary.get("wall_s"),
                "estimate": "" if cost is None else cost.label(),
                "estimate_s": None if cost is None else cost.todo_s,
                "error": summary.get("error", ""),
                "path": str(folder),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| cell | status | params | MACs | val top-1 | wall time | estimate | error |", "|" + "---|" * 8]
    for row in rows:
        params = "" if row["params"] is None else f"{row['params']:,}"
        macs = "" if row["macs"] is None else f"{row['macs'] / 1e6:,.1f} M"
        top1 = "" if row["val_top1"] is None else f"{row['val_top1']:.2%}"
        wall = "" if row["wall_s"] is None else f"{row['wall_s']:.0f} s"
        error = str(row["error"]).replace("|", "/")
        lines.append(
            f"| {row['cell']} | {row['status']} | {params} | {macs} | {top1} | {wall} | {row['estimate']} | {error} |"
        )
    return "\n".join(lines)


def write_report(rows: list[dict[str, Any]], sweep_dir: Path, notes: Sequence[str] = ()) -> Path:
    """`<sweep dir>/sweeps/<time>.md` (the table, then `notes`) and `.csv`: a new pair per sweep, earlier
    reports kept."""
    folder = sweep_dir / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    write_atomic(stem.with_suffix(".md"), format_table(rows) + "\n" + "".join(f"\n{line}" for line in notes) + "\n")
    table = io.StringIO()
    writer = csv.DictWriter(table, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(stem.with_suffix(".csv"), table.getvalue())
    return stem.with_suffix(".md")


def _val_curve(folder: Path) -> list[tuple[float, float, float]]:
    """(step, epoch, top-1) of each evaluation in a cell's `metrics.csv`."""
    try:
        with (folder / METRICS).open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
        return [(float(r["step"]), float(r["epoch"]), float(r["top1"])) for r in rows]
    except (OSError, ValueError, KeyError):
        return []


def budget_note(cells: list[DictConfig]) -> str | None:
    """What the sweep's training budget was and, when its cells were still learning at the end, that
    differences between them are differences in the speed of learning, not results at convergence."""
    done = [(c, s) for c in cells if (s := read_summary(Cell.of(c).folder) or {}).get("status") == "completed"]
    if not done:
        return None
    cfg, summary = done[0]
    steps, batch = summary.get("steps"), cfg.data.batch_size
    if not isinstance(steps, int):
        return None
    curve = _val_curve(Cell.of(cfg).folder)
    epochs = f" ({curve[-1][1]:.3g} epochs)" if curve else ""
    line = f"budget: {steps} steps of {batch} images, {steps * batch:,} images{epochs} per cell"
    rising = sum(still_rising([(step, top1) for step, _, top1 in _val_curve(Cell.of(c).folder)]) for c, _ in done)
    if rising:
        line += f"; validation top-1 still rising at the end in {rising} of {len(done)} cells: {NOT_CONVERGED}"
    return line


def outcome(
    cells: list[DictConfig], rows: list[dict[str, Any]], plan: Estimate | None, elapsed_s: float | None
) -> list[str]:
    """The sweep's last words: how many cells are done, running, left and failed, and how long it took
    against its estimate; for a dry run, the estimate itself."""
    if cells and cells[0].dry_run:
        return summary_lines(plan) if plan is not None else []
    line = f"sweep: {Counts.of([r['status'] for r in rows])}"
    if elapsed_s is not None:
        line += f"; took {duration(elapsed_s)}"
        line += f" (estimate {duration(plan.total_s())})" if plan is not None and not plan.missing else ""
    return [line]


def finish(cells: list[DictConfig], plan: Estimate | None = None, elapsed_s: float | None = None) -> int:
    """Print and write the report of a finished sweep (with `plan`, each cell's estimate; `elapsed_s`, the
    command's time so far); return the number of cells that did not succeed."""
    rows = report_rows(cells, plan)
    sweep_dirs = sorted({Cell.of(c).folder.parent for c in cells})
    print("\n" + format_table(rows), flush=True)
    notes = outcome(cells, rows, plan, elapsed_s)
    if (note := budget_note(cells)) is not None:
        notes.insert(0, note)
    print("\n".join(notes), flush=True)
    for sweep_dir in sweep_dirs:
        path = write_report([r for r in rows if Path(r["path"]).parent == sweep_dir], sweep_dir, notes)
        print(f"report: {path}", flush=True)
        if any((sweep_dir / r["cell"] / "wandb").is_dir() for r in rows) and cells[0].logger.mode != "disabled":
            print(f"W&B (offline): wandb sync {sweep_dir}/*/wandb/offline-run-*", flush=True)
    bad = [r for r in rows if r["status"] not in DONE]
    if bad:
        print(f"sweep: {len(bad)} of {len(rows)} cells did not complete", flush=True)
    return len(bad)
