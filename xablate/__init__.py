"""xablate: the Xception ablations (segments, activation, residual) as one harness.

The public names load lazily, so that `python -m xablate` can set up its process before torch is imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import ConfigError
    from .model import Xception, count_params, create_model, list_models

__all__ = ["ConfigError", "Xception", "count_params", "create_model", "list_models"]
__version__ = "0.1.0"

_HOMES = {"ConfigError": ".errors", "Xception": ".model", "count_params": ".model",
          "create_model": ".model", "list_models": ".model"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module 'xablate' has no attribute {name!r}")
