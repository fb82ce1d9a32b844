"""The model a config describes: `create_model`'s arguments, the model itself, its input shape, and the check
that it can be built."""

from __future__ import annotations

import functools
from typing import Any

import torch
from omegaconf import DictConfig

from ..axes import Axes
from ..model.xception import Xception, create_model
from .schema import Config


def model_kwargs(cfg: Config | DictConfig, axes: Axes | None = None) -> dict[str, Any]:
    """The `create_model` arguments a config describes, with the axes in their Python types."""
    axes = Axes.parse(cfg) if axes is None else axes
    return dict(
        name=cfg.model.name,
        num_classes=cfg.data.num_classes,
        in_chans=cfg.data.in_chans,
        **axes.as_dict(),
        width=cfg.model.width,
        middle_blocks=cfg.model.middle_blocks,
        drop_rate=cfg.model.drop_rate,
    )


def build_model(cfg: Config | DictConfig, axes: Axes | None = None, stack: int = 1) -> Xception:
    """The cell's model (`stack` seeds of it folded into one), on the current default device (meta inside
    `torch.device("meta")`)."""
    kwargs = model_kwargs(cfg, axes)
    return create_model(kwargs.pop("name"), stack=stack, **kwargs)


def input_shape(cfg: Config | DictConfig) -> tuple[int, int, int]:
    return (cfg.data.in_chans, cfg.data.image_size, cfg.data.image_size)


def check_architecture(cfg: Config | DictConfig, axes: Axes) -> None:
    """Build the model on the meta device, so that segments that do not divide a layer or an unreachable
    parameter budget fail before any work starts; once per architecture (a sweep's seeds share one)."""
    _build_on_meta(tuple(model_kwargs(cfg, axes).items()))


@functools.cache
def _build_on_meta(kwargs: tuple[tuple[str, Any], ...]) -> None:
    arguments = dict(kwargs)
    with torch.device("meta"):
        create_model(arguments.pop("name"), **arguments)
