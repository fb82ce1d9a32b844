"""The two tidy frames every figure and table reads, whatever the runs came from (folders, published frames,
W&B): their columns, and how records become frames.

- `runs`: one row per run: its identity, the axes of its cell, its seed and the values of its `summary.json`;
- `curves`: one row per run, split and step: the validation curve (`split == "val"`, one row per evaluation)
  and the training rows (`split == "train"`, one per logging interval), with the run's axes on every row.

A second run of the same cell and seed is set aside as a `Problem` with its path and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .axes import AXES, REPLICATE, parse_value

REQUIRED_METRICS: tuple[str, ...] = ("step", "epoch", "split", "loss", "top1", "top5", "lr", "img_per_s", "wall_s")
METRIC_COLUMNS: tuple[str, ...] = (*REQUIRED_METRICS, "ce")
"""`ce` (the unsmoothed training cross-entropy) is optional: runs that do not log it get NaN."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
SUMMARY_VALUES: tuple[str, ...] = (
    "params", "macs", "steps", "total_steps", "val_top1", "val_top5", "val_loss", "best_val_top1",
    "test_top1", "test_top5", "test_loss", "train_ce",
    "train_img_per_s", "train_s", "wall_s", "device", "hardware", "threads", "precision", "stack", "finished_at",
    "wandb_id",
    "holdout",
)  # fmt: skip
NUMERIC_SUMMARY: tuple[str, ...] = (
    "params", "macs", "steps", "total_steps", "train_img_per_s", "train_s", "wall_s", "val_loss", "holdout",
    "test_top1", "test_top5", "test_loss", "train_ce",
)  # fmt: skip
IDENTITY: tuple[str, ...] = ("run_id", "source", "study", "name", "run_key")
DESIGN_WORDS: tuple[str, ...] = ("variance", "comparisons", "primary", "baseline", "looks")
DESIGN_COLUMNS: tuple[str, ...] = ("design_margin", *(f"design_{word}" for word in DESIGN_WORDS))
"""What a run's study declared in its config's `design` (`analysis.design` follows it): NaN / empty when absent
(older published runs.csv files lack the later columns)."""
RUN_COLUMNS: tuple[str, ...] = (
    *IDENTITY, *AXES, REPLICATE, "status", *SUMMARY_VALUES, "project", "entity", *DESIGN_COLUMNS,
)  # fmt: skip
CURVE_COLUMNS: tuple[str, ...] = ("run_id", "study", *AXES, REPLICATE, *METRIC_COLUMNS)

class RunError(ValueError):
    """Why a run cannot enter the frames (it is listed, with its path, in the caller's one warning)."""


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


@dataclass
class Runs:
    """The two frames and the runs that were left out."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    def where(self, selection: Mapping[str, Sequence[Any]]) -> Runs:
        """The runs whose value of each selected axis is one of the selected values (AND across axes)."""
        keep = pd.Series(True, index=self.runs.index)
        for axis, values in selection.items():
            keep &= self.runs[axis].map(lambda v, a=axis, allowed=tuple(values): _matches(parse_value(a, v), allowed))
        runs = self.runs[keep].reset_index(drop=True)
        curves = self.curves[self.curves["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)
        return Runs(runs, curves, list(self.problems))

    def __len__(self) -> int:
        return len(self.runs)


def _matches(value: Any, allowed: Sequence[Any]) -> bool:
    # `True == 1` in Python: compare types too, so segments=1 never matches residual=True by accident.
    return any(type(value) is type(a) and value == a for a in allowed)


# Building the frames ----------------------------------------------------------------------------------------------


def _empty_runs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RUN_COLUMNS})


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CURVE_COLUMNS})


def build(
    records: Iterable[tuple[dict[str, Any], pd.DataFrame]], problems: list[Problem], *, budgets: bool = False
) -> Runs:
    """Frames from (run row, metrics rows) pairs; a second run of a cell and seed joins `problems` (with
    `budgets`, a pilot's: only a second run of a cell and seed at the same number of steps)."""
    rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    seen: dict[tuple[Any, ...], str] = {}
    for row, metrics in records:
        replicate = tuple((type(row[a]).__name__, row[a]) for a in (*AXES, REPLICATE))
        replicate += (row.get("total_steps"),) if budgets else ()
        if replicate in seen:
            problems.append(
                Problem(row["source"], f"duplicate of {seen[replicate]} (same cell and seed: counted once)")
            )
            continue
        seen[replicate] = row["source"]
        rows.append(row)
        curve = metrics.copy()
        for column in ("run_id", "study", *AXES, REPLICATE):
            curve[column] = [row[column]] * len(curve)
        curves.append(curve)
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS)) if rows else _empty_runs()
    curve_frame = pd.concat(curves, ignore_index=True)[list(CURVE_COLUMNS)] if curves else _empty_curves()
    for frame in (runs, curve_frame):
        for column in AXES:  # mixed types (segments: 4 or "depthwise") and Python bools, as in summary.json
            frame[column] = frame[column].astype(object)
    return Runs(runs, curve_frame, problems)


def combine(parts: Sequence[Runs]) -> Runs:
    """Several sources (folders, W&B) as one set of frames; duplicates across sources are set aside."""
    problems = [p for part in parts for p in part.problems]
    records = []
    for part in parts:
        for _, series in part.runs.iterrows():
            row = series.to_dict()
            row.update({axis: parse_value(axis, row[axis]) for axis in (*AXES, REPLICATE)})
            metrics = part.curves[part.curves["run_id"] == row["run_id"]][list(METRIC_COLUMNS)]
            records.append((row, metrics.reset_index(drop=True)))
    return build(records, problems)


# A run's record as a row ---------------------------------------------------------------------------------------


def design_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `design` fields of a study's config the analysis follows, as the runs frame's columns."""
    design = config.get("design")
    design = design if isinstance(design, Mapping) else {}
    words = {f"design_{key}": design.get(key) if isinstance(design.get(key), str) else None for key in DESIGN_WORDS}
    looks = design.get("looks")
    if isinstance(looks, list | tuple) and looks:
        words["design_looks"] = ",".join(str(k) for k in looks)
    return {"design_margin": design_margin(config), **words}


def design_margin(config: Mapping[str, Any]) -> float:
    """`design.margin` of a study's config (an equivalence margin in accuracy points), NaN when absent."""
    design = config.get("design")
    margin = number(design.get("margin")) if isinstance(design, Mapping) else math.nan
    return margin if math.isfinite(margin) and margin > 0 else math.nan


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def check_status(summary: Mapping[str, Any]) -> None:
    status = summary.get("status")
    if status == "completed":
        return
    if status == "failed":
        raise RunError(f"failed: {summary.get('error') or 'no error recorded'}")
    if status == "interrupted":
        raise RunError(
            f"interrupted at step {summary.get('steps')}/{summary.get('total_steps')} (run it again to resume)"
        )
    if status == "dry_run":
        raise RunError("dry run: never trained")
    raise RunError(f"malformed summary.json (status {status!r})")


def run_row(
    summary: Mapping[str, Any], *, source: str, project: str | None = None, entity: str | None = None
) -> dict[str, Any]:
    """A `runs` row from a completed run's summary values; RunError names a missing or invalid value."""
    missing = [
        k for k in ("name", "run_key", "study", *AXES, REPLICATE, "val_top1", "best_val_top1") if k not in summary
    ]
    if missing:
        raise RunError(f"malformed summary.json (missing {', '.join(missing)})")
    row: dict[str, Any] = {"run_id": source, "source": source, "status": summary["status"]}
    for key in ("name", "run_key", "study"):
        row[key] = str(summary[key])
    for axis in (*AXES, REPLICATE):
        try:
            row[axis] = parse_value(axis, summary[axis])
        except ValueError as error:
            raise RunError(f"malformed summary.json ({error})") from None
    for key in SUMMARY_VALUES:
        row[key] = summary.get(key)
    for key in ("val_top1", "best_val_top1", "val_top5"):
        value = row[key]
        if key != "val_top5" or value is not None:
            _check_fraction(key, value)
        row[key] = number(value)
    for key in NUMERIC_SUMMARY:
        row[key] = number(row[key])
    row["project"], row["entity"] = project, entity
    row.update(design_values({}))
    return row


def _check_fraction(key: str, value: Any) -> None:
    fraction = number(value)
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise RunError(f"malformed summary.json ({key}={value!r}; an accuracy is a fraction in [0, 1])")


def number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def clean_metrics(table: pd.DataFrame, what: str) -> pd.DataFrame:
    """The train, val (and test) rows of a metrics table, typed and sorted by split and step; RunError if it
    lacks a column, a step or a validation accuracy."""
    missing = [c for c in REQUIRED_METRICS if c not in table.columns]
    if missing:
        raise RunError(f"malformed {what} (missing columns {', '.join(missing)})")
    table = table.reindex(columns=list(METRIC_COLUMNS))
    table["split"] = table["split"].astype(str).str.strip()
    table = table[table["split"].isin(SPLITS)]
    for column in METRIC_COLUMNS:
        if column != "split":
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    if table["step"].isna().any():
        raise RunError(f"malformed {what} (a row without a step)")
    val = table[table["split"] == "val"]
    if val.empty:
        raise RunError(f"malformed {what} (no validation rows)")
    if val["top1"].isna().any() or not val["top1"].between(0.0, 1.0).all():
        raise RunError(f"malformed {what} (a validation top-1 missing or outside [0, 1])")
    table["step"] = table["step"].astype(int)
    table["split"] = table["split"].astype(object)
    return table.sort_values(["split", "step"], kind="stable").reset_index(drop=True)


# W&B --------------------------------------------------------------------------------------------------------------


