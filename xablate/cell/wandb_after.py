"""A completed run folder trained without W&B becomes the W&B run its training would have logged live: the
same id (`<run key>-<attempt>`), group, job type, name, tags, config, history and summary, through the live
path's own `Tracker` and row mapping (`engine.log.replay`). Used by `python -m xablate.log_wandb` and by a
stack of seeds (`stack.py`), whose seeds reach W&B from their folders as each stack ends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..engine.checkpoint import CHECKPOINT
from ..engine.log import METRICS, replay
from ..engine.tracking import Tracker
from ..spec.cell import Cell
from ..spec.record import SUMMARY, read_summary, write_summary
from ..wandb_run import reason as reason_of
from .lock import LOCK
from .reuse import studies_of

CONFIG = Path(".hydra") / "config.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"

def unfinished(folder: Path) -> str | None:
    """Why `folder` is not a completed run this can log, or None when it is."""
    summary = read_summary(folder)
    if summary is None:
        return f"{SUMMARY} cannot be read"
    if summary.get("status") != "completed":
        return f"status {summary.get('status')}: only completed runs are logged"
    for name in (METRICS, CONFIG):
        if not (folder / name).is_file():
            return f"no {name}"
    if (folder / LOCK).exists():
        return f"a process holds its {LOCK}"
    return None


def run_config(folder: Path, mode: str) -> DictConfig:
    """The job's config as Hydra saved it, with `hydra`'s config-group choices and command-line overrides (from
    `hydra.yaml`, where kept) as the live run had them, and `logger.mode` set to `mode`."""
    cfg = OmegaConf.load(folder / CONFIG)
    assert isinstance(cfg, DictConfig), f"{CONFIG} holds a list"
    if (folder / HYDRA).is_file():
        hydra = OmegaConf.load(folder / HYDRA).hydra
        cfg.hydra = {"runtime": {"choices": hydra.runtime.choices}, "overrides": {"task": hydra.overrides.task}}
    cfg.logger.mode = mode
    return cfg


def logged_run(folder: Path, run_id: str) -> Path | None:
    """The W&B run of `run_id` already in `folder/wandb/`, offline or online, if there is one."""
    return next(
        (d for d in sorted((folder / "wandb").glob(f"*-{run_id}")) if (d / f"run-{run_id}.wandb").is_file()), None
    )


def track(cfg: DictConfig, cell: Cell, folder: Path, summary: dict[str, Any], attempt: int) -> Tracker:
    """The W&B run of `folder` as its training, or its copy from another study, would have logged it."""
    if "reused_from" in summary:
        trained_in = Path(summary["reused_from"]).parent.name
        tracker = Tracker(cfg, cell, folder, retag=(f"{cell.key}-{attempt}", trained_in), studies=studies_of(folder))
        tracker.finish()
        return tracker
    tuned = summary.get("tuned")
    if tuned:  # the cell trained at the value its tuning picked; its identity is the untuned config's
        OmegaConf.update(cfg, str(tuned["param"]), tuned["value"])
    tracker = Tracker(cfg, cell, folder, attempt=attempt)
    replay(folder / METRICS, tracker)
    tracker.end({**summary, "wandb_id": tracker.run_id}, folder / CHECKPOINT)
    return tracker


@dataclass(frozen=True)
class Outcome:
    """What became of one folder: `logged`, `already` (it has its W&B run), `skipped` or `failed`, the line that
    says so, and the offline W&B run folder to sync."""

    kind: str
    line: str
    offline_run: Path | None = None


def log_run(folder: Path, mode: str) -> Outcome:
    """Log one folder as the W&B run it would have been, unless it is not a completed run or has that run."""
    reason = unfinished(folder)
    if reason is not None:
        return Outcome("skipped", f"{folder}: skipped: {reason}")
    summary = read_summary(folder) or {}
    try:
        cfg = run_config(folder, mode)
        cell = Cell.of(cfg)
    except Exception as error:  # a damaged or foreign config: this folder is skipped, the others are logged
        return Outcome("skipped", f"{folder}: skipped: {CONFIG} does not describe a cell ({reason_of(error)})")
    if cell.key != summary.get("run_key"):
        return Outcome(
            "skipped", f"{folder}: skipped: {CONFIG} gives run key {cell.key}, {SUMMARY} {summary.get('run_key')}"
        )
    attempt = int(summary.get("attempt") or 1)
    run_id = f"{cell.key}-{attempt}"
    existing = logged_run(folder, run_id)
    if existing is not None:
        return Outcome(
            "already", f"{folder}: already has W&B run {run_id} ({existing.relative_to(folder)}); not logged again"
        )
    tracker = track(cfg, cell, folder, summary, attempt)
    if tracker.run_dir is None or not (tracker.run_dir / f"run-{run_id}.wandb").is_file():
        return Outcome("failed", f"{folder}: not logged: W&B could not write run {run_id}")
    write_summary(folder, {**summary, "wandb_id": run_id})
    line = f"{folder}: logged as W&B run {run_id} ({tracker.mode}: {Path('wandb') / tracker.run_dir.name})"
    return Outcome("logged", line, tracker.run_dir if tracker.mode == "offline" else None)
