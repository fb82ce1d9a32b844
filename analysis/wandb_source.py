"""Runs logged to W&B elsewhere (online), read back through the W&B public API into the same frames as run
folders give."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pandas as pd

from .axes import AXES, REPLICATE
from .frames import (
    METRIC_COLUMNS,
    Problem,
    RunError,
    Runs,
    build,
    check_status,
    clean_metrics,
    design_values,
    first_line,
    run_row,
)

WANDB_HISTORY: dict[str, dict[str, str]] = {
    split: {column: f"{split}/{column}" for column in METRIC_COLUMNS if column not in ("step", "split")}
    for split in ("val", "train", "test")
}
"""The W&B history keys of every metrics.csv column, by split: the trainer logs each row of metrics.csv as
`<split>/<column>` at `_step` = the row's step (xablate/engine/log.py; `val/lr` is not logged: NaN)."""



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
    check_status(values)
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
        raise WandbUnavailable(f"W&B API: {type(error).__name__}: {first_line(error)}") from None


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
        raise WandbUnavailable(f"W&B API: {type(error).__name__}: {first_line(error)}") from None
    return build(records, problems)
