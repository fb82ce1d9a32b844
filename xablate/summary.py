"""A run's own files: `summary.json` (the verdict) written atomically, and read back safely."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
