"""A cell's lifecycle above the training loop: validate, then dry-run, skip, reuse, archive, retry or train.

`run(cfg)` is the whole of one job: the Hydra entry point and the tests call it, and it returns the
cell's summary (also written to its folder's `summary.json`). Training holds the cell's lock (see
`lock.py` beside it): a cell another live process holds is not touched, and its summary here has status `running`.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..data import check_data
from ..engine import distributed
from ..engine.distributed import world_from_env
from ..engine.jobs import job_gpu, launcher_threads
from ..engine.loop import fit
from ..engine.runtime import (
    check_precision,
    deterministic,
    select_device,
    threads,
)
from ..engine.state import Attempt
from ..errors import ConfigError
from ..model.costs import format_costs, profile
from ..spec.architecture import build_model, input_shape
from ..spec.cell import Cell
from ..spec.record import (
    SUMMARY,
    dry_run_record,
    failed_record,
    objective_value,
    read_summary,
    write_summary,
)
from ..spec.validate import validate
from .attempt import attempt_number, prepare, running, skip_or_reuse
from .lock import CellBusy, acquire, release
from .stack import fit_stack_cell


def run(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Dry-run or train the cell `cfg` describes (into `out`, by default its own folder); its summary."""
    cell = validate(cfg)
    out = cell.folder if out is None else out
    if cfg.dry_run:
        return dry_run(cfg, cell, out)
    if cfg.tune is not None and (read_summary(out) or {}).get("status") != "completed":
        return tune_and_train(cfg, cell, out)
    if cfg.trainer.stack > 1:
        return fit_stack_cell(cfg, cell, out)
    return fit_cell(cfg, cell, out)


def tuning_trials(cfg: DictConfig, cell: Cell) -> list[tuple[DictConfig, Path]]:
    """The config and folder of each trial of `cfg.tune`: the cell at each value of `tune.param`, at seed
    `tune.seed`, untuned, in `<out_dir>/<study>/tuning/` (so that no study's runs include a trial)."""
    trials = []
    for value in cfg.tune["values"]:
        trial = cfg.copy()
        with open_dict(trial):
            OmegaConf.update(trial, str(cfg.tune.param), value)
            trial.seed, trial.tune = cfg.tune.seed, None
        trials.append((trial, cell.folder.parent / "tuning" / Cell.of(trial).folder.name))
    return trials


def tune_and_train(cfg: DictConfig, cell: Cell, out: Path) -> dict[str, Any]:
    """Train every tuning trial (or find it completed), take the value whose `objective` on the held-out
    split is best, and train the cell with it; its summary records the choice and every trial's result."""
    param, results = str(cfg.tune.param), []
    for trial, folder in tuning_trials(cfg, cell):
        summary = fit_cell(trial, Cell.of(trial), folder, job_type="tune", record={"tuning": True})
        score = objective_value(summary, str(cfg.objective))
        results.append({"value": OmegaConf.select(trial, param), "objective": score, "run": folder.name})
    scored = [r for r in results if r["objective"] is not None]
    if not scored:
        raise ConfigError(f"tune: no trial of {param} completed; see {cell.folder.parent / 'tuning'}")
    pick = max if cfg.objective_mode == "maximize" else min
    best = pick(scored, key=lambda r: r["objective"])
    tuned = cfg.copy()
    OmegaConf.update(tuned, param, best["value"])
    tuned_record = {"param": param, "value": best["value"], "objective": str(cfg.objective), "trials": results}
    print(f"{out.name}: tuned {param}={best['value']} ({cfg.objective} {best['objective']:.4f})", flush=True)
    return fit_cell(tuned, cell, out, record={"tuned": tuned_record})


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
    stages = [{"name": s.name, "out_shape": list(s.out_shape), "params": s.params, "macs": s.macs} for s in cost.stages]
    summary = dry_run_record(cell, cost.params, cost.macs, stages)
    previous = read_summary(out)
    if previous is not None and previous.get("status") != "dry_run":
        print(f"  {out / SUMMARY} holds a {previous.get('status')} run: left as it is", flush=True)
        return summary
    write_summary(out, summary)
    return summary


def record_failure(cfg: DictConfig, error: str, out: Path | None = None) -> dict[str, Any]:
    """A `failed` summary for a cell that stopped before training could record anything itself."""
    cell = Cell.of(cfg)
    summary = failed_record(cell, error)
    write_summary(cell.folder if out is None else out, summary)
    return summary


def fit_cell(
    cfg: DictConfig, cell: Cell, out: Path, *, job_type: str = "train", record: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train the cell, or skip it when it already completed; resume from `out/checkpoint.pt` if present.
    `job_type` and `record` go to W&B and `summary.json` (see `Attempt`)."""
    out.mkdir(parents=True, exist_ok=True)
    previous = read_summary(out)
    done = skip_or_reuse(cfg, cell, out, previous)
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
            return running(cell, busy)
        check_precision(device, str(cfg.trainer.precision))
        deterministic(device, cfg.trainer.deterministic)
        if world.is_main:
            prepare(cfg, out, previous)
        distributed.barrier(world)
        with threads(cfg.trainer.threads or launcher_threads()):
            return fit(cfg, cell, out, device, world, Attempt(attempt_number(out), job_type, record or {}))
    finally:
        if holder is not None:
            release(out, holder)
        distributed.shutdown(world)


def exit_code(summary: dict[str, Any]) -> int:
    """The process exit status a single run ends with: 0 completed (or skipped), 1 failed, 128+N by signal N."""
    if summary["status"] == "interrupted":
        return 128 + signal.Signals[summary.get("stopped_by", "SIGTERM")].value
    return 1 if summary["status"] == "failed" else 0
