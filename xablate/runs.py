"""Run identity: a readable name and a deterministic key from the resolved config.

The key hashes everything that changes a run's numbers (axes, model, data, optimiser, budget, seed) and
nothing that does not (output paths, logging, data location), nor what only chooses among kernels that
compute the same run (CPU threads, GPU determinism), so the same cell always lands in the same directory:
re-running a command finds its earlier results instead of overwriting or repeating them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import parse_residual
from .layers import parse_segments

KEY_EXCLUDE: frozenset[str] = frozenset(
    {
        "hydra", "logger", "dry_run", "rerun", "reuse", "study", "out_dir",
        "data.root", "data.num_workers", "trainer.log_every", "trainer.progress", "trainer.threads",
        "trainer.deterministic",
    }
)  # fmt: skip


KEY_ONLY_WHEN_SET: frozenset[str] = frozenset({"optim.polyak_decay", "trainer.compile_mode"})
"""Knobs added after studies had run: at null (off) they stay out of the key, so that those studies'
cells keep their folders."""


def _identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus `KEY_EXCLUDE` and unset `KEY_ONLY_WHEN_SET` (excluded nodes are never
    resolved: `hydra` holds paths that are themselves made from this key)."""
    container: dict[str, Any] = {}
    for key in cfg:
        if key in KEY_EXCLUDE:
            continue
        node = cfg[key]
        container[str(key)] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    for dotted in KEY_EXCLUDE:
        parent, _, leaf = dotted.rpartition(".")
        if parent:
            container.get(parent, {}).pop(leaf, None)
    for dotted in KEY_ONLY_WHEN_SET:
        parent, _, leaf = dotted.rpartition(".")
        if container.get(parent, {}).get(leaf, 0) is None:
            del container[parent][leaf]
    container["segments"] = parse_segments(container["segments"])
    container["residual"] = parse_residual(container["residual"])
    return container


def run_key(cfg: DictConfig) -> str:
    """Eight hex digits that identify a run's config; stable across processes and machines."""
    blob = json.dumps(_identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def run_name(cfg: DictConfig) -> str:
    """A readable name from the axes, such as `seg4-relu-res-s0` (`segdw` for depthwise)."""
    segments = parse_segments(cfg.segments)
    parts = [
        f"seg{'dw' if segments == 'depthwise' else segments}",
        str(cfg.activation),
        "res" if parse_residual(cfg.residual) else "nores",
    ]
    if cfg.order == "pointwise_first":
        parts.append("pwfirst")
    if cfg.mid_norm:
        parts.append("midbn")
    if cfg.budget == "params":
        parts.append("isoparams")
    parts.append(f"s{cfg.seed}")
    return "-".join(parts)


def run_dir_name(cfg: DictConfig) -> str:
    return f"{run_name(cfg)}-{run_key(cfg)}"


def register_resolvers() -> None:
    """`${xablate_run_dir:}` in `conf/config.yaml` names each run's directory."""
    if not OmegaConf.has_resolver("xablate_run_dir"):
        OmegaConf.register_new_resolver("xablate_run_dir", lambda *, _root_: run_dir_name(_root_))
