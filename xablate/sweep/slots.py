"""How many cells a sweep's launcher runs at once, and how long a list of cells takes at that width.

The estimate and the ETAs use this; they never start anything. Hydra's basic launcher runs one cell at a
time in the command's own process; joblib runs `n_jobs` at a time in worker processes it starts once;
submitit starts a process per cell, all at once locally and up to `array_parallelism` on SLURM.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

JOBLIB = "JoblibLauncher"
LOCAL = "LocalLauncher"
SLURM = "SlurmLauncher"
BASIC = "BasicLauncher"


@dataclass(frozen=True)
class Slots:
    """A launcher's width: `count` cells at a time; `process_per_cell` when each cell starts a process of
    its own (submitit), `process_per_slot` when each slot starts one, once (joblib's workers); `describe`
    says it in words, `notes` what the width assumes."""

    count: int
    describe: str
    process_per_cell: bool = False
    process_per_slot: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def launcher_kind(launcher: Mapping[str, Any] | None) -> str:
    """The launcher's class name (`BasicLauncher`, `JoblibLauncher`, ...); `BasicLauncher` when unset."""
    target = str((launcher or {}).get("_target_") or BASIC)
    return target.rpartition(".")[2]


def _oversubscribed(jobs: int, threads: int, device: str) -> tuple[str, ...]:
    cores = os.cpu_count() or 1
    if device != "cpu" or jobs * threads <= cores:
        return ()
    return (
        f"{jobs} cells x {threads} threads on {cores} cores slow each other, far more than this allows for "
        "(README: two 2-thread jobs on 2 cores)",
    )


def _shared_gpus(jobs: int, device: str) -> tuple[str, ...]:
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if device != "cuda" or jobs <= gpus:
        return ()
    return (f"{jobs} cells share {max(gpus, 1)} GPU(s), counted as if each had one to itself",)


def slots_of(launcher: Mapping[str, Any] | None, cells: int, threads: int, device: str, multirun: bool) -> Slots:
    """The width at which `cells` cells of `threads` threads each run under `launcher` on `device`."""
    kind = launcher_kind(launcher) if multirun else BASIC
    launcher = launcher or {}
    cells = max(1, cells)
    if kind == JOBLIB:
        n_jobs = int(launcher.get("n_jobs") or 1)
        cores = os.cpu_count() or 1
        count = min(cells, cores if n_jobs < 0 else n_jobs)
        notes = _oversubscribed(count, threads, device) + _shared_gpus(count, device)
        return Slots(count, f"{count} at a time (joblib, n_jobs={n_jobs})", process_per_slot=True, notes=notes)
    if kind == LOCAL:
        notes = _oversubscribed(cells, threads, device) + _shared_gpus(cells, device)
        return Slots(cells, f"all {cells} at once (submitit_local)", process_per_cell=True, notes=notes)
    if kind == SLURM:
        width = min(cells, int(launcher.get("array_parallelism") or cells))
        note = (
            "every array task starts at once (no queue wait) on a node like this machine: the times were measured "
            "here, not on the cluster's nodes"
        )
        return Slots(width, f"{width} at a time (SLURM job array)", process_per_cell=True, notes=(note,))
    if kind != BASIC:
        return Slots(1, f"one at a time (assumed for {kind})")
    return Slots(1, "one at a time (Hydra's basic launcher)")


def makespan(durations: Iterable[float], width: int, busy: Iterable[float] = ()) -> float:
    """Seconds until the last of `durations` ends when they start in order, each as soon as one of `width`
    slots is free; `busy` holds the seconds left in slots already running (at most `width` of them)."""
    free = sorted(busy)[:width]
    free += [0.0] * (width - len(free))
    heapq.heapify(free)
    for seconds in durations:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free, default=0.0)
