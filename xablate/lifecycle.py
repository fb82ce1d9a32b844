"""A cell's lifecycle above the training loop: validate, then dry-run, skip, reuse, archive, retry or train.

`run(cfg)` is the whole of one job: the Hydra entry point and the tests call it, and it returns the
cell's summary (also written to its folder's `summary.json`).
"""

from __future__ import annotations

import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from . import distributed
from .config import build_model, input_shape, validate
from .costs import format_costs, profile
from .data import check_data
from .distributed import world_from_env
from .identity import Cell
from .metrics import METRICS
from .provenance import provenance
from .reuse import completed_twin, reuse
from .runtime import check_precision, deterministic, job_gpu, launcher_threads, select_device, threads
from .summary import SUMMARY, read_summary, write_json_atomic
from .train import Attempt, train


def run(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Dry-run or train the cell `cfg` describes (into `out`, by default its own folder); its summary."""
    cell = validate(cfg)
    out = cell.folder if out is None else out
    if cfg.dry_run:
        return dry_run(cfg, cell, out)
    return train_cell(cfg, cell, out)


def dry_run(cfg: DictConfig, cell: Cell, out: Path) -> dict[str, Any]:
    """Print the model's costs and write a `dry_run` summary, unless the folder holds a real run."""
    with torch.device("meta"):
        cost = profile(build_model(cfg, cell.axes), input_shape(cfg))
    print(format_costs(cell.name, f"{cell.model} on {cell.data}", input_shape(cfg), cost), flush=True)
    summary = {
        "status": "dry_run",
        **cell.record(),
        "params": cost.params,
        "macs": cost.macs,
        "stages": [
            {"name": s.name, "out_shape": list(s.out_shape), "params": s.params, "macs": s.macs} for s in cost.stages
        ],
    }
    previous = read_summary(out)
    if previous is not None and previous.get("status") != "dry_run":
        print(f"  {out / SUMMARY} holds a {previous.get('status')} run: left as it is", flush=True)
        return summary
    write_json_atomic(out / SUMMARY, summary)
    return summary


def record_failure(cfg: DictConfig, error: str, out: Path | None = None) -> dict[str, Any]:
    """A `failed` summary for a cell that stopped before training could record anything itself."""
    cell = Cell.of(cfg)
    summary = {"status": "failed", **cell.record(), "error": error}
    write_json_atomic((cell.folder if out is None else out) / SUMMARY, summary)
    return summary


def archive_previous(out: Path, *, keep: bool = False) -> Path | None:
    """Move (or with `keep`, copy the record files of) an earlier attempt into `archive/<time>/`, so that
    a forced re-run or a retry loses nothing."""
    if keep:
        entries = [out / name for name in (SUMMARY, METRICS) if (out / name).exists()]
    else:
        entries = [p for p in out.iterdir() if p.name not in (".hydra", "archive") and not p.name.endswith(".log")]
    if not entries:
        return None
    dest = out / "archive" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest.mkdir(parents=True)
    for entry in entries:
        if keep:
            shutil.copy2(entry, dest / entry.name)
        else:
            shutil.move(str(entry), dest / entry.name)
    return dest


def attempt_number(out: Path) -> int:
    """1 for a cell's first attempt, then one more per attempt that `rerun=true` moved to `archive/` (each
    holds its `provenance.json`; the record kept of a failed attempt that is retried does not)."""
    return 1 + sum(1 for _ in out.glob("archive/*/provenance.json"))


def _skip_or_reuse(cfg: DictConfig, cell: Cell, out: Path, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """The summary of a cell that needs no training here: completed earlier, or completed in another study."""
    if previous is not None and previous.get("status") == "completed" and not cfg.rerun:
        print(
            f"{out.name}: already completed (val top-1 {previous.get('val_top1', float('nan')):.2%}); "
            "skipped (rerun=true runs it again, keeping these results in archive/)",
            flush=True,
        )
        return {**previous, "skipped": True}
    fresh = (previous or {}).get("status") in (None, "dry_run")
    twin = completed_twin(out) if fresh and cfg.reuse and not cfg.rerun else None
    if twin is None:
        return None
    if not world_from_env().is_main:
        return read_summary(twin) or {}
    print(
        f"{out.name}: completed earlier in study {twin.parent.name}; its files are copied here, not trained "
        "again (reuse=false trains it again)",
        flush=True,
    )
    return reuse(cfg, cell, twin, out)


def _prepare(cfg: DictConfig, out: Path, previous: dict[str, Any] | None) -> None:
    """Before training (main process): move a forced re-run's files aside, keep a failed attempt's record,
    and write the provenance of this attempt."""
    if cfg.rerun and (dest := archive_previous(out)) is not None:
        print(f"{out.name}: earlier results moved to {dest.relative_to(out)}", flush=True)
    elif previous is not None and previous.get("status") == "failed":
        dest = archive_previous(out, keep=True)
        print(f"{out.name}: retrying a failed run (its record is kept in {dest and dest.relative_to(out)})")
    write_json_atomic(out / "provenance.json", provenance())


def train_cell(cfg: DictConfig, cell: Cell, out: Path) -> dict[str, Any]:
    """Train the cell, or skip it when it already completed; resume from `out/checkpoint.pt` if present."""
    out.mkdir(parents=True, exist_ok=True)
    previous = read_summary(out)
    done = _skip_or_reuse(cfg, cell, out, previous)
    if done is not None:
        return done
    check_data(cfg.data)
    world = world_from_env()
    device = distributed.init(world, job_gpu(select_device(cfg.trainer.device)))
    check_precision(device, str(cfg.trainer.precision))
    deterministic(device, cfg.trainer.deterministic)
    if world.is_main:
        _prepare(cfg, out, previous)
    distributed.barrier(world)
    try:
        with threads(cfg.trainer.threads or launcher_threads()):
            return train(cfg, cell, out, device, world, Attempt(attempt_number(out)))
    finally:
        distributed.shutdown(world)


def exit_code(summary: dict[str, Any]) -> int:
    """The process exit status a single run ends with: 0 completed (or skipped), 1 failed, 128+N by signal N."""
    if summary["status"] == "interrupted":
        return 128 + signal.Signals[summary.get("stopped_by", "SIGTERM")].value
    return 1 if summary["status"] == "failed" else 0
