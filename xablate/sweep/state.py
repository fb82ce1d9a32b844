"""What a study's folders say about each cell now, read without writing or locking anything: its status,
what the next sweep will do with it, and how far a running cell has got.

Every reader of a sweep's folders goes through here: the announcement before a sweep, the time estimate,
the line after each cell, the report and the status view, so they all count cells the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ..cell.lock import holder_if_live
from ..cell.reuse import completed_twin
from ..engine.log import METRICS
from ..engine.runtime import execution_setting
from ..spec.cell import Cell
from ..spec.record import read_summary

DONE = ("completed", "dry_run")
"""Statuses a cell can end a command in without having failed."""


def status_now(folder: Path) -> str:
    """The status in the folder's summary (`new` without one), or `running` while a live process holds it
    (a dry run's summary stays until the training that follows it ends)."""
    status = (read_summary(folder) or {}).get("status", "new")
    if status != "completed" and holder_if_live(folder) is not None:
        return "running"
    return status


@dataclass(frozen=True)
class Fate:
    """What a sweep will do with a cell: `kind` is `completed` (skipped), `reused` (copied from the study
    named in `note`), `running` (left to the live process `note` names), `resume` (from the summary's step
    `step`; `note` is `interrupted` or `failed`) or `train` (from step 0; `note` says why a twin in another
    study was not reused, if one was found)."""

    kind: str
    step: int = 0
    note: str = ""


def fate(cfg: DictConfig) -> Fate:
    """What running `cfg` will do, given what its folder (and its twins in other studies) hold now."""
    folder = Cell.of(cfg).folder
    if cfg.rerun:
        return Fate("train")
    summary = read_summary(folder) or {}
    status = status_now(folder)
    if status == "completed":
        return Fate("completed")
    if status == "running":
        return Fate("running", note=str(holder_if_live(folder) or "running elsewhere"))
    if status in ("interrupted", "failed"):
        return Fate("resume", int(summary.get("steps") or 0), status)
    twin = completed_twin(folder, execution_setting(cfg, cfg.hydra.launcher)) if cfg.reuse else None
    if twin is not None and twin.mismatch is None:
        return Fate("reused", note=twin.path.parent.name)
    return Fate("train", note="" if twin is None else str(twin.mismatch))


def last_step(folder: Path) -> int:
    """The last gradient step a cell's `metrics.csv` has logged (0 when none): how far a running cell has got.
    The file is appended to while the cell runs, so a last line cut short is passed over."""
    try:
        whole = (folder / METRICS).read_text().split("\n")[1:-1]  # the last piece: "" or a line not yet ended
    except OSError:
        return 0
    return next((int(head) for line in reversed(whole) if (head := line.split(",", 1)[0]).isdigit()), 0)


@dataclass(frozen=True)
class Counts:
    """A sweep's cells by where they stand: done (completed, here or earlier, or copied), running, failed
    and left (everything else: not started, interrupted, dry-run only)."""

    done: int
    running: int
    left: int
    failed: int

    @classmethod
    def of(cls, statuses: list[str]) -> Counts:
        count = Counter(statuses)
        done, running, failed = count["completed"], count["running"], count["failed"]
        return cls(done, running, len(statuses) - done - running - failed, failed)

    def __str__(self) -> str:
        total = self.done + self.running + self.left + self.failed
        return f"{self.done} of {total} done, {self.running} running, {self.left} left, {self.failed} failed"
