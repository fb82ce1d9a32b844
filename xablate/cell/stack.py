"""A cell's seeds trained as a stack (`trainer.stack=K`): the job of any seed of a block of K trains the whole
block as one folded model, each seed into its own folder, as its own run would.

Blocks are fixed by the seed alone: seeds 0..K-1, K..2K-1, ... (`block_seeds`), so every job of a sweep finds
the same stack for its seed and the sweep's check can require whole blocks. The first job of a block to start
takes every seed's lock and trains them; the block's other jobs then find their cell running (side by side) or
completed (one after another) and train nothing. A seed that completed earlier (or is copied from another
study) rides along as a passenger, unwritten, so the stack keeps its width and the others their numbers.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from ..data import check_data
from ..engine.distributed import world_from_env
from ..engine.jobs import job_gpu, launcher_threads
from ..engine.runtime import check_precision, deterministic, select_device, threads
from ..engine.stack_loop import Seat, fit_stack
from ..engine.state import Attempt
from ..errors import ConfigError
from ..files import write_atomic
from ..spec.cell import Cell
from ..spec.record import read_summary
from .attempt import attempt_number, prepare, running, skip_or_reuse
from .lock import CellBusy, acquire, release
from .wandb_after import CONFIG, log_run


def block_seeds(seed: int, k: int) -> range:
    """The seeds trained together with `seed` at `trainer.stack=k`."""
    first = seed - seed % k
    return range(first, first + k)


@dataclass
class Member:
    cfg: DictConfig
    seat: Seat
    previous: dict[str, Any] | None


def members(cfg: DictConfig, cell: Cell, out: Path) -> list[Member]:
    """The block's seeds: the job's own cell in `out`, the others in their folders beside it; each seed that
    completed already (here, or in another study and copied) is a passenger."""
    found = []
    for seed in block_seeds(cfg.seed, cfg.trainer.stack):
        member = cfg.copy()
        with open_dict(member):
            member.seed = seed
        own = seed == cfg.seed
        member_cell = cell if own else Cell.of(member)
        folder = out if own else out.parent / member_cell.folder.name
        folder.mkdir(parents=True, exist_ok=True)
        previous = read_summary(folder)
        done = None if own else skip_or_reuse(member, member_cell, folder, previous)
        found.append(Member(member, Seat(member_cell, folder, active=done is None), previous))
    return found


def write_config(member: DictConfig, folder: Path) -> None:
    """The config Hydra saves for a job (`.hydra/config.yaml`), for a seed trained by another seed's job: what
    `xablate.log_wandb` and a reader of the folder expect there. An existing one is left as it is."""
    path = folder / CONFIG
    if path.exists():
        return
    plain = OmegaConf.to_container(member, resolve=False)
    plain.pop("hydra", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, OmegaConf.to_yaml(OmegaConf.create(plain)).encode())


def fit_stack_cell(cfg: DictConfig, cell: Cell, out: Path) -> dict[str, Any]:
    """Train the block of `cfg`'s seed (or skip this cell when it completed); this cell's summary."""
    out.mkdir(parents=True, exist_ok=True)
    done = skip_or_reuse(cfg, cell, out, read_summary(out))
    if done is not None:
        return done
    if world_from_env().distributed:
        raise ConfigError(f"trainer.stack={cfg.trainer.stack} under torchrun: a stack is one process; allowed: 1")
    check_data(cfg.data)
    device = job_gpu(select_device(cfg.trainer.device))
    block = members(cfg, cell, out)
    active = [m for m in block if m.seat.active]
    holders: dict[Path, Any] = {}
    try:
        for member in active:
            holders[member.seat.out] = acquire(member.seat.out)
    except CellBusy as busy:
        for folder, holder in holders.items():
            release(folder, holder)
        return running(cell, busy)
    try:
        check_precision(device, str(cfg.trainer.precision))
        deterministic(device, cfg.trainer.deterministic)
        for member in active:
            prepare(member.cfg, member.seat.out, member.previous)
            write_config(member.cfg, member.seat.out)
            member.seat.attempt = Attempt(attempt_number(member.seat.out))
        with threads(cfg.trainer.threads or launcher_threads()):
            fit_stack(cfg, [m.seat for m in block], device)
    finally:
        for folder, holder in holders.items():
            release(folder, holder)
    log_to_wandb(cfg, [m.seat.out for m in active])
    return read_summary(out) or {}


def log_to_wandb(cfg: DictConfig, folders: list[Path]) -> None:
    """Each completed seed's W&B run, from its folder (the stack's seeds train without a live W&B run)."""
    mode = str(cfg.logger.mode)
    if mode == "disabled" or importlib.util.find_spec("wandb") is None:
        return
    for folder in folders:
        if (read_summary(folder) or {}).get("status") == "completed":
            print(log_run(folder, mode).line, flush=True)
