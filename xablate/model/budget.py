"""The iso-parameter width search of `budget=params`: the width multiplier at which a segments value's model
has the depthwise model's parameter count."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .arch import XceptionArch

BUDGET_TOLERANCE = 0.05


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def match_params(
    arch: XceptionArch, segments: int, target: int, width: float, middle_blocks: int | None, build: Callable
) -> XceptionArch:
    """The width multiplier whose model has `target` parameters (within 5%), widths multiples of `segments`."""
    divisor = math.lcm(8, segments)

    counted: dict[XceptionArch, int] = {}

    def params_at(m: float) -> tuple[int, XceptionArch]:
        scaled = arch.scaled(width * m, middle_blocks, divisor)
        if scaled not in counted:  # widths are rounded: the later halvings mostly land on a model counted already
            with torch.device("meta"):
                counted[scaled] = count_params(build(scaled))
        return counted[scaled], scaled

    lo, hi = 0.01, 4.0
    best = params_at(hi)
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        n, scaled = params_at(mid)
        if abs(n - target) < abs(best[0] - target):
            best = (n, scaled)
        lo, hi = (mid, hi) if n < target else (lo, mid)
    if abs(best[0] - target) > BUDGET_TOLERANCE * target:
        raise ConfigError(
            f"budget=params cannot match {target:,} parameters within 5% at segments={segments} "
            f"(closest: {best[0]:,}); use budget=none"
        )
    return best[1]


BUDGET_ARCHS: dict[tuple, XceptionArch] = {}
"""Architectures found by the iso-parameter search, by model options: the search builds 10-20 models."""
