"""xablate: the Xception ablations (segments, activation, residual) as one harness."""

from .errors import ConfigError
from .models import Xception, count_params, create_model, list_models

__all__ = ["ConfigError", "Xception", "count_params", "create_model", "list_models"]
__version__ = "0.1.0"
