"""One path for every logged row: `metrics.csv` (one row per logged training interval and per evaluation,
appended as the run goes), W&B and the progress line all read the same row.

`wandb_values` is the one mapping of a row to W&B: the live run applies it as it logs, and `replay` applies it
to `metrics.csv` afterwards, for a run trained without W&B (`python -m xablate.log_wandb`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..files import append_text, write_atomic
from .progress import Progress
from .tracking import Tracker

COLUMNS: tuple[str, ...] = ("step", "epoch", "split", "loss", "top1", "top5", "lr", "img_per_s", "wall_s", "ce")
"""`loss` is the objective (label smoothing included); `ce`, on training rows, the plain cross-entropy."""
METRICS = "metrics.csv"

WANDB_SKIPS: dict[str, frozenset[str]] = {"train": frozenset(), "val": frozenset({"lr"}), "test": frozenset({"lr"})}
"""Columns of a split that W&B does not get: the learning rate is a training quantity, charted once."""


def wandb_values(split: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values as W&B gets them: `<split>/<column>`, without the split's `WANDB_SKIPS`."""
    skip = WANDB_SKIPS.get(split, frozenset())
    return {f"{split}/{column}": value for column, value in row.items() if column not in skip}


class RunLog:
    """Logs a row of `split` at a gradient step: a `metrics.csv` row, `<split>/<column>` values in W&B, and
    for an evaluation a progress line with the latest training row (named by its step when that is earlier
    than the evaluation's; before the first row, `recent`'s figures so far) and the ETA (`eta_s`).
    `metrics` and `tracker` are None where this process does not write them (ranks other than 0)."""

    def __init__(
        self,
        metrics: MetricsLog | None,
        tracker: Tracker | None,
        progress: Progress,
        *,
        recent: Callable[[], dict[str, float]],
        eta_s: Callable[[], float],
    ) -> None:
        self.metrics, self.tracker, self.progress = metrics, tracker, progress
        self._recent, self._eta_s = recent, eta_s
        self._last_train: dict[str, Any] = {}
        self._last_train_step: int | None = None

    def log(self, split: str, step: int, row: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write({"step": step, "split": split, **row})
        if self.tracker is not None:
            self.tracker.log(wandb_values(split, row), step)
        if split == "train":
            self._last_train, self._last_train_step = row, step
        elif split == "val" and self._last_train:
            self.progress.evaluation(
                step, row["epoch"], self._last_train, row, row["wall_s"], self._eta_s(), self._last_train_step
            )
        elif split == "val":  # no training row yet: the figures of the steps so far
            self.progress.evaluation(step, row["epoch"], self._recent(), row, row["wall_s"], self._eta_s())
        elif split == "test":
            self.progress.message(f"step {step} test loss {row['loss']:.4f} top1 {row['top1']:.2%}")


class MetricsLog:
    """Appends rows to `metrics.csv`; on resume, first drops rows past the checkpoint (they will be redone)."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows: list[dict[str, Any]] = []
        if resume_step is not None and path.exists():
            with path.open(newline="") as fh:
                rows = [row for row in csv.DictReader(fh) if int(row["step"]) <= resume_step]
        write_atomic(path, _csv(rows, header=True))

    def write(self, row: dict[str, Any]) -> None:
        append_text(self.path, _csv([{k: _fmt(row.get(k)) for k in COLUMNS}], header=False))


def read_metrics(path: Path) -> list[tuple[str, int, dict[str, float]]]:
    """`metrics.csv`'s rows in the order they were logged, as `RunLog.log` got them: the split, the step, and
    the other columns as numbers, without the empty cells (the columns that split does not have)."""
    values = [column for column in COLUMNS if column not in ("step", "split")]
    with path.open(newline="") as fh:
        return [
            (row["split"], int(row["step"]), {column: float(row[column]) for column in values if row.get(column)})
            for row in csv.DictReader(fh)
        ]


def replay(path: Path, tracker: Tracker) -> None:
    """Log every row of the `metrics.csv` at `path` to `tracker`, as the live run logged it."""
    for split, step, row in read_metrics(path):
        tracker.log(wandb_values(split, row), step)


def _csv(rows: list[dict[str, Any]], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
