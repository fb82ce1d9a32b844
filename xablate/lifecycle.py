"""A cell's lifecycle above the training loop: validate, then dry-run, skip, reuse, archive, retry or train.

`run(cfg)` is the whole of one job: the Hydra entry point and the tests call it, and it returns the
cell's summary (also written to its folder's `summary.json`). Training holds the cell's lock (see
`lock.py`): a cell another live process holds is not touched, and its summary here has status `running`.
"""

from __future__ import annotations

import shutil
import signal
import sys
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
from .lock import LOCK, CellBusy, acquire, release
from .metrics import METRICS
from .provenance import provenance
from .reuse import completed_twin, reuse
from .runtime import (
    check_precision,
    deterministic,
    execution_setting,
    job_gpu,
    launcher_threads,
    select_device,
    threads,
)
from .summary import SUMMARY, read_summary, write_json_atomic
from .train import train


def run(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Dry-run or train the cell `cfg` describes (into `out`, by default its own folder); its summary."""
    cell = validate(cfg)
    out = cell.folder if out is None else out
    if cfg.dry_run:
        return dry_run(cfg, cell, out)
    return train_cell(cfg, cell, out)


def dry_run(cfg: DictConfig, cell: Cell, out: Path) -> dict[str, Any]:
    """Check what a real run would (the data too, unless `data.check=false`), print the model's costs and
    write a `dry_run` summary, unless the folder holds a real run."""
    if cfg.data.check:
        check_data(cfg.data)
    with torch.device("meta"):
        cost = profile(build_model(cfg, cell.axes), input_shape(cfg))
    print(format_costs(cell.name, f"{cell.model} on {cell.data}", input_shape(cfg), cost), flush=True)
    if not cfg.data.check:
        print(f"  data check skipped (data.check=false): {cfg.data.root!r} not looked at", flush=True)
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
        kept = (".hydra", "archive", LOCK)
        entries = [p for p in out.iterdir() if p.name not in kept and not p.name.endswith(".log")]
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
    twin = completed_twin(out, execution_setting(cfg)) if fresh and cfg.reuse and not cfg.rerun else None
    if twin is None:
        return None
    if twin.mismatch is not None:
        print(f"{out.name}: not reused from study {twin.path.parent.name}: {twin.mismatch}; trained here", flush=True)
        return None
    if not world_from_env().is_main:
        return read_summary(twin.path) or {}
    print(
        f"{out.name}: completed earlier in study {twin.path.parent.name}; its files are copied here, not trained "
        "again (reuse=false trains it again)",
        flush=True,
    )
    return reuse(twin.path, out, cell.study)


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
    holder, busy = None, None
    try:
        if world.is_main:
            try:
                holder = acquire(out)
            except CellBusy as err:
                busy = err
        if distributed.any_rank(world, busy is not None, device):
            return _running(cell, busy)
        check_precision(device, str(cfg.trainer.precision))
        deterministic(device, cfg.trainer.deterministic)
        if world.is_main:
            _prepare(cfg, out, previous)
        distributed.barrier(world)
        with threads(cfg.trainer.threads or launcher_threads()):
            return train(cfg, cell, out, device, world)
    finally:
        if holder is not None:
            release(out, holder)
        distributed.shutdown(world)


def _running(cell: Cell, busy: CellBusy | None) -> dict[str, Any]:
    """What a job reports for a cell another live process holds (see `lock.py`): it trains nothing and
    writes nothing there; every rank stops."""
    if busy is not None:
        print(f"xablate: {busy}", file=sys.stderr, flush=True)
    return {"status": "running", **cell.record(), "error": str(busy or "running elsewhere")}


def exit_code(summary: dict[str, Any]) -> int:
    """The process exit status a single run ends with: 0 completed (or skipped), 1 failed, 128+N by signal N."""
    if summary["status"] == "interrupted":
        return 128 + signal.Signals[summary.get("stopped_by", "SIGTERM")].value
    return 1 if summary["status"] == "failed" else 0
