"""Runs from folders on disk: run folders (their `summary.json`, `metrics.csv` and resolved config) and the
published frames of an earlier analysis, into the frames of `frames.py`. W&B runs come through `wandb_source.py`.

Only completed runs enter the frames. A failed, interrupted, dry-run, unfinished (metrics but no summary) or
malformed run, and a second run of the same cell and seed, is set aside as a `Problem` with its path and the
reason, so the caller can list them all in one warning; no run folder can make loading fail. Files under a
run's `archive/` (an earlier attempt kept by `rerun=true`) are never read as runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .frames import (
    DESIGN_COLUMNS,
    Problem,
    RunError,
    Runs,
    build,
    check_status,
    clean_metrics,
    design_values,
    first_line,
    number,
    run_row,
)

SUMMARY = "summary.json"
METRICS = "metrics.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
PUBLISHED = ("runs.csv", "curves.csv")
"""The frames an earlier analysis wrote: a folder holding both is a published study."""

SKIP_DIRS = frozenset({"wandb", ".hydra", "__pycache__", ".git", "tuning"})  # tuning: tune=lr trials



# Local run folders ------------------------------------------------------------------------------------------------


def find_run_dirs(roots: Sequence[Path], exclude: Sequence[Path] = ()) -> list[Path]:
    """Every run folder under `roots` (at any depth): a folder with a `summary.json`, a `metrics.csv` or a
    Hydra `.hydra/config.yaml`. The search stops at a run folder, so its `archive/` is never entered, and
    skips W&B folders, hidden folders and the folders in `exclude` (the analysis' own output)."""
    return [path for kind, path in _walk(roots, exclude) if kind == "run"]


def _walk(roots: Sequence[Path], exclude: Sequence[Path]) -> Iterator[tuple[str, Path]]:
    """("run", folder) for each run folder and ("published", folder) for each folder holding the frames an
    earlier analysis published; neither is searched further (a published folder's own `analysis/` output
    would otherwise count its runs twice)."""
    excluded = {p.resolve() for p in exclude}
    seen: set[Path] = set()
    for root in roots:
        for current, dirs, files in os.walk(root, followlinks=False):
            path = Path(current)
            resolved = path.resolve()
            if resolved in excluded or resolved in seen:
                dirs[:] = []
                continue
            seen.add(resolved)
            if SUMMARY in files or METRICS in files or (path / HYDRA_CONFIG).is_file():
                yield "run", path
                dirs[:] = []
                continue
            if all(name in files for name in PUBLISHED):
                yield "published", path
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))


def load_local(roots: Sequence[Path], exclude: Sequence[Path] = (), *, budgets: bool = False) -> Runs:
    """The frames of every completed run under `roots`, from run folders and from published frames; every
    other run folder becomes a `Problem`."""
    records = []
    problems: list[Problem] = []
    for kind, path in _walk(roots, exclude):
        if kind == "published":
            found, bad = read_published(path)
            records += found
            problems += bad
            continue
        try:
            records.append(read_run(path))
        except RunError as error:
            problems.append(Problem(str(path), str(error)))
    return build(records, problems, budgets=budgets)


def read_published(folder: Path) -> tuple[list[tuple[dict[str, Any], pd.DataFrame]], list[Problem]]:
    """The runs of a published `runs.csv` and `curves.csv` (written by an earlier analysis, so that a study
    can be analysed again from a clean clone, without its run folders)."""
    try:
        runs = pd.read_csv(folder / PUBLISHED[0], dtype=object, keep_default_na=False)
        curves = pd.read_csv(folder / PUBLISHED[1], dtype={"split": str, "run_id": str})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        return [], [Problem(str(folder), f"malformed published frames ({first_line(error)})")]
    by_run = {run_id: group for run_id, group in curves.groupby("run_id", sort=False)}
    records, problems = [], []
    for _, series in runs.iterrows():
        values = {k: (None if v == "" else v) for k, v in series.to_dict().items()}
        where = f"{folder / PUBLISHED[0]}: {values.get('run_id')}"
        try:
            check_status(values)
            row = run_row(values, source=str(values.get("source") or where))
            row.update({column: values.get(column) for column in DESIGN_COLUMNS})
            row["design_margin"] = number(values.get("design_margin"))
            row["project"], row["entity"] = values.get("project"), values.get("entity")
            row["run_id"] = str(values.get("run_id"))
            metrics = by_run.get(row["run_id"])
            if metrics is None:
                raise RunError("no rows in curves.csv")
            records.append((row, clean_metrics(metrics, "curves.csv")))
        except RunError as error:
            problems.append(Problem(where, str(error)))
    return records, problems


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run folder as its `runs` row and its metrics rows; RunError says why it cannot be used."""
    summary_path, metrics_path = run_dir / SUMMARY, run_dir / METRICS
    if not summary_path.is_file():
        if metrics_path.is_file():
            raise RunError("unfinished: metrics.csv but no summary.json (still running, or killed)")
        raise RunError("unfinished: neither summary.json nor metrics.csv")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunError(f"malformed summary.json ({first_line(error)})") from None
    if not isinstance(summary, dict):
        raise RunError("malformed summary.json (not a JSON object)")
    check_status(summary)
    if not metrics_path.is_file():
        raise RunError("malformed: summary.json but no metrics.csv")
    try:
        table = pd.read_csv(metrics_path, dtype={"split": str})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        raise RunError(f"malformed metrics.csv ({first_line(error)})") from None
    config = _config(run_dir)
    logger = config.get("logger") if isinstance(config.get("logger"), Mapping) else {}
    row = run_row(summary, source=str(run_dir), project=logger.get("project"), entity=logger.get("entity"))
    row.update(design_values(config))
    row["run_id"] = f"{row['study']}/{run_dir.name}"
    return row, clean_metrics(table, "metrics.csv")


def _config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved Hydra config; empty when missing or unreadable (it is optional here)."""
    try:
        import yaml

        config = yaml.safe_load((run_dir / HYDRA_CONFIG).read_text())
    except Exception:
        return {}
    return config if isinstance(config, dict) else {}
