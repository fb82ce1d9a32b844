"""A run's record, `summary.json`: the one place that builds, reads and writes it.

Every status a cell can end in has its builder here, so the fields and their published order (README's
"What a run leaves on disk") live in one module: a trained run (`completed`, `failed`, `interrupted`), a
dry run, a failure before training, a cell another process holds (`running`, reported, never written),
and a copy of a run completed in another study. No torch here: the sweep's report and the analysis read
these files too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import write_json_atomic
from .cell import Cell

SUMMARY = "summary.json"

RUN_FIELDS: tuple[str, ...] = (
    "params", "macs", "steps", "total_steps",
    "val_top1", "val_top5", "val_loss", "best_val_top1", "test_top1", "test_top5", "test_loss", "holdout",
    "train_img_per_s", "train_s", "eval_s", "wall_s",
    "device", "hardware", "threads", "world_size", "precision", "torch", "fast_backward", "stack",
    "finished_at", "attempt", "wandb_id",
)  # fmt: skip
"""A trained run's fields after its identity (`Cell.record`), in their published order."""


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary, or None when it has none or it cannot be read."""
    try:
        data = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """Write `run_dir/summary.json` atomically: a reader sees the old record or the new one, never half."""
    write_json_atomic(run_dir / SUMMARY, dict(summary))


def objective_value(summary: Mapping[str, Any], objective: str) -> float | None:
    """The summary's value of `objective` (such as `val_top1`) as a float; None when it has none (a failed
    run, a dry run), which a search sweeper records as a failed trial (Optuna 2 stops a sweep on a NaN)."""
    value = summary.get(objective) if summary.get("status") == "completed" else None
    return None if value is None else float(value)


def run_record(
    status: str,
    cell: Cell,
    values: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    error: str | None = None,
    stopped_by: str | None = None,
) -> dict[str, Any]:
    """A trained run's summary: `values` holds every field of `RUN_FIELDS`; `extra` what the attempt adds
    (a tuning choice, say); `error` when it failed, `stopped_by` when a signal stopped it."""
    missing = [name for name in RUN_FIELDS if name not in values]
    if missing:
        raise ValueError(f"a run's summary needs {', '.join(missing)}")
    summary = {"status": status, **cell.record(), **{name: values[name] for name in RUN_FIELDS}, **(extra or {})}
    if error:
        summary["error"] = error
    if stopped_by:
        summary["stopped_by"] = stopped_by
    return summary


def dry_run_record(cell: Cell, params: int, macs: int, stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A dry run's summary: the cell and its model's costs, per stage too."""
    return {"status": "dry_run", **cell.record(), "params": params, "macs": macs, "stages": [dict(s) for s in stages]}


def failed_record(cell: Cell, error: str) -> dict[str, Any]:
    """The summary of a cell that failed before training could record anything itself."""
    return {"status": "failed", **cell.record(), "error": error}


def running_record(cell: Cell, error: str) -> dict[str, Any]:
    """What a job reports for a cell another live process holds; never written to the cell's folder."""
    return {"status": "running", **cell.record(), "error": error}


def reused_record(summary: Mapping[str, Any], study: str, source: Path) -> dict[str, Any]:
    """The summary of a run completed in another study, copied into `study`: where it was trained stays
    `reused_from` (the first study, when the source was itself a copy)."""
    return {**summary, "study": study, "reused_from": summary.get("reused_from", str(source))}


def skipped_record(previous: Mapping[str, Any]) -> dict[str, Any]:
    """What a job reports for a cell that completed earlier and is skipped (its file is left as it is)."""
    return {**previous, "skipped": True}
