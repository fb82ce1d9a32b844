"""The engine layer: a run from its built parts to its last step.

`build` makes the parts (model, loaders, optimiser, schedule) and holds the gradient step and the
evaluation; `loop` strings them together; `meter`, `log`, `progress` and `tracking` carry every logged
row to `metrics.csv`, the progress line and W&B; `checkpoint` and `signals` make a run resumable;
`runtime`, `jobs` and `distributed` say where it computes; `provenance` records it.

`from xablate.engine import train_step, build_engine, evaluate` works as before the package had layers:
the names load lazily, so that `xablate.engine.tracking` can be imported without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {"Engine": ".build", "StepParts": ".build", "build_engine": ".build", "build_optimizer": ".build",
          "evaluate": ".build", "train_step": ".build"}  # fmt: skip
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module 'xablate.engine' has no attribute {name!r}")
