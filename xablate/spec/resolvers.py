"""The two OmegaConf resolvers `conf/config.yaml` uses to put Hydra's files where the cell's files go."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .cell import Cell
from .record import read_summary


def output_subdir(cfg: DictConfig) -> str | None:
    """Hydra's `output_subdir` for the job `cfg`: `.hydra`, or None (Hydra then saves no config) for a cell
    that already completed and that this job will skip, so that its `.hydra/` stays that of its run."""
    summary = read_summary(Cell.of(cfg).folder)
    done = summary is not None and summary.get("status") == "completed" and not cfg.rerun
    return None if done else ".hydra"


def register_resolvers() -> None:
    """`${xablate_run_dir:}` in `conf/config.yaml` names each run's directory, `${xablate_output_subdir:}`
    where Hydra saves its config."""
    if not OmegaConf.has_resolver("xablate_run_dir"):
        OmegaConf.register_new_resolver("xablate_run_dir", lambda *, _root_: Cell.of(_root_).folder.name)
    if not OmegaConf.has_resolver("xablate_output_subdir"):
        OmegaConf.register_new_resolver("xablate_output_subdir", lambda *, _root_: output_subdir(_root_))
