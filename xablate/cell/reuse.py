"""Reuse of a cell that already completed in another study.

A cell's folder name ends in its run key, and the key leaves the study out, so `runs/fig9/X` and
`runs/fig11/X` are the same training run (the depthwise, no-activation, residual cell is the baseline of
all three figures). Training it once per study would repeat identical work; instead the second study
copies the completed run's files and says where they came from in `summary.json` (`reused_from`).
The W&B run is shared as well: it gets a `study:<name>` tag for every study the cell is in, so that a
study's W&B runs are those of its group and those tagged with it. Only a run trained the same way (device,
threads, precision, torch) is reused: otherwise the cell trains again, and the sweep's announcement says why.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..engine.tracking import Tracker
from ..spec.cell import Cell
from ..spec.record import SUMMARY, read_summary, reused_record, write_summary
from .lock import LOCK

SETTING_PHRASES: dict[str, str] = {
    "device": "on {}", "hardware": "on {}", "threads": "with {} threads", "precision": "at precision {}",
    "torch": "with torch {}", "fast_backward": "with trainer.fast_backward={}",
    "stack": "with trainer.stack={}",
}  # fmt: skip
SETTING_BEFORE_RECORDED: dict[str, Any] = {"fast_backward": False, "stack": 1}
"""What runs made before a setting was recorded in summary.json used (the library's backward, one seed a model)."""


def setting_mismatch(there: Mapping[str, Any], here: Mapping[str, Any]) -> str | None:
    """Why a run with setting `there` is not this one's twin (None when it is)."""
    there = {**SETTING_BEFORE_RECORDED, **{k: v for k, v in there.items() if v is not None}}
    for key, value in here.items():
        if there.get(key) != value:
            was = "(not recorded)" if there.get(key) is None else there[key]
            return f"trained {SETTING_PHRASES[key].format(was)} there, {value} here"
    return None


NOT_COPIED = frozenset({SUMMARY, LOCK, "wandb", ".hydra", "archive"})


@dataclass(frozen=True)
class Twin:
    """A completed run of the same cell in another study; `mismatch` says why it cannot stand in for this
    one (trained with another device, thread count, precision or torch), None when it can."""

    path: Path
    mismatch: str | None


def completed_twin(out: Path, setting: Mapping[str, Any]) -> Twin | None:
    """A completed run with `out`'s folder name in another study under the same `out_dir`: one trained in
    `setting` if there is one, else the first, with the reason it differs; None when there is none."""
    twins = []
    for candidate in sorted(out.parent.parent.glob(f"*/{out.name}")):
        summary = read_summary(candidate)
        if candidate.resolve() != out.resolve() and summary is not None and summary.get("status") == "completed":
            twins.append(Twin(candidate, setting_mismatch(summary, setting)))
    return next((t for t in twins if t.mismatch is None), twins[0] if twins else None)


def reuse(cfg: DictConfig, cell: Cell, source: Path, out: Path) -> dict[str, Any]:
    """Copy `source`'s run files into `out` and write its summary there, marked as reused, last; tag the
    W&B run with every study the cell is now in."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name in NOT_COPIED or entry.name.endswith(".log") or not entry.is_file():
            continue
        shutil.copy2(entry, out / entry.name)
    summary = read_summary(source)
    assert summary is not None
    summary = reused_record(summary, cell.study, source)
    write_summary(out, summary)
    if summary.get("wandb_id"):
        trained_in = Path(summary["reused_from"]).parent.name
        Tracker(cfg, cell, out, retag=(summary["wandb_id"], trained_in), studies=studies_of(out)).finish()
    return summary


def studies_of(out: Path) -> tuple[str, ...]:
    """The studies under `out`'s `out_dir` whose folder of this cell holds a completed run (trained or reused)."""
    folders = sorted(out.parent.parent.glob(f"*/{out.name}"))
    return tuple(f.parent.name for f in folders if (read_summary(f) or {}).get("status") == "completed")
