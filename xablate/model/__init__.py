"""The model layer: the ablated operation (`layers`, `spatial`), Xception as data (`xception`), and its
parameters and multiply-adds (`costs`). It knows nothing of configs, data or training."""

from .xception import Xception, count_params, create_model, list_models

__all__ = ["Xception", "count_params", "create_model", "list_models"]
