"""A sweep as a whole: what its cells' folders already hold before it starts, and a report when it ends.

Every cell has a deterministic folder (see `xablate/spec/cell.py`), so the parent process knows where each job will
write before Hydra launches anything, whatever the launcher, and can read the verdicts afterwards.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..cell.lock import holder_if_live
from ..cell.reuse import completed_twin
from ..convergence import NOT_CONVERGED, still_rising
from ..engine.log import METRICS
from ..engine.runtime import execution_setting
from ..files import write_atomic
from ..spec.cell import Cell
from ..spec.record import read_summary

DONE = ("completed", "dry_run")


def _status_now(folder: Path) -> str:
    """The status in the folder's summary (`new` without one), or `running` while a live process holds it."""
    status = (read_summary(folder) or {}).get("status", "new")
    if status not in DONE and holder_if_live(folder) is not None:
        return "running"
    return status


def announce(cells: list[DictConfig]) -> str:
    """One line on what running these cells will do, given what their folders hold now."""
    if cells and cells[0].dry_run:
        return f"sweep: {len(cells)} cells, dry run"
    if cells and cells[0].rerun:
        return f"sweep: {len(cells)} cells, rerun=true: all run again (earlier files move to archive/)"
    status = [_status_now(Cell.of(c).folder) for c in cells]
    before = Counter(status)
    parts = [f"{before['completed']} completed earlier (skipped)"] if before["completed"] else []
    if before["running"]:
        parts.append(f"{before['running']} running elsewhere (left alone)")
    if before["interrupted"] + before["failed"]:
        parts.append(
            f"{before['interrupted'] + before['failed']} interrupted or failed (retried from their checkpoints)"
        )
    fresh = [c for c, s in zip(cells, status, strict=True) if s in ("new", "dry_run")]
    twins = [
        completed_twin(Cell.of(c).folder, execution_setting(c, c.hydra.launcher)) if c.reuse else None for c in fresh
    ]
    reused = sum(1 for t in twins if t is not None and t.mismatch is None)
    if reused:
        parts.append(f"{reused} completed in another study (copied, not trained again)")
    mismatched = [t.mismatch for t in twins if t is not None and t.mismatch is not None]
    if mismatched:
        parts.append(f"{len(mismatched)} not reused: {mismatched[0]}")
    parts.append(f"{len(fresh) - reused} to run")
    return f"sweep: {len(cells)} cells: " + ", ".join(parts)


def report_rows(cells: list[DictConfig]) -> list[dict[str, Any]]:
    rows = []
    for cfg in cells:
        folder = Cell.of(cfg).folder
        summary = read_summary(folder) or {"status": "missing", "error": "no summary.json was written"}
        if summary.get("status") not in DONE and (holder := holder_if_live(folder)) is not None:
            summary = {**summary, "status": "running", "error": f"running elsewhere ({holder})"}
        rows.append(
            {
                "cell": folder.name,
                "status": summary.get("status"),
                "params": summary.get("params"),
                "macs": summary.get("macs"),
                "val_top1": summary.get("val_top1"),
                "wall_s": summary.get("wall_s"),
                "error": summary.get("error", ""),
                "path": str(folder),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| cell | status | params | MACs | val top-1 | wall time | error |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        params = "" if row["params"] is None else f"{row['params']:,}"
        macs = "" if row["macs"] is None else f"{row['macs'] / 1e6:,.1f} M"
        top1 = "" if row["val_top1"] is None else f"{row['val_top1']:.2%}"
        wall = "" if row["wall_s"] is None else f"{row['wall_s']:.0f} s"
        error = str(row["error"]).replace("|", "/")
        lines.append(f"| {row['cell']} | {row['status']} | {params} | {macs} | {top1} | {wall} | {error} |")
    return "\n".join(lines)


def write_report(rows: list[dict[str, Any]], sweep_dir: Path) -> Path:
    """`<sweep dir>/sweeps/<time>.md` and `.csv`: a new pair per sweep, earlier reports kept."""
    folder = sweep_dir / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    write_atomic(stem.with_suffix(".md"), format_table(rows) + "\n")
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


def finish(cells: list[DictConfig]) -> int:
    """Print and write the report of a finished sweep; return the number of cells that did not succeed."""
    rows = report_rows(cells)
    sweep_dirs = sorted({Cell.of(c).folder.parent for c in cells})
    print("\n" + format_table(rows), flush=True)
    if (note := budget_note(cells)) is not None:
        print(note, flush=True)
    for sweep_dir in sweep_dirs:
        path = write_report([r for r in rows if Path(r["path"]).parent == sweep_dir], sweep_dir)
        print(f"report: {path}", flush=True)
        if any((sweep_dir / r["cell"] / "wandb").is_dir() for r in rows) and cells[0].logger.mode != "disabled":
            print(f"W&B (offline): wandb sync {sweep_dir}/*/wandb/offline-run-*", flush=True)
    bad = [r for r in rows if r["status"] not in DONE]
    if bad:
        print(f"sweep: {len(bad)} of {len(rows)} cells did not complete", flush=True)
    return len(bad)
