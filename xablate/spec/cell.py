"""A cell's identity: its axes, a readable name, a deterministic key and the folder it lands in.

The key hashes everything that changes a run's numbers (axes, model, data, optimiser, budget, seed) and
nothing that does not (output paths, logging, data location), nor what only chooses among kernels that
compute the same run (CPU threads, GPU determinism), so the same cell always lands in the same folder:
running a command again finds its earlier results instead of overwriting or repeating them.

Parsed once, at the entry, into a frozen `Cell`; the layers below take the `Cell`, never the raw axes.
No torch and no file access here: the analysis and the sweep's report use it too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..axes import Axes

KEY_EXCLUDE: frozenset[str] = frozenset(
    {
        "hydra", "logger", "dry_run", "status", "rerun", "reuse", "study", "out_dir", "design", "objective",
        "objective_mode",
        "data.root", "data.num_workers", "data.eval_batch_size", "data.check",
        "trainer.log_every", "trainer.progress", "trainer.threads", "trainer.deterministic", "trainer.fast_backward",
        "trainer.stack",
    }
)  # fmt: skip
"""What never changes a run's numbers: where files go, logging, the study's design (read by the analysis),
and what only chooses among kernels (threads, evaluation batch size, GPU determinism, seeds folded into one
model)."""

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


def _identity(cfg: DictConfig, axes: Axes) -> dict[str, Any]:
    """The resolved config minus `KEY_EXCLUDE` and the unset `KEY_ONLY_WHEN_SET`, with the parsed `axes`'
    segments and residual (so that `segments=4` and `segments='4'` are one cell)."""
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
    container["segments"] = axes.segments
    container["residual"] = axes.residual
    return container


def run_key(cfg: DictConfig, axes: Axes | None = None) -> str:
    """Eight hex digits that identify a run's config; stable across processes and machines. `axes`, when
    the caller has parsed them already, saves parsing them again."""
    identity = _identity(cfg, Axes.parse(cfg) if axes is None else axes)
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


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
        axes = Axes.parse(cfg)
        seed, key = int(cfg.seed), run_key(cfg, axes)
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
