"""The ablation axes the analysis groups, filters and plots by: names, allowed values, order and labels.

A cell of a study is one value per axis; the seed is the replicate inside a cell, never an axis. The paper's
Xception is the baseline cell (segments=depthwise, activation=none, residual=true): every other cell is
compared with it, and it is drawn in black in every figure.
"""

from __future__ import annotations

from typing import Any

from xablate import axes as _axes
from xablate.axes import ACTIVATIONS, BOOL_AXES, BUDGETS, CHOICES, DEPTHWISE, ORDERS, allowed, text
from xablate.errors import ConfigError

__all__ = [
    "ACTIVATIONS", "ACTIVATION_NAMES", "AXES", "BASELINE", "BOOL_AXES", "BUDGETS", "DEPTHWISE", "FIGURES", "ORDERS",
    "REPLICATE", "allowed", "is_baseline", "legend_label", "ordered", "parse_value", "short_label", "sort_key", "text",
]  # fmt: skip

AXES: tuple[str, ...] = (*_axes.NAMES, "model", "data")
"""Every axis a cell is defined by, the paper's three first."""

REPLICATE = "seed"

FIGURES: dict[str, str] = {"residual": "fig9_residual", "activation": "fig10_activation", "segments": "fig11_segments"}
"""The axis each figure varies: paper Fig. 9 and 10, and the project's Fig. 11 (the segments spectrum)."""

BASELINE: dict[str, Any] = {axis: getattr(_axes.BASELINE, axis) for axis in FIGURES}
"""The paper's Xception; other axes of a cell's baseline are the cell's own."""


def parse_value(axis: str, value: object) -> Any:
    """`value` (text from the command line, or a value from a run's files) in the form the frames hold:
    segments an int or "depthwise", residual/mid_norm a bool, seed an int, everything else a string.

    Raises ValueError naming the value and what `axis` allows."""
    try:
        return _axes.parse_value(axis, value)
    except ConfigError as err:
        raise ValueError(f"{axis}={str(value).strip()} is not valid; allowed: {allowed(axis)}") from err


def sort_key(axis: str, value: Any) -> tuple[Any, ...]:
    """Order values along the paper's spectrum: segments 1 ... depthwise, activations none, relu, elu (then gelu, silu),
    residual with before without, everything else by name."""
    if axis == "segments":
        return (1, 0) if value == DEPTHWISE else (0, int(value))
    if axis == "residual":
        return (not value,)
    choices = CHOICES.get(axis)
    if choices is not None and value in choices:
        return (0, choices.index(value))
    return (1, str(value))


def ordered(axis: str, values: Any) -> list[Any]:
    """The distinct values of `values` in `sort_key` order."""
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    return sorted(distinct, key=lambda v: sort_key(axis, v))


ACTIVATION_NAMES: dict[str, str] = {"none": "none", "relu": "ReLU", "elu": "ELU", "gelu": "GELU", "silu": "SiLU"}
"""How tables, verdicts and figures write each activation."""


def short_label(axis: str, value: Any) -> str:
    """A value as the comparisons name it: `ReLU`, `4 segments`, `depthwise`, `without residual`."""
    if axis == "segments":
        return DEPTHWISE if value == DEPTHWISE else ("1 segment" if value == 1 else f"{value} segments")
    if axis == "residual" and isinstance(value, bool):
        return "with residual" if value else "without residual"
    if axis == "activation" and type(value) is str and value in ACTIVATION_NAMES:
        return ACTIVATION_NAMES[value]
    return f"{axis}={text(value)}"


def legend_label(axis: str, value: Any) -> str:
    """A value as a figure legend says it: its short label, spelt out where a legend has the room."""
    if axis == "residual":
        return short_label(axis, bool(value)) + " connections"
    if axis == "activation":
        return "no activation" if value == "none" else ACTIVATION_NAMES.get(value, str(value))
    if axis == "segments" and value in (DEPTHWISE, 1):
        return short_label(axis, value) + (" (Xception)" if value == DEPTHWISE else " (regular conv)")
    return short_label(axis, value)


def is_baseline(axis: str, value: Any) -> bool:
    return axis in BASELINE and BASELINE[axis] == value
