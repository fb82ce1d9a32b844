"""A cell's identity: its axes, a readable name, a deterministic key and the folder it lands in.

The key hashes everything that changes a run's numbers (axes, model, data, optimiser, budget, seed) and
nothing that does not (output paths, logging, data location), nor what only chooses among kernels that
compute the same run (CPU threads, GPU determinism), so the same cell always lands in the same folder:
running a command again finds its earlier results instead of overwriting or repeating them.

Parsed once, at the entry, into a frozen `Cell`; the layers below take the `Cell`, never the raw axes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .axes import Axes, parse_bool, parse_segments
from .summary import read_summary

KEY_EXCLUDE: frozenset[str] = frozenset(
    {
        "hydra", "logger", "dry_run", "rerun", "reuse", "study", "out_dir", "design", "objective", "objective_mode",
        "data.root", "data.num_workers", "data.eval_batch_size", "data.check",
        "trainer.log_every", "trainer.progress", "trainer.threads", "trainer.deterministic", "trainer.fast_backward",
    }
)  # fmt: skip
"""What never changes a run's numbers: where files go, logging, the study's design (read by the analysis),
and what only chooses among kernels (threads, evaluation batch size, GPU determinism)."""

KEY_ONLY_WHEN_SET: dict[str, object] = {
    "optim.polyak_decay": None,
    "data.holdout": 0,
    "data.test_subset": None,
    "trainer.evals": None,
    "trainer.test_every_eval": False,
    "trainer.compile_mode": None,
    "tune": None,
}
"""Knobs added after studies had run: at these values (the behaviour before them) they stay out of the
key, so that those studies' cells keep their folders. `data.holdout_seed` counts only with a holdout."""


def _drop(container: dict[str, Any], dotted: str) -> None:
    parent, _, leaf = dotted.rpartition(".")
    (container.get(parent, {}) if parent else container).pop(leaf, None)


def plain_values(cfg: DictConfig, skip: frozenset[str]) -> dict[str, Any]:
    """The config's top-level nodes but `skip` as plain, resolved Python values (skipped nodes are never
    resolved: `hydra` holds paths that are themselves made from the run key)."""
    return {
        str(key): OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key not in skip
    }


def _identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus `KEY_EXCLUDE` and the unset `KEY_ONLY_WHEN_SET`."""
    container = plain_values(cfg, KEY_EXCLUDE)
    for dotted in KEY_EXCLUDE:
        _drop(container, dotted)
    for dotted, unset in KEY_ONLY_WHEN_SET.items():
        parent, _, leaf = dotted.rpartition(".")
        node = container.get(parent, {}) if parent else container
        if node.get(leaf, unset) == unset:
            _drop(container, dotted)
    if "holdout" not in container.get("data", {}):
        _drop(container, "data.holdout_seed")
    container["segments"] = parse_segments(container["segments"])
    container["residual"] = parse_bool("residual", container["residual"])
    return container


def run_key(cfg: DictConfig) -> str:
    """Eight hex digits that identify a run's config; stable across processes and machines."""
    blob = json.dumps(_identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def run_name(cfg: DictConfig) -> str:
    """A readable name from the axes, such as `seg4-relu-res-s0` (`segdw` for depthwise)."""
    return "-".join([*Axes.parse(cfg).name_parts, f"s{cfg.seed}"])


def run_dir_name(cfg: DictConfig) -> str:
    return f"{run_name(cfg)}-{run_key(cfg)}"


def cell_folder(cfg: DictConfig) -> Path:
    """`<out_dir>/<study>/<name>-<key>`: where the cell's files go, known before anything is launched."""
    return Path(cfg.out_dir) / str(cfg.study) / run_dir_name(cfg)


@dataclass(frozen=True)
class Cell:
    """Who a run is: the parsed axes and seed, what it trains on, and where its files go."""

    axes: Axes
    seed: int
    name: str
    key: str
    study: str
    model: str
    data: str
    folder: Path

    @classmethod
    def of(cls, cfg: DictConfig) -> Cell:
        """Parse a composed config's identity (raises a one-line ConfigError for a bad axis value)."""
        axes, seed, key = Axes.parse(cfg), int(cfg.seed), run_key(cfg)
        name = "-".join([*axes.name_parts, f"s{seed}"])
        return cls(
            axes=axes,
            seed=seed,
            name=name,
            key=key,
            study=str(cfg.study),
            model=str(cfg.model.name),
            data=str(cfg.data.name),
            folder=Path(cfg.out_dir) / str(cfg.study) / f"{name}-{key}",
        )

    def record(self) -> dict[str, Any]:
        """The identity fields of `summary.json`, in their published order."""
        return {
            "name": self.name,
            "run_key": self.key,
            "study": self.study,
            "model": self.model,
            "data": self.data,
            **self.axes.as_dict(),
            "seed": self.seed,
        }


def output_subdir(cfg: DictConfig) -> str | None:
    """Hydra's `output_subdir` for the job `cfg`: `.hydra`, or None (Hydra then saves no config) for a cell
    that already completed and that this job will skip, so that its `.hydra/` stays that of its run."""
    summary = read_summary(cell_folder(cfg))
    done = summary is not None and summary.get("status") == "completed" and not cfg.rerun
    return None if done else ".hydra"


def register_resolvers() -> None:
    """`${xablate_run_dir:}` in `conf/config.yaml` names each run's directory, `${xablate_output_subdir:}`
    where Hydra saves its config."""
    if not OmegaConf.has_resolver("xablate_run_dir"):
        OmegaConf.register_new_resolver("xablate_run_dir", lambda *, _root_: run_dir_name(_root_))
    if not OmegaConf.has_resolver("xablate_output_subdir"):
        OmegaConf.register_new_resolver("xablate_output_subdir", lambda *, _root_: output_subdir(_root_))
