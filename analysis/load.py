"""Runs into two tidy frames: from run folders on disk, or from W&B for runs logged online elsewhere.

These frames feed every figure (paper Fig. 9 and 10, the project's Fig. 11) and the summary table:

- `runs`: one row per run: its identity, the axes of its cell, its seed and the values of its `summary.json`;
- `curves`: one row per run, split and step: the validation curve (`split == "val"`, one row per evaluation)
  and the training rows (`split == "train"`, one per logging interval), with the run's axes on every row.

Only completed runs enter the frames. A failed, interrupted, dry-run, unfinished (metrics but no summary) or
malformed run, and a second run of the same cell and seed, is set aside as a `Problem` with its path and the
reason, so the caller can list them all in one warning; no run folder can make loading fail. Files under a
run's `archive/` (an earlier attempt kept by `rerun=true`) are never read as runs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .axes import AXES, REPLICATE, parse_value

SUMMARY = "summary.json"
METRICS = "metrics.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"

REQUIRED_METRICS: tuple[str, ...] = ("step", "epoch", "split", "loss", "top1", "top5", "lr", "img_per_s", "wall_s")
METRIC_COLUMNS: tuple[str, ...] = (*REQUIRED_METRICS, "ce")
"""`ce` (the unsmoothed training cross-entropy) is optional: runs that do not log it get NaN."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
SUMMARY_VALUES: tuple[str, ...] = (
    "params", "macs", "steps", "total_steps", "val_top1", "val_top5", "val_loss", "best_val_top1",
    "test_top1", "test_top5", "test_loss", "train_ce",
    "train_img_per_s", "train_s", "wall_s", "device", "hardware", "threads", "precision", "finished_at", "wandb_id",
)  # fmt: skip
NUMERIC_SUMMARY: tuple[str, ...] = (
    "params", "macs", "steps", "total_steps", "train_img_per_s", "train_s", "wall_s", "val_loss",
    "test_top1", "test_top5", "test_loss", "train_ce",
)  # fmt: skip
IDENTITY: tuple[str, ...] = ("run_id", "source", "study", "name", "run_key")
DESIGN_WORDS: tuple[str, ...] = ("variance", "comparisons", "primary", "baseline")
DESIGN_COLUMNS: tuple[str, ...] = ("design_margin", *(f"design_{word}" for word in DESIGN_WORDS))
"""What a run's study declared in its config's `design` (`analysis.design` follows it): NaN / empty when absent
(older published runs.csv files lack the later columns)."""
RUN_COLUMNS: tuple[str, ...] = (
    *IDENTITY, *AXES, REPLICATE, "status", *SUMMARY_VALUES, "project", "entity", *DESIGN_COLUMNS,
)  # fmt: skip
CURVE_COLUMNS: tuple[str, ...] = ("run_id", "study", *AXES, REPLICATE, *METRIC_COLUMNS)
PUBLISHED = ("runs.csv", "curves.csv")
"""The frames an earlier analysis wrote: a folder holding both is a published study."""

WANDB_HISTORY: dict[str, dict[str, str]] = {
    split: {column: f"{split}/{column}" for column in METRIC_COLUMNS if column not in ("step", "split")}
    for split in ("val", "train", "test")
}
"""The W&B history keys of every metrics.csv column, by split: the trainer logs each row of metrics.csv as
`<split>/<column>` at `_step` = the row's step (xablate/engine/log.py; `val/lr` is not logged: NaN)."""

SKIP_DIRS = frozenset({"wandb", ".hydra", "__pycache__", ".git", "tuning"})  # tuning: tune=lr trials


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


def build(records: Iterable[tuple[dict[str, Any], pd.DataFrame]], problems: list[Problem]) -> Runs:
    """Frames from (run row, metrics rows) pairs; a second run of a cell and seed joins `problems`."""
    rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    seen: dict[tuple[Any, ...], str] = {}
    for row, metrics in records:
        replicate = tuple((type(row[a]).__name__, row[a]) for a in (*AXES, REPLICATE))
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


def load_local(roots: Sequence[Path], exclude: Sequence[Path] = ()) -> Runs:
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
    return build(records, problems)


def read_published(folder: Path) -> tuple[list[tuple[dict[str, Any], pd.DataFrame]], list[Problem]]:
    """The runs of a published `runs.csv` and `curves.csv` (written by an earlier analysis, so that a study
    can be analysed again from a clean clone, without its run folders)."""
    try:
        runs = pd.read_csv(folder / PUBLISHED[0], dtype=object, keep_default_na=False)
        curves = pd.read_csv(folder / PUBLISHED[1], dtype={"split": str, "run_id": str})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        return [], [Problem(str(folder), f"malformed published frames ({_first_line(error)})")]
    by_run = {run_id: group for run_id, group in curves.groupby("run_id", sort=False)}
    records, problems = [], []
    for _, series in runs.iterrows():
        values = {k: (None if v == "" else v) for k, v in series.to_dict().items()}
        where = f"{folder / PUBLISHED[0]}: {values.get('run_id')}"
        try:
            _check_status(values)
            row = run_row(values, source=str(values.get("source") or where))
            row.update({column: values.get(column) for column in DESIGN_COLUMNS})
            row["design_margin"] = _number(values.get("design_margin"))
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
        raise RunError(f"malformed summary.json ({_first_line(error)})") from None
    if not isinstance(summary, dict):
        raise RunError("malformed summary.json (not a JSON object)")
    _check_status(summary)
    if not metrics_path.is_file():
        raise RunError("malformed: summary.json but no metrics.csv")
    try:
        table = pd.read_csv(metrics_path, dtype={"split": str})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        raise RunError(f"malformed metrics.csv ({_first_line(error)})") from None
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


def design_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `design` fields of a study's config the analysis follows, as the runs frame's columns."""
    design = config.get("design")
    design = design if isinstance(design, Mapping) else {}
    words = {f"design_{key}": design.get(key) if isinstance(design.get(key), str) else None for key in DESIGN_WORDS}
    return {"design_margin": design_margin(config), **words}


def design_margin(config: Mapping[str, Any]) -> float:
    """`design.margin` of a study's config (an equivalence margin in accuracy points), NaN when absent."""
    design = config.get("design")
    margin = _number(design.get("margin")) if isinstance(design, Mapping) else math.nan
    return margin if math.isfinite(margin) and margin > 0 else math.nan


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_status(summary: Mapping[str, Any]) -> None:
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
        row[key] = _number(value)
    for key in NUMERIC_SUMMARY:
        row[key] = _number(row[key])
    row["project"], row["entity"] = project, entity
    row.update(design_values({}))
    return row


def _check_fraction(key: str, value: Any) -> None:
    number = _number(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise RunError(f"malformed summary.json ({key}={value!r}; an accuracy is a fraction in [0, 1])")


def _number(value: Any) -> float:
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


class WandbUnavailable(RuntimeError):
    """The W&B API cannot be used (no API key, no network, unknown project): one line for the user."""


def _unwrap(config: Mapping[str, Any]) -> dict[str, Any]:
    """W&B config values as plain values (the API unwraps `{"value": ...}`, a raw export may not)."""
    out: dict[str, Any] = {}
    for key, value in dict(config).items():
        if isinstance(value, Mapping) and set(value) <= {"value", "desc"} and "value" in value:
            value = value["value"]
        out[str(key)] = value
    return out


def _summary_of(run: Any) -> dict[str, Any]:
    values = getattr(run, "summary_metrics", None)
    if values is None:
        values = run.summary
    return {str(k): v for k, v in dict(values).items()}


def _wandb_path(run: Any) -> str:
    path = getattr(run, "path", None)
    if isinstance(path, (list, tuple)):
        return "wandb:" + "/".join(str(p) for p in path)
    return f"wandb:{path or run.id}"


def _entity_project(run: Any, config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """From the run's path (`[entity, project, id]`), else from the `logger` node older runs' configs hold."""
    path = getattr(run, "path", None)
    if isinstance(path, (list, tuple)) and len(path) == 3:
        return str(path[0]), str(path[1])
    logger = config.get("logger") if isinstance(config.get("logger"), Mapping) else {}
    return logger.get("entity"), logger.get("project")


def convert_wandb_run(run: Any, group: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """A W&B public-API run (or anything with its `id`, `name`, `path`, `group`, `tags`, `state`, `config`,
    `summary_metrics` / `summary` and `scan_history()`) as a `runs` row and its metrics rows; a run of
    another group tagged `study:<group>` (a cell reused in that study) counts as a run of `group`.

    The summary holds the run's summary.json values, the config the resolved xablate config; the history
    holds `val/*` and `train/*` keys at `_step` = gradient steps."""
    summary = _summary_of(run)
    config = _unwrap(run.config)
    status = summary.get("status")
    if status is None:
        state = getattr(run, "state", None)
        if state == "running":
            raise RunError("unfinished: still running in W&B (no status in its summary)")
        raise RunError(f"malformed: no status in the W&B summary (W&B state {state!r})")
    values = dict(summary)
    for axis in (*AXES, REPLICATE):
        if axis not in values:
            if axis in ("model", "data"):
                node = config.get(axis)
                values[axis] = node.get("name") if isinstance(node, Mapping) else node
            else:
                values[axis] = config.get(axis)
            if values[axis] is None:
                del values[axis]
    values.setdefault("name", getattr(run, "name", None) or run.id)
    values["wandb_id"] = values.get("wandb_id") or run.id
    values.setdefault("run_key", run.id)
    study = getattr(run, "group", None) or config.get("study")
    if study is not None:
        values.setdefault("study", study)
    _check_status(values)
    if group is not None and f"study:{group}" in (getattr(run, "tags", None) or ()):
        values["study"] = group  # trained in another study, tagged as reused in this one
    entity, project = _entity_project(run, config)
    source = _wandb_path(run)
    row = run_row(values, source=source, project=project, entity=entity)
    row.update(design_values(config))
    row["run_id"] = source
    return row, clean_metrics(history_rows(run.scan_history()), "W&B history")


def history_rows(history: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """W&B history rows as metrics.csv rows: a row with `val/*` keys is an evaluation, one with `train/*`
    keys a logging interval (a row may be both: the trainer logs both at an evaluation step)."""
    rows: list[dict[str, Any]] = []
    for record in history:
        step = record.get("_step")
        for split, keys in WANDB_HISTORY.items():
            if record.get(keys["top1"] if split == "val" else keys["loss"]) is None:
                continue
            row: dict[str, Any] = {c: math.nan for c in METRIC_COLUMNS}
            row.update({"step": step, "split": split})
            row.update({column: record.get(key, math.nan) for column, key in keys.items()})
            rows.append(row)
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def has_wandb_credentials() -> bool:
    """Whether W&B finds an API key without prompting or touching the network."""
    import wandb

    from xablate.wandb_run import has_credentials

    return has_credentials(wandb)


def wandb_runs(path: str, group: str | None, timeout_s: float = 20.0) -> Iterator[Any]:
    """The runs of `path` (ENTITY/PROJECT), in `group` or tagged `study:<group>` when given, from the W&B
    public API."""
    try:
        import wandb

        if not has_wandb_credentials():
            raise WandbUnavailable("no W&B API key: run `wandb login` or set WANDB_API_KEY")
        api = wandb.Api(timeout=timeout_s)
        filters = {"$or": [{"group": group}, {"tags": {"$in": [f"study:{group}"]}}]} if group else {}
        yield from api.runs(path, filters=filters)
    except WandbUnavailable:
        raise
    except Exception as error:
        raise WandbUnavailable(f"W&B API: {type(error).__name__}: {_first_line(error)}") from None


def load_wandb(path: str, group: str | None, api_runs: Iterable[Any] | None = None) -> Runs:
    """The frames of the completed training runs of a W&B project (and group); the `analysis` runs this
    package logs, and the trials of a learning-rate search (job type `tune`), are skipped. `api_runs` replaces
    the API (tests pass stand-ins for its run objects)."""
    records = []
    problems: list[Problem] = []
    runs = wandb_runs(path, group) if api_runs is None else api_runs
    try:
        for run in runs:
            if getattr(run, "job_type", None) in ("analysis", "tune"):
                continue
            try:
                records.append(convert_wandb_run(run, group))
            except RunError as error:
                problems.append(Problem(_wandb_path(run), str(error)))
    except WandbUnavailable:
        raise
    except Exception as error:
        raise WandbUnavailable(f"W&B API: {type(error).__name__}: {_first_line(error)}") from None
    return build(records, problems)
