"""`python -m xablate.log_wandb RUNS...` (also `xablate-log-wandb`): runs trained without W&B become W&B runs.

A run trained where W&B was absent or turned off (`logger.mode=disabled`, a GPU node without wandb, an
air-gapped machine) keeps its whole record on disk: the config Hydra saved, every metrics row, its summary.
This logs each completed run folder as the W&B run its training would have written live, through the live
path's own `Tracker` and row mapping (`engine.log.replay`): the same id (`<run key>-<attempt>`), group, job
type, name, tags, config, history and summary, offline by default, into the folder's `wandb/`. Its id then
goes into `summary.json`'s `wandb_id`, as a live run's does. A run copied from another study (`reused_from`)
gets what a live copy gets: the original run's tags updated with every study it is in.

A folder that already holds a W&B run of that id (logged live, or by an earlier call) is not logged again;
a folder that is not a completed run is named and skipped; a bad argument is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from .cell.lock import LOCK
from .cell.reuse import studies_of
from .engine.checkpoint import CHECKPOINT
from .engine.log import METRICS, replay
from .engine.tracking import Tracker
from .spec.cell import Cell
from .spec.record import SUMMARY, read_summary, write_summary
from .wandb_run import reason as reason_of

PROG = "xablate-log-wandb"
CONFIG = Path(".hydra") / "config.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"
NOT_SEARCHED = frozenset({"archive", "wandb", ".hydra"})
"""Folders never searched for runs: earlier attempts, W&B's files, Hydra's."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: object) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Log completed xablate runs trained without W&B as W&B runs.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUNS", help="run folders, or folders holding them")
    parser.add_argument(
        "--mode",
        choices=("offline", "online"),
        default="offline",
        help="offline (default: into each run's wandb/, for `wandb sync`) or online (offline when W&B is unreachable)",
    )
    return parser


def run_folders(paths: Sequence[Path]) -> list[Path]:
    """The folders holding a `summary.json` among `paths` and below them, each once, in path order."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            fail(f"{path} does not exist; allowed: a run folder, or a folder holding run folders")
        if not path.is_dir():
            fail(f"{path} is not a folder; allowed: a run folder, or a folder holding run folders")
        here = [p.parent for p in sorted(path.rglob(SUMMARY)) if not NOT_SEARCHED & set(p.relative_to(path).parts)]
        if not here:
            fail(f"no run folders in {path} (a run folder holds {SUMMARY}, {METRICS} and {CONFIG})")
        found += [folder for folder in here if folder not in found]
    return found


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


def sync_hint(offline_runs: Sequence[Path]) -> str:
    """The `wandb sync` command for the offline runs: one pattern per study folder, as a sweep prints it."""
    patterns = sorted({str(run.parent.parent.parent / "*" / "wandb" / "offline-run-*") for run in offline_runs})
    return f"W&B (offline): wandb sync {' '.join(patterns)}"


WORDS = {"logged": "logged", "already": "logged earlier", "skipped": "skipped", "failed": "failed"}


def main(argv: Sequence[str] | None = None) -> int:
    """Log every folder the arguments name; exit status 1 when W&B failed on one, 2 on a bad argument."""
    args = build_parser().parse_args(argv)
    folders = run_folders(args.runs)
    if importlib.util.find_spec("wandb") is None:
        print(f"{PROG}: error: wandb is not installed here (pip install wandb)", file=sys.stderr)
        return 1
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    logging.getLogger("xablate").addHandler(handler)
    logging.getLogger("xablate").setLevel(logging.WARNING)
    outcomes = []
    for folder in sorted(folders, key=lambda f: "reused_from" in (read_summary(f) or {})):  # originals first
        outcomes.append(log_run(folder, args.mode))
        print(outcomes[-1].line, flush=True)
    counts = {kind: sum(o.kind == kind for o in outcomes) for kind in ("logged", "already", "skipped", "failed")}
    print(f"{PROG}: " + ", ".join(f"{n} {WORDS[kind]}" for kind, n in counts.items() if n), flush=True)
    offline = [o.offline_run for o in outcomes if o.offline_run is not None]
    if offline:
        print(sync_hint(offline), flush=True)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
