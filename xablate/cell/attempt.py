"""What every attempt at a cell does around its training: skip or reuse a completed cell, move an earlier
attempt aside, count attempts, write provenance, and report a cell another process holds."""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..engine.distributed import world_from_env
from ..engine.log import METRICS
from ..engine.provenance import provenance
from ..engine.runtime import execution_setting
from ..files import write_json_atomic
from ..spec.cell import Cell
from ..spec.record import SUMMARY, read_summary, running_record, skipped_record
from .lock import LOCK, CellBusy
from .reuse import completed_twin, reuse


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


def attempt_number(out: Path) -> int:
    """1 for a cell's first attempt, then one more per attempt that `rerun=true` moved to `archive/` (each
    holds its `provenance.json`; the record kept of a failed attempt that is retried does not)."""
    return 1 + sum(1 for _ in out.glob("archive/*/provenance.json"))


def skip_or_reuse(cfg: DictConfig, cell: Cell, out: Path, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """The summary of a cell that needs no training here: completed earlier, or completed in another study."""
    if previous is not None and previous.get("status") == "completed" and not cfg.rerun:
        print(
            f"{out.name}: already completed (val top-1 {previous.get('val_top1', float('nan')):.2%}); "
            "skipped (rerun=true runs it again, keeping these results in archive/)",
            flush=True,
        )
        return skipped_record(previous)
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
    return reuse(cfg, cell, twin.path, out)


def prepare(cfg: DictConfig, out: Path, previous: dict[str, Any] | None) -> None:
    """Before training (main process): move a forced re-run's files aside, keep a failed attempt's record,
    and write the provenance of this attempt."""
    if cfg.rerun and (dest := archive_previous(out)) is not None:
        print(f"{out.name}: earlier results moved to {dest.relative_to(out)}", flush=True)
    elif previous is not None and previous.get("status") == "failed":
        dest = archive_previous(out, keep=True)
        print(f"{out.name}: retrying a failed run (its record is kept in {dest and dest.relative_to(out)})")
    write_json_atomic(out / "provenance.json", provenance())


def running(cell: Cell, busy: CellBusy | None) -> dict[str, Any]:
    """What a job reports for a cell another live process holds (see `lock.py`): it trains nothing and
    writes nothing there; every rank stops."""
    if busy is not None:
        print(f"xablate: {busy}", file=sys.stderr, flush=True)
    return running_record(cell, str(busy or "running elsewhere"))
