"""`run(cfg)`: one cell of the study, from a composed config to the files in its output directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .config import model_kwargs, validate
from .costs import ModelCost, profile
from .data import check_data
from .distributed import world_from_env
from .lock import CellBusy, acquire, release
from .models import create_model
from .results import SUMMARY, read_summary, write_json_atomic
from .runs import run_key, run_name


def output_dir(cfg: DictConfig) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.out_dir) / cfg.study / f"{run_name(cfg)}-{run_key(cfg)}"


def axes(cfg: DictConfig) -> dict[str, Any]:
    """The values that identify a cell of the study, as plain Python values."""
    kwargs = model_kwargs(cfg)
    return {
        "name": run_name(cfg),
        "run_key": run_key(cfg),
        "study": cfg.study,
        "model": kwargs["name"],
        "data": cfg.data.name,
        "segments": kwargs["segments"],
        "activation": kwargs["activation"],
        "residual": kwargs["residual"],
        "order": kwargs["order"],
        "mid_norm": kwargs["mid_norm"],
        "budget": kwargs["budget"],
        "seed": cfg.seed,
    }


def input_shape(cfg: DictConfig) -> tuple[int, int, int]:
    return (cfg.data.in_chans, cfg.data.image_size, cfg.data.image_size)


def model_cost(cfg: DictConfig) -> ModelCost:
    kwargs = model_kwargs(cfg)
    with torch.device("meta"):
        model = create_model(kwargs.pop("name"), **kwargs)
    return profile(model, input_shape(cfg))


def format_costs(cfg: DictConfig, cost: ModelCost) -> str:
    shape = "x".join(map(str, input_shape(cfg)))
    lines = [
        f"{run_name(cfg)}  {cfg.model.name} on {cfg.data.name} ({shape})",
        f"  {'stage':<8}{'output':>14}{'params':>14}{'MACs':>16}",
    ]
    for stage in cost.stages:
        out = "x".join(map(str, stage.out_shape))
        lines.append(f"  {stage.name:<8}{out:>14}{stage.params:>14,}{stage.macs:>16,}")
    lines.append(f"  {'total':<8}{'':>14}{cost.params:>14,}{cost.macs:>16,}")
    return "\n".join(lines)


def dry_run(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Check what a real run would (the data unless `data.check=false`), print the costs, write the summary."""
    if cfg.data.check:
        check_data(cfg.data)
    cost = model_cost(cfg)
    print(format_costs(cfg, cost), flush=True)
    if not cfg.data.check:
        print(f"  data check skipped (data.check=false): {cfg.data.root!r} not looked at", flush=True)
    summary = {
        "status": "dry_run",
        **axes(cfg),
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
    summary = {"status": "failed", **axes(cfg), "error": error}
    write_json_atomic((output_dir(cfg) if out is None else out) / SUMMARY, summary)
    return summary


def run(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Dry-run or train the cell `cfg` describes; return its summary (also in `out/summary.json`).

    Training holds the cell's lock (see `lock.py`): a cell another live process holds is not touched, and
    its summary here has status `running`."""
    validate(cfg)
    out = output_dir(cfg) if out is None else out
    if cfg.dry_run:
        return dry_run(cfg, out)
    from .train import train_run

    if not world_from_env().is_main:
        return train_run(cfg, out)
    try:
        holder = acquire(out)
    except CellBusy as busy:
        print(f"xablate: {busy}", file=sys.stderr, flush=True)
        return {"status": "running", **axes(cfg), "error": str(busy)}
    try:
        return train_run(cfg, out)
    finally:
        release(out, holder)
