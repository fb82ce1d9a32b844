"""Checkpoints that make a resumed run end exactly where an uninterrupted one would.

Everything that shapes the next step is saved: model and optimiser state, the step, the metric
accumulators of the current logging interval, and every RNG state (dropout draws from torch's).
The data order needs none: it is a pure function of (seed, epoch, batch index).

The last two checkpoints are kept (`checkpoint.pt`, `checkpoint.prev.pt`): a file cut short by a crash
or a copy falls back to the one before. They are loaded with `weights_only=True`, so a checkpoint from
someone else can hold tensors and plain values but never code; numpy's RNG state is the one non-torch type
allowed in.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import archive, write_atomic

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"

_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed it; pickles name the module
SAFE_GLOBALS: list[Any] = [np.ndarray, np.dtype, np.dtypes.UInt32DType, _NUMPY_CORE.multiarray._reconstruct]
"""What `np.random.get_state()` pickles to (an array of uint32 keys); everything else is torch's own."""

UNREADABLE = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile, OSError, KeyError)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def previous_path(path: Path) -> Path:
    return path.with_name(PREVIOUS) if path.name == CHECKPOINT else path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save `state` as `path`; the one it replaces stays as `checkpoint.prev.pt` (a hard link, so no copy
    is made). `path` is whole at every moment: if the write fails (a full disk) it is unchanged and
    `WriteError` is raised."""
    buffer = io.BytesIO()
    torch.save({**state, "rng": rng_state()}, buffer)
    if path.exists():
        prev = previous_path(path)
        prev.unlink(missing_ok=True)
        try:
            os.link(path, prev)
        except OSError:
            path.replace(prev)
    write_atomic(path, buffer.getvalue())


def _read(path: Path, map_location: torch.device) -> dict[str, Any]:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "state", "rng"} <= ckpt.keys():
        raise ValueError("not an xablate checkpoint")
    return ckpt


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0][:160]


def load_checkpoint(path: Path, map_location: torch.device) -> dict[str, Any] | None:
    """The newest readable checkpoint of `path` and its predecessor, or None when there is none.

    An unreadable file (truncated, corrupt, or holding anything but tensors and plain values) moves to
    `archive/`, saying so in one line, and the run resumes from the other; when neither can be read,
    `metrics.csv` moves with them and the run starts over from step 0, saying so."""
    bad: list[Path] = []
    ckpt = None
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            ckpt = _read(candidate, map_location)
            break
        except UNREADABLE as err:
            print(f"{path.parent.name}: {candidate.name} cannot be read ({_reason(err)})", flush=True)
            bad.append(candidate)
    if not bad:
        return ckpt
    metrics = path.with_name("metrics.csv")
    moved = bad + ([metrics] if ckpt is None and metrics.exists() else [])
    dest = archive(path.parent, moved).relative_to(path.parent)
    if ckpt is None:
        print(f"{path.parent.name}: no readable checkpoint (moved to {dest}); starting over from step 0", flush=True)
    else:
        print(f"{path.parent.name}: unreadable file moved to {dest}; resuming from step {ckpt['state']['step']}")
    return ckpt
