"""A run's own files: `summary.json` (the verdict) written atomically (see `files.py`), and read back safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import write_json_atomic

__all__ = ["SUMMARY", "read_summary", "write_json_atomic"]

SUMMARY = "summary.json"


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary, or None when it has none or it cannot be read."""
    try:
        data = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def objective_value(summary: dict[str, Any], objective: str) -> float | None:
    """The summary's value of `objective` (such as `val_top1`) as a float; None when it has none (a failed
    run, a dry run), which a search sweeper records as a failed trial (Optuna 2 stops a sweep on a NaN)."""
    value = summary.get(objective) if summary.get("status") == "completed" else None
    return None if value is None else float(value)
